"""Telemetry payloads: the typed form of each event kind's ``data`` (see ``events``).

``to_data`` writes a payload's JSON object, ``from_data`` reads it back tolerantly, since
older databases may lack newer keys. Standard library only: the scheduler plugin
imports this on the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from scalable.events import (
    DESTROY_COMPLETE,
    OBJECTIVE_PLAN,
    RESOURCE_FAILED,
    SCALE_BLOCKED,
    SCALE_DECISION,
    SCALE_FAILED,
    WORKER_ADDED,
    WORKER_PREEMPTED,
    WORKER_REMOVED,
    WORKERS_WAITING,
    complete_kind,
    start_kind,
)


@dataclass(frozen=True)
class ScaleDecision:
    """A group's worker count changed (the controller, the dashboard, an objective)."""

    group: str
    from_: int | None
    to: int | None
    reason: str = ""

    kind: ClassVar[str] = SCALE_DECISION

    def to_data(self) -> dict[str, Any]:
        return {"group": self.group, "from": self.from_, "to": self.to, "reason": self.reason}

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> ScaleDecision:
        return cls(
            group=str(d.get("group") or "default"),
            from_=d.get("from"),
            to=d.get("to"),
            reason=str(d.get("reason") or ""),
        )


@dataclass(frozen=True)
class ScaleBlocked:
    """Adaptive asked for ``wanted`` workers; objectives or the budget held it at
    ``allowed`` (recorded once per group and held count)."""

    group: str
    from_: int
    wanted: int
    allowed: int
    reason: str

    kind: ClassVar[str] = SCALE_BLOCKED

    def to_data(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "from": self.from_,
            "wanted": self.wanted,
            "allowed": self.allowed,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ScaleFailed:
    """A resize was asked for and its apply failed."""

    group: str
    from_: int | None
    to: int | None
    reason: str
    errors: list[str] = field(default_factory=list)

    kind: ClassVar[str] = SCALE_FAILED

    def to_data(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "from": self.from_,
            "to": self.to,
            "reason": self.reason,
            "errors": list(self.errors),
        }


@dataclass(frozen=True)
class BudgetAction:
    """The budget guard warned (``BUDGET_WARNING``) or stopped the run
    (``BUDGET_EXHAUSTED``)."""

    kind: str  # BUDGET_WARNING or BUDGET_EXHAUSTED
    budget_usd: float
    spent_usd: float
    reason: str
    on_budget: str | None = None

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "budget_usd": self.budget_usd,
            "spent_usd": self.spent_usd,
            "reason": self.reason,
        }
        if self.on_budget is not None:
            out["on_budget"] = self.on_budget
        return out


@dataclass(frozen=True)
class ObjectivePlan:
    """What objective planning chose for a group, what it predicted (with the 90% range),
    and the bounds a controller keeps while the run goes (docs/guides/scaling.rst)."""

    group: str
    workers: int
    tasks: int | None
    task_seconds: float | None  # the mean
    predicted_seconds: float | None
    predicted_cost_usd: float | None  # every resource billed
    source: str
    budget_usd: float | None
    deadline_hours: float | None
    task_seconds_median: float | None = None
    task_seconds_p90: float | None = None
    predicted_low: float | None = None
    predicted_high: float | None = None
    startup_seconds: float | None = None
    threads: int | None = None
    hourly_per_worker: float | None = None
    hourly_fixed: float | None = None
    budget_ceiling: int | None = None
    on_budget: str = "stop"

    kind: ClassVar[str] = OBJECTIVE_PLAN

    def to_data(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "workers": self.workers,
            "tasks": self.tasks,
            "task_seconds": self.task_seconds,
            "predicted_seconds": self.predicted_seconds,
            "predicted_cost_usd": self.predicted_cost_usd,
            "source": self.source,
            "budget_usd": self.budget_usd,
            "deadline_hours": self.deadline_hours,
            "task_seconds_median": self.task_seconds_median,
            "task_seconds_p90": self.task_seconds_p90,
            "predicted_low": self.predicted_low,
            "predicted_high": self.predicted_high,
            "startup_seconds": self.startup_seconds,
            "threads": self.threads,
            "hourly_per_worker": self.hourly_per_worker,
            "hourly_fixed": self.hourly_fixed,
            "budget_ceiling": self.budget_ceiling,
            "on_budget": self.on_budget,
        }

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> ObjectivePlan:
        """Read back (a saved plan's copy): ValueError when the group or the worker
        count, which apply acts on, is missing or of the wrong type."""
        group, workers = d.get("group"), d.get("workers")
        if not isinstance(group, str) or isinstance(workers, bool) \
                or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"group {group!r} and workers {workers!r} are not a group name "
                             "and a worker count")
        for key in ("budget_usd", "deadline_hours"):
            v = d.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ValueError(f"{key} {v!r} is not a number")
        names = {f for f in cls.__dataclass_fields__ if f != "kind"}
        return cls(**{**dict.fromkeys(("tasks", "task_seconds", "predicted_seconds",
                                       "predicted_cost_usd", "budget_usd", "deadline_hours")),
                      "source": "", **{k: v for k, v in d.items() if k in names}})


@dataclass(frozen=True)
class StepStarted:
    """An apply or a destroy began, with this many actionable changes.

    ``plan`` is the plan being carried out (a ``scalable.planning.model.Plan``) for
    views that show it (``apply --json``); telemetry keeps only the count.
    """

    destroy: bool
    changes: int
    plan: Any = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return start_kind(self.destroy)

    def to_data(self) -> dict[str, Any]:
        return {"changes": self.changes}


@dataclass(frozen=True)
class StepCompleted:
    """An apply or a destroy ended; ``errors`` empty means it converged."""

    destroy: bool
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    errors: list[str] = field(default_factory=list)
    # The outputs after it (for views; telemetry does not keep them).
    outputs: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> str:
        return complete_kind(self.destroy)

    def to_data(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "destroyed": self.destroyed,
            "errors": list(self.errors),
        }

    @classmethod
    def from_data(cls, kind: str, d: dict[str, Any]) -> StepCompleted:
        return cls(
            destroy=kind == DESTROY_COMPLETE,
            added=int(d.get("added") or 0),
            changed=int(d.get("changed") or 0),
            destroyed=int(d.get("destroyed") or 0),
            errors=[str(e) for e in d.get("errors") or []],
        )


@dataclass(frozen=True)
class ResourceStep:
    """One resource step: its call began (creating, updating, deleting) or it ended."""

    kind: str  # RESOURCE_CREATING/CREATED, _UPDATING/_UPDATED, _DELETING/_DELETED
    address: str
    type: str
    id: str | None = None
    # A create that took a fallback: what was obtained and the refusals before it
    # (``{"instance_type", "subnet", "failover": [...]}``), for ``report``.
    obtained: dict[str, Any] | None = None

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "type": self.type}
        if self.id is not None:
            out["id"] = self.id
        if self.obtained:
            out["obtained"] = self.obtained
        return out


@dataclass(frozen=True)
class ResourceFailed:
    """A resource's create, update or delete failed (or it died before its workers
    registered); ``error`` is the backend's reason."""

    address: str
    type: str
    action: str  # create, update or delete
    error: str

    kind: ClassVar[str] = RESOURCE_FAILED

    def to_data(self) -> dict[str, Any]:
        return {"address": self.address, "type": self.type, "action": self.action,
                "error": self.error}


@dataclass(frozen=True)
class WorkersWaiting:
    """Apply is waiting for workers to register: ``ready`` of ``expected`` so far."""

    ready: int
    expected: int

    kind: ClassVar[str] = WORKERS_WAITING

    def to_data(self) -> dict[str, Any]:
        return {"ready": self.ready, "expected": self.expected}


@dataclass(frozen=True)
class WorkerAdded:
    """A worker registered with the scheduler (the plugin)."""

    address: str
    name: str
    nthreads: int = 0
    memory_limit: int = 0

    kind: ClassVar[str] = WORKER_ADDED

    def to_data(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "nthreads": self.nthreads,
            "memory_limit": self.memory_limit,
        }


@dataclass(frozen=True)
class WorkerRemoved:
    """A worker left; ``reason`` is ``walltime``, ``retired`` or ``lost``."""

    address: str
    name: str
    reason: str | None = None
    processing_tasks: int = 0
    lost_results: int = 0
    closing_reason: str | None = None
    stimulus_id: str = ""
    expected: bool | None = None

    kind: ClassVar[str] = WORKER_REMOVED

    @classmethod
    def from_data(cls, d: dict[str, Any], worker: str | None = None) -> WorkerRemoved:
        return cls(
            address=str(d.get("address") or worker or "?"),
            name=str(worker or d.get("name") or d.get("address") or "?"),
            reason=d.get("reason"),
            processing_tasks=int(d.get("processing_tasks") or 0),
            lost_results=int(d.get("lost_results") or 0),
            closing_reason=d.get("closing_reason"),
            stimulus_id=str(d.get("stimulus_id") or ""),
            expected=d.get("expected"),
        )


@dataclass(frozen=True)
class WorkerPreempted:
    """A worker was told it would go (spot notice, platform SIGTERM) and was retired.

    ``reason``: ``spot-interruption`` (EC2 instance metadata) or ``sigterm`` (Fargate, GKE,
    any platform stopping the container); ``notice_seconds``: how long the platform gave
    (None when it did not say); ``retired``: the scheduler moved the worker's data off.
    """

    address: str
    name: str
    reason: str
    notice_seconds: float | None = None
    retired: bool = False
    retire_seconds: float | None = None

    kind: ClassVar[str] = WORKER_PREEMPTED

    def to_data(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "reason": self.reason,
            "notice_seconds": self.notice_seconds,
            "retired": self.retired,
            "retire_seconds": self.retire_seconds,
        }

    @classmethod
    def from_data(cls, d: dict[str, Any], worker: str | None = None) -> WorkerPreempted:
        def num(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            address=str(d.get("address") or d.get("worker") or worker or "?"),
            name=str(worker or d.get("name") or d.get("address") or "?"),
            reason=str(d.get("reason") or "unknown"),
            notice_seconds=num(d.get("notice_seconds")),
            retired=bool(d.get("retired")),
            retire_seconds=num(d.get("retire_seconds")),
        )


Payload = (
    ScaleDecision
    | ObjectivePlan
    | StepStarted
    | StepCompleted
    | ResourceStep
    | ResourceFailed
    | WorkersWaiting
    | WorkerAdded
    | ScaleBlocked
    | ScaleFailed
    | BudgetAction
)
