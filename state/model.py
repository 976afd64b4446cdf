"""The state file's content: what scalable created, as plain dataclasses."""

from __future__ import annotations

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
    def from_dict(cls, d: dict[str, Any], source: str = "state") -> StateFile:
        version = d.get("format_version")
        if not isinstance(version, int):
            raise StateError(f"{source}: not a scalable state file (no format_version)")
        if version > FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {version} is newer than this scalable "
                f"understands ({FORMAT_VERSION})",
                hint=f"upgrade scalable (the state was written by {d.get('scalable_version')})",
            )
        try:
            return cls(
                target=d["target"],
                provider=d["provider"],
                lineage=d["lineage"],
                serial=int(d["serial"]),
                format_version=version,
                scalable_version=d.get("scalable_version", ""),
                manifest_digest=d.get("manifest_digest", ""),
                owner=d.get("owner", "cli"),
                scale={str(k): int(v) for k, v in d.get("scale", {}).items()},
                outputs=dict(d.get("outputs", {})),
                resources=[ResourceRecord.from_dict(r) for r in d.get("resources", [])],
                forgotten=[{str(k): str(v) for k, v in f.items()}
                           for f in d.get("forgotten", [])],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{source}: malformed state ({exc})") from None


_RECORD_FIELDS = tuple(f.name for f in fields(ResourceRecord))
_STATE_FIELDS = tuple(f.name for f in fields(StateFile))
