"""The state file's content: what scalable created, as plain dataclasses."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Literal

from scalable.errors import StateError

FORMAT_VERSION = 1
RecordStatus = Literal["creating", "ready", "deleting"]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ResourceRecord:
    address: str
    type: str
    status: RecordStatus
    idempotency_key: str
    id: str | None = None
    group: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    # Backend facts needed to find the resource again (pid + start time, job id…).
    meta: dict[str, Any] = field(default_factory=dict)
    worker_names: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    # Addresses this resource needs (created before it, deleted after it).
    depends_on: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _RECORD_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResourceRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class StateFile:
    target: str
    provider: str
    lineage: str = field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    format_version: int = FORMAT_VERSION
    scalable_version: str = ""
    manifest_digest: str = ""
    # Who made the capacity: "cli" or "session:<id>"; a session leaves CLI capacity alone.
    owner: str = "cli"
    # Current worker counts of adaptive groups (set by the scaling controller or a manual
    # scale request); the plan keeps them, clamped to the manifest's adaptive range.
    scale: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    resources: list[ResourceRecord] = field(default_factory=list)
    # Identities removed with ``state rm``: {address, type, id, idempotency_key,
    # forgotten_at}. Discovery by lineage skips them, so scalable never touches them again.
    forgotten: list[dict[str, str]] = field(default_factory=list)

    # -- lookups ---------------------------------------------------------------------
    def get(self, address: str) -> ResourceRecord | None:
        for r in self.resources:
            if r.address == address:
                return r
        return None

    def put(self, record: ResourceRecord) -> None:
        for i, r in enumerate(self.resources):
            if r.address == record.address:
                self.resources[i] = record
                return
        self.resources.append(record)

    def remove(self, address: str) -> ResourceRecord | None:
        for i, r in enumerate(self.resources):
            if r.address == address:
                return self.resources.pop(i)
        return None

    def forget(self, address: str) -> ResourceRecord | None:
        """Remove a record and remember its identity, so it is never managed again."""
        rec = self.remove(address)
        if rec is not None:
            self.forgotten.append({
                "address": rec.address, "type": rec.type, "id": rec.id or "",
                "idempotency_key": rec.idempotency_key, "forgotten_at": now_iso()})
        return rec

    def is_forgotten(self, id: str | None, idempotency_key: str | None) -> bool:
        return any((id and f.get("id") == id)
                   or (idempotency_key and f.get("idempotency_key") == idempotency_key)
                   for f in self.forgotten)

    def content(self) -> dict[str, Any]:
        """Everything but the serial: the serial is bumped only when this changes."""
        d = self.to_dict()
        d.pop("serial")
        d.pop("scalable_version")
        return d

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: asdict() deep-copies every record (seconds at 10k resources).
        d = {f: getattr(self, f) for f in _STATE_FIELDS if f != "resources"}
        d["resources"] = [r.to_dict() for r in self.resources]
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "state") -> StateFile:
        """Parse a decoded state document; anything but a well-formed one is one clean
        StateError naming ``source`` (never an AttributeError or OverflowError)."""
        if not isinstance(d, dict):
            raise StateError(f"{source}: not a scalable state file (a JSON "
                             f"{_json_type(d)}, not an object)", hint=_HINT)
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise StateError(f"{source}: not a scalable state file (no format_version)",
                             hint=_HINT)
        if version > FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {version} is newer than this scalable "
                f"understands ({FORMAT_VERSION})",
                hint=f"upgrade scalable (the state was written by "
                f"{str(d.get('scalable_version'))[:40]})",
            )
        if version < 1:
            raise StateError(f"{source}: malformed state (format_version {version})",
                             hint=_HINT)
        check = _Checker(source)
        resources = check.typed(d, "resources", list, [])
        return cls(
            target=check.text(d, "target"),
            provider=check.text(d, "provider"),
            lineage=check.text(d, "lineage"),
            serial=check.count(d, "serial"),
            format_version=version,
            scalable_version=check.text(d, "scalable_version", ""),
            manifest_digest=check.text(d, "manifest_digest", ""),
            owner=check.text(d, "owner", "cli"),
            scale={str(k): check.count(check.typed(d, "scale", dict, {}), k, "scale.")
                   for k in check.typed(d, "scale", dict, {})},
            outputs=check.strings(d, "outputs"),
            resources=[check.record(r, i) for i, r in enumerate(resources)],
            forgotten=[{str(k): str(v) for k, v in f.items()}
                       for f in check.typed(d, "forgotten", list, []) if isinstance(f, dict)],
        )


_HINT = "restore it from its .backup copy, or `scalable state push` a good one"


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            type(None): "null"}.get(type(value), "number")


def _member(key: str) -> str:
    """A key of a JSON object as an error names it: ``.name``, or JSON-quoted when the
    file's key would break the one-line message (newlines, control characters)."""
    return f".{key}" if key.isprintable() and key.strip() == key and key else (
        f"[{json.dumps(key)}]")


class _Checker:
    """Type checks of decoded JSON, each failure one StateError naming file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, want: str, got: Any) -> StateError:
        return StateError(f"{self.source}: malformed state: {key} must be {want}, not a "
                          f"JSON {_json_type(got)}", hint=_HINT)

    def typed(self, d: dict[str, Any], key: str, kind: type, default: Any = ...,
              prefix: str = "") -> Any:
        if key not in d or (d[key] is None and default is not ... and kind is not str):
            if default is ...:
                raise StateError(f"{self.source}: malformed state: {prefix}{key} is missing",
                                 hint=_HINT)
            return default
        value = d[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
            raise self.fail(prefix + key, names.get(kind, kind.__name__), value)
        return value

    def text(self, d: dict[str, Any], key: str, default: Any = ..., prefix: str = "") -> str:
        return str(self.typed(d, key, str, default, prefix))

    def optional_text(self, d: dict[str, Any], key: str, prefix: str) -> str | None:
        return None if d.get(key) is None else self.text(d, key, prefix=prefix)

    def count(self, d: dict[str, Any], key: str, prefix: str = "") -> int:
        value = d.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            if key not in d:
                raise StateError(f"{self.source}: malformed state: {prefix}{key} is missing",
                                 hint=_HINT)
            raise StateError(f"{self.source}: malformed state: {prefix}{key} must be a "
                             f"whole number, not {json.dumps(value)[:40]}", hint=_HINT)
        if not 0 <= value < 2**63:
            raise StateError(f"{self.source}: malformed state: {prefix}{key} {value} is out "
                             "of range", hint=_HINT)
        return value

    def strings(self, d: dict[str, Any], key: str, prefix: str = "") -> dict[str, str]:
        value = self.typed(d, key, dict, {}, prefix)
        for k, v in value.items():
            if not isinstance(v, str):
                raise self.fail(f"{prefix}{key}{_member(k)}", "a string", v)
        return dict(value)

    def str_list(self, d: dict[str, Any], key: str, prefix: str) -> list[str]:
        value = self.typed(d, key, list, [], prefix)
        for v in value:
            if not isinstance(v, str):
                raise self.fail(f"{prefix}{key}[]", "a string", v)
        return list(value)

    def record(self, r: Any, i: int) -> ResourceRecord:
        at = f"resources[{i}]."
        if not isinstance(r, dict):
            raise self.fail(f"resources[{i}]", "an object", r)
        status = self.text(r, "status", prefix=at)
        if status not in ("creating", "ready", "deleting"):
            raise StateError(f"{self.source}: malformed state: {at}status {status[:40]!r} "
                             "is not creating, ready or deleting", hint=_HINT)
        created = self.text(r, "created_at", "", at) or now_iso()
        return ResourceRecord(
            address=self.text(r, "address", prefix=at),
            type=self.text(r, "type", prefix=at),
            status=status,  # type: ignore[arg-type]  # checked just above
            idempotency_key=self.text(r, "idempotency_key", prefix=at),
            id=self.optional_text(r, "id", at),
            group=self.optional_text(r, "group", at),
            attributes=dict(self.typed(r, "attributes", dict, {}, at)),
            meta=dict(self.typed(r, "meta", dict, {}, at)),
            worker_names=self.str_list(r, "worker_names", at),
            created_at=created,
            depends_on=self.str_list(r, "depends_on", at),
        )


_RECORD_FIELDS = tuple(f.name for f in fields(ResourceRecord))
_STATE_FIELDS = tuple(f.name for f in fields(StateFile))
