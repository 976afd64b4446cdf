"""Objective-driven plans: the worker count that meets a deadline at the lowest cost
within a budget, from the distribution of past task times, start-up time, prices and
Amdahl's law.

The model, for ``w`` workers of ``k`` threads (``m = w·k`` slots), ``N`` tasks whose
times have mean ``μ``, a serial fraction ``f`` and a start-up time ``s``; ``P = (1 − f)·N``
tasks run in parallel::

    finish(w) = s + f·N·μ + makespan(P, m)
    makespan  = E[max of P task times]                 if P ≤ m (one wave)
              = (P − m)·μ / m + E[max of m task times]  otherwise
    cost(w)   = (w · price_per_worker + fixed) · finish(w) / 3600

The total work is the *mean* times the count (a skewed distribution's median
under-counts it); the last wave is set by the slowest of the tasks running at the end,
the distribution's tail (``E[max of m]`` from the recorded times). Checked against a
simulation of greedy list scheduling over lognormal, uniform and bimodal times: within
~3% (bimodal with few tasks per slot: up to ~20% pessimistic). ``fixed`` is everything
else the run bills for the same time (scheduler, controller, other groups), so the cost
the planner optimises is the cost block of the plan. With a manifest hint (one task
time, no history) every task takes ``μ`` and the makespan is ``ceil(P / m)·μ``.

The spread: the sum of ``P`` independent task times has standard deviation
``σ·√P``; the finish's 90% range is ``± 1.645·σ·√P / m`` around the expectation.
Workers are billed from start-up to finish. Never more workers than tasks can use
(``w ≤ ceil(P / k)``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scalable import payloads
from scalable.errors import PlanError
from scalable.events import APPLY_COMPLETE, APPLY_START
from scalable.manifest.schema import Objectives
from scalable.pricing.estimator import format_usd
from scalable.units import format_duration

if TYPE_CHECKING:
    from scalable.providers.base import Provider
    from scalable.spec import GroupSpec, TargetSpec

# A first task later than this after the workers were ready: the user waited.
FIRST_TASK_GRACE = 10.0
# z for a two-sided 90% range of a normal distribution.
Z90 = 1.645


class ObjectiveInfeasible(PlanError):
    pass


@dataclass(frozen=True)
class WorkloadEstimate:
    tasks: int
    task_seconds: float  # mean: total work is tasks × this
    task_seconds_p90: float
    serial_fraction: float
    source: str
    # Past task times, sorted (empty for a manifest hint: every task takes task_seconds).
    samples: tuple[float, ...] = field(default=(), repr=False)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else self.task_seconds

    @property
    def stdev(self) -> float:
        return statistics.pstdev(self.samples) if len(self.samples) > 1 else 0.0

    def expected_max(self, n: int) -> float:
        """E[max of ``n`` task times drawn from the history] (the last wave's length)."""
        s = self.samples
        if not s or n <= 0:
            return self.task_seconds if n > 0 else 0.0
        k = len(s)
        return sum(x * (((i + 1) / k) ** n - (i / k) ** n) for i, x in enumerate(s))


@dataclass(frozen=True)
class Option:
    workers: int
    finish_seconds: float
    cost_usd: float | None
    # The 90% range of the finish (equal to finish_seconds without a spread).
    finish_low: float = 0.0
    finish_high: float = 0.0


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
    # Everything else the run bills per hour while it goes (scheduler, controller, …).
    hourly_fixed: float | None = 0.0
    # The most workers the budget allows (None: no budget, or no price).
    budget_ceiling: int | None = None
    # Cache-aware planning: of the run's calls, how many were cached (and not sized for);
    # a scalable.cache.planning.CacheCount, or None.
    cached: Any | None = None

    @property
    def horizon_hours(self) -> float:
        return self.chosen.finish_seconds / 3600

    def spread(self) -> str:
        o = self.chosen
        if o.finish_high - o.finish_low < 0.05 * o.finish_seconds:
            return format_duration(o.finish_seconds)
        return (f"{format_duration(o.finish_seconds)} "
                f"({format_duration(o.finish_low)}–{format_duration(o.finish_high)}, 90% range)")

    def table(self, rows: int = 12) -> str:
        """The options considered, around the chosen one and at the ends."""
        picks = _sample(self.options, self.chosen, rows)
        est = self.estimate
        if est.samples:
            times = (f"task time {est.task_seconds:.3g} s mean, {est.median:.3g} s median, "
                     f"{est.task_seconds_p90:.3g} s p90")
        else:
            times = f"task time {est.task_seconds:.3g} s"
        fixed = "" if not self.hourly_fixed else (
            f" + {format_usd(self.hourly_fixed)}/hour for the rest (scheduler, …)")
        out = [
            f"Objective: {_describe(self.objectives)} for {est.tasks} tasks "
            f"(group {self.group})",
            f"  {times} ({est.source}); serial fraction {est.serial_fraction:g}; start-up "
            f"{self.startup_seconds:.0f} s; {format_usd(self.hourly_per_worker)}/worker-hour"
            + fixed,
            *([f"  {self.cached.describe()}"] if self.cached is not None else []),
            "",
            f"  {'WORKERS':>7}  {'EST. FINISH':>11}  {'90% RANGE':>15}  {'EST. COST':>10}  CHOSEN",
        ]
        for o in picks:
            mark = "   ✔" if o is self.chosen else ""
            rng = (f"{format_duration(o.finish_low)}–{format_duration(o.finish_high)}"
                   if o.finish_high > o.finish_low else "-")
            out.append(f"  {o.workers:>7}  {format_duration(o.finish_seconds):>11}  {rng:>15}  "
                       f"{format_usd(o.cost_usd):>10}{mark}")
        out.append(f"  predicted: {self.spread()}, {format_usd(self.chosen.cost_usd)} "
                   "(every resource billed)")
        return "\n".join(out)

    def event(self) -> payloads.ObjectivePlan:
        """The ``objective_plan`` telemetry event: the prediction, and the bounds the
        controller keeps (read back by a detached controller)."""
        est = self.estimate
        return payloads.ObjectivePlan(
            group=self.group, workers=self.chosen.workers, tasks=est.tasks,
            task_seconds=est.task_seconds, task_seconds_median=est.median,
            task_seconds_p90=est.task_seconds_p90,
            predicted_seconds=self.chosen.finish_seconds,
            predicted_low=self.chosen.finish_low, predicted_high=self.chosen.finish_high,
            predicted_cost_usd=self.chosen.cost_usd, source=est.source,
            startup_seconds=self.startup_seconds, threads=self.threads,
            hourly_per_worker=self.hourly_per_worker, hourly_fixed=self.hourly_fixed,
            budget_ceiling=self.budget_ceiling, budget_usd=self.objectives.budget_usd,
            on_budget=self.objectives.on_budget, deadline_hours=self.objectives.deadline_hours,
        )


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


def makespan(est: WorkloadEstimate, parallel_tasks: float, slots: int) -> float:
    """Expected time for ``parallel_tasks`` tasks on ``slots`` threads (greedy order)."""
    n = math.ceil(parallel_tasks - 1e-9)
    if n <= 0:
        return 0.0
    if not est.samples:
        return math.ceil(n / slots) * est.task_seconds
    if n <= slots:
        return est.expected_max(n)
    return (n - slots) * est.task_seconds / slots + est.expected_max(slots)


def finish_range(workers: int, est: WorkloadEstimate, threads: int,
                 startup: float) -> tuple[float, float, float]:
    """(expected, low, high) finish: the 90% range from the spread of the total work."""
    slots = workers * threads
    serial_n = est.serial_fraction * est.tasks
    parallel_n = (1 - est.serial_fraction) * est.tasks
    mid = startup + serial_n * est.task_seconds + makespan(est, parallel_n, slots)
    sd = est.stdev * (math.sqrt(serial_n) + math.sqrt(parallel_n) / slots)
    low = max(startup + est.expected_max(1) if est.samples else 0.0, mid - Z90 * sd)
    return mid, min(mid, low), mid + Z90 * sd


def finish_seconds(workers: int, est: WorkloadEstimate, threads: int, startup: float) -> float:
    return finish_range(workers, est, threads, startup)[0]


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
    hourly_fixed: float | None = 0.0,
    min_workers: int = 1,
) -> ObjectivePlan:
    """The cheapest count meeting the deadline within the budget (budget only: the
    fastest that fits), ``min_workers``..``max_workers``. Costs count every resource:
    ``hourly_fixed`` is what the run bills besides this group's workers."""
    hourly_total = (None if hourly_per_worker is None or hourly_fixed is None else 0.0)
    if objectives.budget_usd is not None and hourly_total is None:
        what = "worker" if hourly_per_worker is None else "scheduler's (or another resource's)"
        raise ObjectiveInfeasible(
            f"a budget needs a price, and this target's {what} price is unknown",
            hint="set pricing.hourly_usd (or core_hour_usd) on the target",
        )
    top = max(1, min(max_workers, max_useful_workers(est, threads)))
    bottom = max(1, min(min_workers, top))
    options = []
    for w in range(bottom, top + 1):
        t, lo, hi = finish_range(w, est, threads, startup)
        cost = (None if hourly_per_worker is None or hourly_fixed is None
                else (w * hourly_per_worker + hourly_fixed) * t / 3600)
        options.append(Option(w, t, cost, lo, hi))
    deadline = objectives.deadline_hours * 3600 if objectives.deadline_hours else None
    budget = objectives.budget_usd

    def meets(o: Option) -> bool:
        return deadline is None or o.finish_seconds <= deadline

    def affordable(o: Option) -> bool:
        return budget is None or (o.cost_usd is not None and o.cost_usd <= budget)

    ceiling = None
    if budget is not None:
        within = [o.workers for o in options if affordable(o)]
        ceiling = max(within) if within else None
    feasible = [o for o in options if meets(o) and affordable(o)]
    if feasible:
        if deadline is not None:
            # Lowest cost that meets the deadline; fewer workers on a tie.
            chosen = min(feasible, key=lambda o: (o.cost_usd or 0.0, o.workers))
        else:
            chosen = min(feasible, key=lambda o: (o.finish_seconds, o.cost_usd or 0.0))
        return ObjectivePlan(group, est, startup, hourly_per_worker, threads, objectives,
                             options, chosen, hourly_fixed, ceiling)
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
    if deadline is None:
        return (f"nothing fits within {format_usd(budget)}: the cheapest is {need.workers} "
                f"workers, {format_usd(need.cost_usd)} (every resource billed, the "
                "scheduler included)")
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
    tag = tag or (wl.tag if wl else None)
    durations = history(spec, tag)
    serial = wl.serial_fraction if wl else 0.0
    if len(durations) >= 3:
        ordered = sorted(durations)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        return WorkloadEstimate(
            n, statistics.fmean(ordered), p90, serial,
            f"telemetry: {len(ordered)} past tasks"
            + (f" tagged {tag!r}" if tag else "") + f" on {spec.name}",
            samples=_thin(ordered),
        )
    if wl is None or wl.task_seconds is None:
        raise PlanError(
            f"no task history for this workload on target {spec.name!r}",
            hint="run it once (telemetry records task times) or set workload.task_seconds",
        )
    return WorkloadEstimate(n, wl.task_seconds, wl.task_seconds, serial, "manifest workload")


def _thin(ordered: list[float], keep: int = 2000) -> tuple[float, ...]:
    """At most ``keep`` values, evenly spaced in rank (quantiles preserved), so that the
    per-option tail sums stay cheap on long histories."""
    if len(ordered) <= keep:
        return tuple(ordered)
    step = len(ordered) / keep
    return tuple(ordered[int((i + 0.5) * step)] for i in range(keep))


def _db(spec: TargetSpec) -> Any:
    # Imported here: the engine imports this module, and `plan` without objectives
    # never opens telemetry (sqlite3) (issue 15).
    from scalable.telemetry.store import TelemetryDB, db_path

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
    """Median start-up of this target's recent runs: from asking for capacity (the first
    ``apply_start``) to the first task running — the time before work begins, the client
    connecting included. A run whose first task came long after its workers were ready
    (someone waited before submitting) counts to ``apply_complete``. None without
    history."""
    db = _db(spec)
    if db is None:
        return None
    try:
        spans = []
        for run in db.runs(target=spec.name, limit=runs):
            events = db.events(run.id, kinds=[APPLY_START, APPLY_COMPLETE])
            start = next((e.ts for e in events if e.kind == APPLY_START), None)
            done = next((e.ts for e in events if e.kind == APPLY_COMPLETE), None)
            if start is None or done is None or done < start:
                continue
            first, _ = db.task_span(run.id)
            if first is not None and done <= first <= done + FIRST_TASK_GRACE:
                done = first
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
    cached: Any | None = None,
) -> ObjectivePlan:
    """``cached`` (a CacheCount): the run's calls already cached; ``tasks`` are then
    the misses, the only work sized for."""
    spec = provider.target
    group = group_for(spec, tag)
    est = estimate_for(spec, tasks, tag)
    per_worker, fixed = _prices(provider, group.name)
    plan = choose(
        est, objectives,
        threads=group.threads_per_worker,
        startup=startup_history(spec) or provider.startup_seconds(),
        hourly_per_worker=per_worker,
        hourly_fixed=fixed,
        max_workers=_cap(group),
        min_workers=group.adaptive.minimum if group.adaptive else 1,
        group=group.name,
    )
    return plan if cached is None else dataclasses.replace(plan, cached=cached)


def _prices(provider: Provider, group: str) -> tuple[float | None, float | None]:
    """(hourly price of one of ``group``'s workers, hourly price of everything else the
    target runs — scheduler, controller, other groups), as the plan's cost block
    prices them. None: unknown."""
    per_worker: float | None = None
    fixed: float | None = 0.0
    for r in provider.desired(provider.target.with_counts({group: 1})):
        price = provider.price(r)
        if r.group == group and r.worker_names:
            per_worker = (None if price.hourly is None
                          else price.hourly / len(r.worker_names))
        elif fixed is not None:
            fixed = None if price.hourly is None else fixed + price.hourly
    return per_worker, fixed


def _cap(group: GroupSpec) -> int:
    """The most workers objectives may choose: adaptive.maximum, else max_workers if
    written, else 1,000."""
    if group.adaptive:
        return group.adaptive.maximum
    written = group.settings.max_workers
    return int(written) if written else 1000
