"""Objective-driven plans: the worker count that meets a deadline at the lowest cost
within a budget, from predicted task times, start-up time, prices and Amdahl's law.

The model, for ``w`` workers of ``k`` threads, ``N`` tasks of median time ``t``, a serial
fraction ``f`` and a start-up time ``s``::

    finish(w) = s + f·N·t + ceil((1 − f)·N / (w·k)) · t
    cost(w)   = w · price_per_worker_hour · finish(w) / 3600

Workers are billed from start-up to finish. Never more workers than tasks can use
(``w ≤ ceil((1 − f)·N / k)``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scalable.errors import PlanError
from scalable.events import APPLY_COMPLETE, APPLY_START
from scalable.manifest.schema import Objectives
from scalable.pricing.estimator import format_usd
from scalable.telemetry.store import TelemetryDB, db_path
from scalable.units import format_duration

if TYPE_CHECKING:
    from scalable.providers.base import Provider
    from scalable.spec import GroupSpec, TargetSpec


class ObjectiveInfeasible(PlanError):
    pass


@dataclass(frozen=True)
class WorkloadEstimate:
    tasks: int
    task_seconds: float  # median
    task_seconds_p90: float
    serial_fraction: float
    source: str


@dataclass(frozen=True)
class Option:
    workers: int
    finish_seconds: float
    cost_usd: float | None


@dataclass(frozen=True)
class ObjectivePlan:
    group: str
    estimate: WorkloadEstimate
    startup_seconds: float
    hourly_per_worker: float | None
    threads: int
    objectives: Objectives
    options: list[Option]
    chosen: Option

    @property
    def horizon_hours(self) -> float:
        return self.chosen.finish_seconds / 3600

    def table(self, rows: int = 12) -> str:
        """The options considered, around the chosen one and at the ends."""
        picks = _sample(self.options, self.chosen, rows)
        out = [
            f"Objective: {_describe(self.objectives)} for {self.estimate.tasks} tasks "
            f"(group {self.group})",
            f"  task time {self.estimate.task_seconds:.3g} s median, "
            f"{self.estimate.task_seconds_p90:.3g} s p90 ({self.estimate.source}); "
            f"serial fraction {self.estimate.serial_fraction:g}; start-up "
            f"{self.startup_seconds:.0f} s; {format_usd(self.hourly_per_worker)}/worker-hour",
            "",
            f"  {'WORKERS':>7}  {'EST. FINISH':>11}  {'EST. COST':>10}  CHOSEN",
        ]
        for o in picks:
            mark = "   ✔" if o is self.chosen else ""
            out.append(f"  {o.workers:>7}  {format_duration(o.finish_seconds):>11}  "
                       f"{format_usd(o.cost_usd):>10}{mark}")
        return "\n".join(out)


def _describe(obj: Objectives) -> str:
    parts = []
    if obj.deadline_hours is not None:
        parts.append(f"deadline {obj.deadline_hours:g} h")
    if obj.budget_usd is not None:
        parts.append(f"budget {format_usd(obj.budget_usd)}")
    return ", ".join(parts) or "none"


def _sample(options: list[Option], chosen: Option, rows: int) -> list[Option]:
    if len(options) <= rows:
        return options
    idx = options.index(chosen)
    keep = {0, len(options) - 1, *range(max(0, idx - 3), min(len(options), idx + 4))}
    step = max(1, len(options) // rows)
    keep |= set(range(0, len(options), step))
    return [options[i] for i in sorted(keep)][: rows + 8]


def finish_seconds(workers: int, est: WorkloadEstimate, threads: int, startup: float) -> float:
    serial = est.serial_fraction * est.tasks * est.task_seconds
    parallel_tasks = (1 - est.serial_fraction) * est.tasks
    waves = math.ceil(parallel_tasks / (workers * threads)) if parallel_tasks else 0
    return startup + serial + waves * est.task_seconds


def max_useful_workers(est: WorkloadEstimate, threads: int) -> int:
    return max(1, math.ceil((1 - est.serial_fraction) * est.tasks / threads))


def choose(
    est: WorkloadEstimate,
    objectives: Objectives,
    *,
    threads: int,
    startup: float,
    hourly_per_worker: float | None,
    max_workers: int,
    group: str = "default",
) -> ObjectivePlan:
    if objectives.budget_usd is not None and hourly_per_worker is None:
        raise ObjectiveInfeasible(
            "a budget needs a price, and this target's worker price is unknown",
            hint="set pricing.hourly_usd (or core_hour_usd) on the target",
        )
    top = max(1, min(max_workers, max_useful_workers(est, threads)))
    options = []
    for w in range(1, top + 1):
        t = finish_seconds(w, est, threads, startup)
        cost = None if hourly_per_worker is None else w * hourly_per_worker * t / 3600
        options.append(Option(w, t, cost))
    deadline = objectives.deadline_hours * 3600 if objectives.deadline_hours else None
    budget = objectives.budget_usd

    def meets(o: Option) -> bool:
        return deadline is None or o.finish_seconds <= deadline

    def affordable(o: Option) -> bool:
        return budget is None or (o.cost_usd is not None and o.cost_usd <= budget)

    feasible = [o for o in options if meets(o) and affordable(o)]
    if feasible:
        if deadline is not None:
            # Lowest cost that meets the deadline; fewer workers on a tie.
            chosen = min(feasible, key=lambda o: (o.cost_usd or 0.0, o.workers))
        else:
            chosen = min(feasible, key=lambda o: (o.finish_seconds, o.cost_usd or 0.0))
        return ObjectivePlan(group, est, startup, hourly_per_worker, threads, objectives,
                             options, chosen)
    raise ObjectiveInfeasible(_infeasible(options, deadline, budget, top, max_workers),
                              hint=_hint(options, deadline, budget))


def _infeasible(options: list[Option], deadline: float | None, budget: float | None,
                top: int, max_workers: int) -> str:
    on_time = [o for o in options if deadline is None or o.finish_seconds <= deadline]
    if deadline is not None and not on_time:
        fastest = min(options, key=lambda o: o.finish_seconds)
        bound = "the maximum worker count" if top == max_workers else "what the tasks can use"
        return (
            f"deadline {deadline / 3600:g} h cannot be met: the fastest is {fastest.workers} "
            f"workers ({bound}), finishing in {format_duration(fastest.finish_seconds)}"
        )
    need = min(on_time, key=lambda o: o.cost_usd or 0.0)
    within = [o for o in options if o.cost_usd is not None and budget is not None
              and o.cost_usd <= budget]
    text = (f"deadline needs ≥ {need.workers} workers = {format_usd(need.cost_usd)} > budget "
            f"{format_usd(budget)}")
    if within:
        best = min(within, key=lambda o: o.finish_seconds)
        text += (f"; within {format_usd(budget)}: {best.workers} workers, finishes in "
                 f"{format_duration(best.finish_seconds)}")
    else:
        text += f"; nothing fits within {format_usd(budget)}"
    return text


def _hint(options: list[Option], deadline: float | None, budget: float | None) -> str:
    if deadline is not None and budget is not None:
        return "raise the budget, relax the deadline, or raise adaptive.maximum/max_workers"
    return "relax the objective, or raise adaptive.maximum / max_workers"


# -- wiring to a target -----------------------------------------------------------------


def estimate_for(spec: TargetSpec, tasks: int | None, tag: str | None) -> WorkloadEstimate:
    """Task times from telemetry history on this target, else the manifest's workload."""
    wl = spec.workload
    n = tasks or (wl.tasks if wl else None)
    if not n:
        raise PlanError(
            "objective planning needs the number of tasks",
            hint="pass --tasks N, or set workload.tasks in the target",
        )
    durations = history(spec, tag or (wl.tag if wl else None))
    serial = wl.serial_fraction if wl else 0.0
    if len(durations) >= 3:
        ordered = sorted(durations)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        return WorkloadEstimate(
            n, statistics.median(ordered), p90, serial,
            f"telemetry: {len(ordered)} past tasks"
            + (f" tagged {tag!r}" if tag else "") + f" on {spec.name}",
        )
    if wl is None or wl.task_seconds is None:
        raise PlanError(
            f"no task history for this workload on target {spec.name!r}",
            hint="run it once (telemetry records task times) or set workload.task_seconds",
        )
    return WorkloadEstimate(n, wl.task_seconds, wl.task_seconds, serial, "manifest workload")


def _db(spec: TargetSpec) -> Any:
    path = db_path(spec.root)
    return TelemetryDB(path, readonly=True) if path.exists() else None


def history(spec: TargetSpec, tag: str | None) -> list[float]:
    """Task durations recorded by telemetry on this target (empty without history)."""
    db = _db(spec)
    if db is None:
        return []
    try:
        return list(db.task_durations(spec.name, tag=tag))
    finally:
        db.close()


def startup_history(spec: TargetSpec, runs: int = 5) -> float | None:
    """Median time of the first apply of this target's recent runs, start to workers
    ready (telemetry's apply_start → apply_complete), or None without history."""
    db = _db(spec)
    if db is None:
        return None
    try:
        spans = []
        for run in db.runs(target=spec.name, limit=runs):
            events = db.events(run.id, kinds=[APPLY_START, APPLY_COMPLETE])
            start = next((e.ts for e in events if e.kind == APPLY_START), None)
            done = next((e.ts for e in events if e.kind == APPLY_COMPLETE), None)
            if start is not None and done is not None and done >= start:
                spans.append(done - start)
        return statistics.median(spans) if spans else None
    finally:
        db.close()


def group_for(spec: TargetSpec, tag: str | None) -> GroupSpec:
    if tag is not None and tag in spec.declared_tags:
        return spec.group(spec.declared_tags[tag])
    for g in spec.groups:
        if g.name == "default":
            return g
    return spec.groups[0]


def plan_objectives(
    provider: Provider,
    objectives: Objectives,
    *,
    tasks: int | None = None,
    tag: str | None = None,
) -> ObjectivePlan:
    spec = provider.target
    group = group_for(spec, tag)
    est = estimate_for(spec, tasks, tag)
    one = spec.with_counts({group.name: 1})
    worker = next(r for r in provider.desired(one) if r.group == group.name)
    price = provider.price(worker)
    per_worker = None if price.hourly is None else price.hourly / max(1, len(worker.worker_names))
    return choose(
        est, objectives,
        threads=group.threads_per_worker,
        startup=startup_history(spec) or provider.startup_seconds(),
        hourly_per_worker=per_worker,
        max_workers=_cap(group),
        group=group.name,
    )


def _cap(group: GroupSpec) -> int:
    """The most workers objectives may choose: adaptive.maximum, else max_workers if
    written, else 1,000."""
    if group.adaptive:
        return group.adaptive.maximum
    written = group.settings.get("max_workers")
    return int(written) if written else 1000
