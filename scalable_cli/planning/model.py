"""The plan: changes, drift and costs, as plain dataclasses with a stable JSON form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scalable.planning.reasons import Reason, saved, words
from scalable.providers.base import ResourceSpec
from scalable.state.model import ResourceRecord, now_iso

Action = Literal["create", "update", "replace", "delete", "no-op"]
# 1.1: targets, replace, refresh_only; 1.2: groups, cost.node_hours_after, cost ranges,
# cost.by_group
PLAN_FORMAT_VERSION = "1.2"


@dataclass
class Change:
    address: str
    action: Action
    type: str
    group: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reasons: list[Reason] = field(default_factory=list)
    hourly_before: float | None = 0.0
    hourly_after: float | None = 0.0
    # What apply needs to carry the change out exactly as shown.
    resource: ResourceSpec | None = None
    record: ResourceRecord | None = None

    @property
    def hourly_delta(self) -> float | None:
        if self.hourly_before is None or self.hourly_after is None:
            return None
        return self.hourly_after - self.hourly_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action,
            "type": self.type,
            "group": self.group,
            "before": self.before,
            "after": self.after,
            "reasons": [words(r) for r in self.reasons],
            "hourly_cost_before": self.hourly_before,
            "hourly_cost_after": self.hourly_after,
            "hourly_cost_delta": self.hourly_delta,
            "resource": asdict(self.resource) if self.resource else None,
            "record": asdict(self.record) if self.record else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        res = d.get("resource")
        rec = d.get("record")
        return cls(
            address=d["address"],
            action=d["action"],
            type=d["type"],
            group=d.get("group"),
            before=d.get("before"),
            after=d.get("after"),
            reasons=[saved(str(t)) for t in d.get("reasons", [])],
            hourly_before=d.get("hourly_cost_before"),
            hourly_after=d.get("hourly_cost_after"),
            resource=ResourceSpec(
                address=res["address"],
                type=res["type"],
                attributes=res["attributes"],
                group=res.get("group"),
                worker_names=tuple(res.get("worker_names", ())),
                depends_on=tuple(res.get("depends_on", ())),
            )
            if res
            else None,
            record=ResourceRecord.from_dict(rec) if rec else None,
        )


@dataclass
class Drift:
    """Something that changed outside scalable (or was left by an interrupted apply)."""

    address: str
    type: str
    kind: Literal["gone", "orphan", "adopted", "pending", "changed"]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cents(value: float | None) -> float | None:
    """A sum of prices without float noise (1.632, not 1.6320000000000001)."""
    return None if value is None else round(value, 6)


@dataclass
class PriceRange:
    """A group's fallback choices and their prices: the first is what the plan counts."""

    group: str
    resources: int
    choices: list[tuple[str, float | None]]

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "resources": self.resources,
                "choices": [{"name": n, "hourly": h} for n, h in self.choices]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PriceRange:
        return cls(str(d["group"]), int(d.get("resources", 0)),
                   [(str(c["name"]), c.get("hourly")) for c in d.get("choices") or []])


@dataclass
class Cost:
    hourly_now: float | None
    hourly_after: float | None
    horizon_hours: float | None
    unknown: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    core_hours_after: float = 0.0
    # $/hour after the plan of each worker group, priced with its own hardware (None:
    # a price in it is unknown). The scheduler and shared resources are in no group.
    by_group: dict[str, float | None] = field(default_factory=dict)
    node_hours_after: float = 0.0  # whole-node allocations only (Slurm `nodes:`)
    # With alternatives a provider may fall back to (EC2 instance_types): the $/hour if
    # every resource got its dearest choice (None: unknown), and each group's choices.
    hourly_after_max: float | None = None
    hourly_after_min: float | None = None
    ranges: list[PriceRange] = field(default_factory=list)

    @property
    def hourly_delta(self) -> float | None:
        if self.hourly_now is None or self.hourly_after is None:
            return None
        return self.hourly_after - self.hourly_now

    @property
    def horizon_total_max(self) -> float | None:
        if not self.ranges or self.hourly_after_max is None or self.horizon_hours is None:
            return None
        return self.hourly_after_max * self.horizon_hours

    @property
    def horizon_total(self) -> float | None:
        if self.hourly_after is None or self.horizon_hours is None:
            return None
        return self.hourly_after * self.horizon_hours

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": "USD",
            "hourly_now": self.hourly_now,
            "hourly_after": self.hourly_after,
            "hourly_delta": self.hourly_delta,
            "horizon_hours": self.horizon_hours,
            "horizon_total": self.horizon_total,
            "core_hours_after": self.core_hours_after,
            "by_group": self.by_group,
            "node_hours_after": self.node_hours_after,
            "unknown": self.unknown,
            "notes": self.notes,
            # 1.2: the range across fallback alternatives (null / [] without any).
            "hourly_after_min": _cents(self.hourly_after_min) if self.ranges else None,
            "hourly_after_max": _cents(self.hourly_after_max) if self.ranges else None,
            "horizon_total_max": _cents(self.horizon_total_max),
            "ranges": [r.to_dict() for r in self.ranges],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cost:
        return cls(
            hourly_now=d.get("hourly_now"),
            hourly_after=d.get("hourly_after"),
            horizon_hours=d.get("horizon_hours"),
            unknown=list(d.get("unknown", [])),
            notes=list(d.get("notes", [])),
            core_hours_after=float(d.get("core_hours_after", 0.0)),
            by_group=dict(d.get("by_group", {})),
            node_hours_after=float(d.get("node_hours_after", 0.0)),
            hourly_after_max=d.get("hourly_after_max"),
            hourly_after_min=d.get("hourly_after_min"),
            ranges=[PriceRange.from_dict(r) for r in d.get("ranges") or []],
        )


@dataclass
class Plan:
    target: str
    provider: str
    lineage: str | None  # None: no state yet
    serial: int
    manifest_digest: str
    destroy: bool
    changes: list[Change]
    drift: list[Drift]
    cost: Cost
    adopted: list[ResourceRecord] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    # Terraform's surgical options, as the plan was made with them (see planning.surgery).
    targets: list[str] = field(default_factory=list)  # --only: a partial plan
    replace: list[str] = field(default_factory=list)  # --replace
    refresh_only: bool = False  # --refresh-only: only ``refreshed`` and ``forget``
    refreshed: list[ResourceRecord] = field(default_factory=list)  # drifted values
    forget: list[str] = field(default_factory=list)  # gone outside scalable
    # Each worker group: name, tags, workers, maximum, container (runtime, image, binds,
    # env names, options; None: plain processes).
    groups: list[dict[str, Any]] = field(default_factory=list)
    # The objective the counts were chosen for (an ``objective_plan`` event's data), kept
    # in saved plans so ``apply FILE`` pins it (and its budget) as ``apply`` would.
    objective: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        add = sum(c.action in ("create", "replace") for c in self.changes)
        change = sum(c.action == "update" for c in self.changes)
        destroy = sum(c.action in ("delete", "replace") for c in self.changes)
        return {"add": add, "change": change, "destroy": destroy}

    @property
    def actionable(self) -> list[Change]:
        return [c for c in self.changes if c.action != "no-op"]

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable or self.adopted or self.refreshed or self.forget)

    def to_dict(self, detail: bool = True) -> dict[str, Any]:
        changes = [c.to_dict() for c in self.changes]
        if not detail:
            for c in changes:
                c.pop("resource")
                c.pop("record")
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "target": self.target,
            "provider": self.provider,
            "lineage": self.lineage,
            "serial": self.serial,
            "manifest_digest": self.manifest_digest,
            "destroy": self.destroy,
            "created_at": self.created_at,
            "summary": self.counts,
            "resource_changes": changes,
            "resource_drift": [d.to_dict() for d in self.drift],
            "adopted": [asdict(r) for r in self.adopted],
            "cost": self.cost.to_dict(),
            "targets": self.targets,
            "replace": self.replace,
            "refresh_only": self.refresh_only,
            "refreshed": [asdict(r) for r in self.refreshed],
            "forget": self.forget,
            "groups": self.groups,
            # Saved plans only (detail): `plan --json` shows the objective's table instead.
            **({"objective": self.objective}
               if detail and self.objective is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            target=d["target"],
            provider=d["provider"],
            lineage=d.get("lineage"),
            serial=int(d.get("serial", 0)),
            manifest_digest=d["manifest_digest"],
            destroy=bool(d.get("destroy")),
            changes=[Change.from_dict(c) for c in d["resource_changes"]],
            drift=[Drift(**x) for x in d.get("resource_drift", [])],
            cost=Cost.from_dict(d.get("cost", {})),
            adopted=[ResourceRecord.from_dict(r) for r in d.get("adopted", [])],
            created_at=d.get("created_at", ""),
            targets=list(d.get("targets", [])),
            replace=list(d.get("replace", [])),
            refresh_only=bool(d.get("refresh_only")),
            refreshed=[ResourceRecord.from_dict(r) for r in d.get("refreshed", [])],
            forget=list(d.get("forget", [])),
            groups=list(d.get("groups", [])),
            objective=d.get("objective") if isinstance(d.get("objective"), dict) else None,
        )
