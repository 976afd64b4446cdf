"""How ``objectives`` bound the adaptive controller while a run goes.

Objective planning picks the cheapest count that meets the deadline within the budget;
the adaptive group starts there. From then on (see docs/guides/scaling.rst, "Adaptive
and objectives together"):

- adaptive may always scale *down* (by demand, as usual) — it only saves money;
- it may scale *up* past the objective's count only when the deadline will be missed
  at the current count: then to the count that meets it, given the queued work, the
  time left and the start-up time of new workers;
- never past the budget's ceiling (the most workers the planned cost fits in the
  budget) nor ``adaptive.maximum``.

A scale-up that these bounds hold back is not a decision: the controller records once
(a ``scale_blocked`` event) that it was held and why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from scalable.scaling.budget import BudgetGuard
from scalable.scaling.policy import Demand


@dataclass(frozen=True)
class Cap:
    workers: int  # the most workers adaptive may ask for now
    reason: str  # why that many, in words
    at_risk: bool = False  # the deadline will be missed at the current count


@dataclass(frozen=True)
class ObjectiveBounds:
    group: str
    workers: int  # the objective's chosen count
    threads: int
    ceiling: int  # budget ceiling ∧ adaptive.maximum
    startup: float  # seconds for a new worker to start working
    deadline_at: float | None  # wall clock (time.time()); None: no deadline
    predicted_seconds: float = 0.0

    @classmethod
    def from_event(cls, data: dict[str, Any], asked_at: float, maximum: int) -> ObjectiveBounds:
        """From an ``objective_plan`` event recorded at ``asked_at``."""
        ceiling = data.get("budget_ceiling")
        deadline = data.get("deadline_hours")
        return cls(
            group=str(data["group"]),
            workers=int(data["workers"]),
            threads=max(1, int(data.get("threads") or 1)),
            ceiling=min(maximum, int(ceiling)) if ceiling else maximum,
            startup=float(data.get("startup_seconds") or 0.0),
            deadline_at=None if deadline is None else asked_at + float(deadline) * 3600,
            predicted_seconds=float(data.get("predicted_seconds") or 0.0),
        )

    def cap(self, current: int, demand: Demand, now: float | None = None) -> Cap:
        """The most workers the group may have now. Never below ``current``: the bounds
        hold back growth; shrinking is adaptive's own business."""
        now = time.time() if now is None else now
        floor = max(current, self.workers)
        if self.deadline_at is None or demand.tasks == 0:
            return Cap(floor, f"objectives chose {self.workers}")
        left = self.deadline_at - now
        work = demand.work_seconds
        rate = max(current, 1) * self.threads
        if work <= rate * max(left, 0.0):
            return Cap(
                floor,
                f"objectives chose {self.workers}; on track: ≈{work:.0f} s of "
                f"work for {max(current, 1)} worker(s), {max(left, 0):.0f} s "
                "to the deadline",
            )
        usable = left - self.startup
        if usable <= 0:
            return Cap(
                floor,
                f"the deadline will be missed (≈{work:.0f} s of work, "
                f"{max(left, 0):.0f} s left) and new workers would start too "
                f"late ({self.startup:.0f} s start-up)",
                at_risk=True,
            )
        extra = math.ceil((work - rate * left) / (self.threads * usable))
        need = max(current, 1) + extra
        if need > self.ceiling:
            return Cap(
                max(floor, self.ceiling),
                f"the deadline needs {need} workers (≈{work:.0f} s of work, "
                f"{left:.0f} s left); the budget and maximum allow {self.ceiling}",
                at_risk=True,
            )
        return Cap(
            max(floor, need),
            f"the deadline needs {need} workers (≈{work:.0f} s of work, {left:.0f} s left)",
            at_risk=True,
        )


def bounds_from_telemetry(
    workspace: Any, maximum_of: dict[str, int]
) -> tuple[bool, ObjectiveBounds | None, BudgetGuard | None]:
    """For a detached controller: the bounds and budget of the current run's
    ``objective_plan``.

    Returns (known, bounds, budget): ``known`` once the run's first apply has completed
    (its events are recorded by then), so the controller waits for it before deciding.
    """
    from scalable.telemetry.recorder import current_run, telemetry_enabled
    from scalable.telemetry.store import TelemetryDB

    if not telemetry_enabled():
        return True, None, None  # nothing recorded: no objectives to learn
    run = current_run(workspace, refresh=False)
    if run is None:
        return False, None, None
    db = TelemetryDB.for_root(workspace.spec.root)
    events = db.events(run.id, ("apply_complete", "objective_plan"))
    plans = [e for e in events if e.kind == "objective_plan"]
    if not plans:
        return any(e.kind == "apply_complete" for e in events), None, None
    last = plans[-1]
    budget = BudgetGuard.from_event(last.data, last.ts)
    group = str(last.data.get("group"))
    if group not in maximum_of:
        return True, None, budget
    return True, ObjectiveBounds.from_event(last.data, last.ts, maximum_of[group]), budget
