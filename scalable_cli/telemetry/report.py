"""Run summaries: what a run did and what it cost, computed from the telemetry database.

Definitions (see docs/guides/telemetry.rst):

- the run's window is ``[started_at, end]``, ``end`` being ``ended_at`` (or, for a run
  still going, now);
- ``Workers: peak`` is the most workers present at once; ``avg`` is the time-weighted
  mean number of workers over the window;
- ``Tasks``: tasks counted once per key (a task rescheduled after its worker was lost,
  or recomputed, counts once, with its last outcome); ``failed`` counts ``error``,
  ``killed`` and ``upstream`` outcomes;
- ``Efficiency`` = busy thread-seconds (sum of the tasks' compute time) ÷ available
  thread-seconds (sum over workers of threads × seconds present in the window);
- by tag: count, median and 95th percentile of compute time of finished tasks
  (``-`` for untagged tasks); beyond the per-run row limit the quantiles come from a
  log histogram (within ~6%);
- cost = Σ worker-hours × that worker's hourly price + scheduler-hours × the
  scheduler's price, prices as the provider gave them at apply (``pricing`` event).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from scalable.addrs import SCHEDULER, group_of
from scalable.events import (
    BUDGET_ACTIONS,
    ENGINE_STEPS,
    OBJECTIVE_PLAN,
    PRICING,
    SCALE_BLOCKED,
    SCALE_DECISION,
    WORKER_ADDED,
    WORKER_PREEMPTED,
    WORKER_REMOVED,
)
from scalable.payloads import WorkerPreempted, WorkerRemoved
from scalable.pricing.estimator import format_usd
from scalable.telemetry.store import (
    FAILED_STATUSES,
    Aggregate,
    Event,
    Run,
    TaskRow,
    TelemetryDB,
    WorkerSpan,
)

REPORT_FORMAT_VERSION = 1


# -- the arithmetic (pure functions) ----------------------------------------------------


def clip(span: WorkerSpan, start: float, end: float) -> tuple[float, float]:
    """The part of a worker's presence inside ``[start, end]`` (possibly empty)."""
    s = max(span.start, start)
    e = min(span.stop if span.stop is not None else end, end)
    return s, max(s, e)


def worker_stats(spans: Sequence[WorkerSpan], start: float, end: float) -> tuple[int, float]:
    """(peak, time-weighted average) number of workers over ``[start, end]``."""
    deltas: list[tuple[float, int]] = []
    for sp in spans:
        s, e = clip(sp, start, end)
        if e > s:
            deltas += [(s, 1), (e, -1)]
    deltas.sort(key=lambda d: (d[0], d[1]))
    peak = current = 0
    area = 0.0
    last = start
    for ts, d in deltas:
        area += current * (ts - last)
        last = ts
        current += d
        peak = max(peak, current)
    window = end - start
    return peak, (area / window if window > 0 else float(peak))


def available_thread_seconds(spans: Iterable[WorkerSpan], start: float, end: float) -> float:
    total = 0.0
    for sp in spans:
        s, e = clip(sp, start, end)
        total += sp.nthreads * (e - s)
    return total


def busy_thread_seconds(tasks: Iterable[TaskRow], aggregates: Iterable[Aggregate] = ()) -> float:
    busy = sum(t.duration or 0.0 for t in tasks)
    return busy + sum(a.total_seconds for a in aggregates)


def quantile(samples: Sequence[tuple[float, int]], q: float) -> float | None:
    """The ``q`` quantile of weighted samples ``(value, weight)``.

    Linear interpolation between closest ranks, as if each value were repeated
    ``weight`` times (numpy's default method for unit weights).
    """
    pts = sorted((v, w) for v, w in samples if w > 0)
    n = sum(w for _, w in pts)
    if n == 0:
        return None
    pos = q * (n - 1)
    lo_rank, hi_rank = math.floor(pos), math.ceil(pos)
    lo = hi = None
    seen = 0
    for v, w in pts:
        if lo is None and lo_rank < seen + w:
            lo = v
        if hi_rank < seen + w:
            hi = v
            break
        seen += w
    assert lo is not None and hi is not None
    return lo + (hi - lo) * (pos - lo_rank)


def worker_price(name: str, prices: dict[str, float | None]) -> float | None:
    if not prices:
        return None
    group = group_of(name)
    if group is not None and group in prices:
        return prices[group]
    if len(prices) == 1:
        return next(iter(prices.values()))
    return prices.get("default")


# -- the report ------------------------------------------------------------------------


@dataclass
class TagStats:
    tag: str | None
    count: int
    failed: int
    median: float | None
    p95: float | None


@dataclass
class Decision:
    ts: float
    offset: float
    from_: Any
    to: Any
    reason: str
    group: str | None = None


@dataclass
class Cost:
    usd: float | None
    worker_hours: float
    scheduler_hours: float
    source: str = ""
    note: str = ""


@dataclass
class Preemption:
    """A worker taken by the platform, and the work it cost: tasks it was running (they
    ran again elsewhere) and results lost with it (recomputed; 0 when the retire moved
    them in time)."""

    ts: float
    offset: float
    worker: str
    reason: str
    notice_seconds: float | None
    retired: bool
    rerun_tasks: int = 0
    lost_results: int = 0


def preemptions_of(events: Sequence[Event], start: float) -> list[Preemption]:
    out: list[Preemption] = []
    for i, e in enumerate(events):
        if e.kind != WORKER_PREEMPTED:
            continue
        p = WorkerPreempted.from_data(e.data, e.worker)
        gone = next((r for r in events[i + 1:] if r.kind == WORKER_REMOVED
                     and r.worker == e.worker), None)
        removed = WorkerRemoved.from_data(gone.data, gone.worker) if gone else None
        out.append(Preemption(
            ts=e.ts, offset=e.ts - start, worker=p.name, reason=p.reason,
            notice_seconds=p.notice_seconds, retired=p.retired,
            rerun_tasks=removed.processing_tasks if removed else 0,
            lost_results=removed.lost_results if removed else 0))
    return out


@dataclass
class RunReport:
    run: Run
    end: float
    running: bool
    peak_workers: int
    avg_workers: float
    completed: int
    failed: int
    duration: float
    busy_thread_seconds: float
    available_thread_seconds: float
    by_tag: list[TagStats]
    decisions: list[Decision]
    cost: Cost
    removed: dict[str, int] = field(default_factory=dict)
    steps: list[Event] = field(default_factory=list)
    # What objective planning predicted for this run (an ``objective_plan`` event).
    objective: dict[str, Any] | None = None
    last_task_stop: float | None = None
    preemptions: list[Preemption] = field(default_factory=list)
    # @cacheable hits and misses (scalable.cache.telemetry.CacheSummary), if any.
    cache: Any | None = None
    # When the objective's capacity was asked for (the prediction's clock starts there).
    objective_at: float | None = None
    # Scale-ups the objectives held back (``scale_blocked`` events), each recorded once.
    held: list[Decision] = field(default_factory=list)
    # The budget guard's actions (``budget_warning`` / ``budget_exhausted`` events).
    budget_actions: list[Event] = field(default_factory=list)
    # Creates that took a fallback (``resource_created`` events with ``obtained``).
    failovers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def budget_usd(self) -> float | None:
        value = (self.objective or {}).get("budget_usd")
        return None if value is None else float(value)

    @property
    def work_seconds(self) -> float | None:
        """From asking for capacity (the objective's apply; without one, the run's start)
        to the last task's end: what a prediction's finish time predicts."""
        return actual_seconds(self.objective_at or self.run.started_at, self.last_task_stop)

    @property
    def prediction_error(self) -> float | None:
        """(actual − predicted) ÷ predicted finish; None without a prediction."""
        return prediction_error(self.objective, self.work_seconds)

    @property
    def efficiency(self) -> float | None:
        if self.available_thread_seconds <= 0:
            return None
        return self.busy_thread_seconds / self.available_thread_seconds


def actual_seconds(asked_at: float, last_task_stop: float | None) -> float | None:
    return None if last_task_stop is None else max(0.0, last_task_stop - asked_at)


def prediction_error(objective: dict[str, Any] | None, actual: float | None) -> float | None:
    predicted = (objective or {}).get("predicted_seconds")
    if not predicted or actual is None:
        return None
    return (actual - float(predicted)) / float(predicted)


def fmt_error(err: float | None) -> str:
    return "-" if err is None else f"{err:+.0%}"


def tag_stats(tasks: Sequence[TaskRow], aggregates: Sequence[Aggregate]) -> list[TagStats]:
    tags: dict[str | None, dict[str, Any]] = {}

    def entry(tag: str | None) -> dict[str, Any]:
        return tags.setdefault(tag, {"count": 0, "failed": 0, "samples": []})

    for t in tasks:
        e = entry(t.tag)
        if t.status == "ok":
            e["count"] += 1
            if t.duration is not None:
                e["samples"].append((t.duration, 1))
        else:
            e["failed"] += 1
    for a in aggregates:
        e = entry(a.tag)
        if a.status == "ok":
            e["count"] += a.count
            e["samples"].extend(a.samples())
        else:
            e["failed"] += a.count
    out = [TagStats(tag, e["count"], e["failed"], quantile(e["samples"], 0.5),
                    quantile(e["samples"], 0.95)) for tag, e in tags.items()]
    return sorted(out, key=lambda s: (s.tag is None, s.tag or ""))


def compute_cost(spans: Sequence[WorkerSpan], start: float, end: float,
                 pricing: dict[str, Any] | None) -> Cost:
    worker_hours = sum(e - s for s, e in (clip(sp, start, end) for sp in spans)) / 3600
    scheduler_hours = max(0.0, end - start) / 3600
    if pricing is None:
        return Cost(None, worker_hours, scheduler_hours, note="no price was recorded")
    prices: dict[str, float | None] = pricing.get("worker_hourly") or {}
    total = 0.0
    unknown: list[str] = []
    for sp in spans:
        s, e = clip(sp, start, end)
        if e <= s:
            continue
        p = worker_price(sp.name, prices)
        if p is None:
            unknown.append(sp.name)
        else:
            total += p * (e - s) / 3600
    sched = pricing.get("scheduler_hourly")
    if sched is None:
        unknown.append(SCHEDULER)
    else:
        total += sched * scheduler_hours
    notes = "; ".join(pricing.get("notes") or [])
    if unknown:
        what = ", ".join(unknown[:3]) + (", …" if len(unknown) > 3 else "")
        return Cost(None, worker_hours, scheduler_hours, pricing.get("source", ""),
                    f"no price for {what}" + (f" ({notes})" if notes else ""))
    return Cost(total, worker_hours, scheduler_hours, pricing.get("source", ""), notes)


def build_report(db: TelemetryDB, run: Run, *, end: float | None = None,
                 now: float | None = None) -> RunReport:
    """Summarise ``run``. ``end`` overrides the window's end (for a run gone silent)."""
    import time as _time

    running = run.ended_at is None and end is None
    window_end = end if end is not None else (
        run.ended_at if run.ended_at is not None else (now or _time.time()))
    start = run.started_at
    spans = db.worker_spans(run.id)
    tasks = db.tasks(run.id)
    aggs = db.aggregates(run.id)
    peak, avg = worker_stats(spans, start, window_end)
    completed = sum(1 for t in tasks if t.status == "ok") + sum(
        a.count for a in aggs if a.status == "ok")
    failed = sum(1 for t in tasks if t.status in FAILED_STATUSES) + sum(
        a.count for a in aggs if a.status in FAILED_STATUSES)
    events = db.events(run.id)
    decisions = [
        Decision(ts=e.ts, offset=e.ts - start, from_=e.data.get("from"), to=e.data.get("to"),
                 reason=str(e.data.get("reason", "")), group=e.data.get("group"))
        for e in events if e.kind == SCALE_DECISION
    ]
    removed: dict[str, int] = {}
    for e in events:
        if e.kind == WORKER_REMOVED:
            r = str(e.data.get("reason") or "unknown")
            removed[r] = removed.get(r, 0) + 1
    pricing = next((e.data for e in reversed(events) if e.kind == PRICING), None)
    # The first objective_plan is the run's prediction (one is recorded per objective).
    planned = next((e for e in events if e.kind == OBJECTIVE_PLAN), None)
    held = [
        Decision(ts=e.ts, offset=e.ts - start, from_=e.data.get("from"),
                 to=e.data.get("allowed"), reason=str(e.data.get("reason", "")),
                 group=e.data.get("group"))
        for e in events if e.kind == SCALE_BLOCKED
    ]
    stops = [t.stop for t in tasks if t.stop is not None]
    return RunReport(
        run=run, end=window_end, running=running, peak_workers=peak, avg_workers=avg,
        completed=completed, failed=failed, duration=max(0.0, window_end - start),
        busy_thread_seconds=busy_thread_seconds(tasks, aggs),
        available_thread_seconds=available_thread_seconds(spans, start, window_end),
        by_tag=tag_stats(tasks, aggs), decisions=decisions,
        cost=compute_cost(spans, start, window_end, pricing), removed=removed,
        steps=[e for e in events if e.kind in ENGINE_STEPS],
        preemptions=preemptions_of(events, start),
        objective=None if planned is None else planned.data,
        objective_at=None if planned is None else planned.ts,
        last_task_stop=max(stops) if stops else None, held=held,
        budget_actions=[e for e in events if e.kind in BUDGET_ACTIONS],
        failovers=[{"ts": e.ts, "address": e.data.get("address"), **e.data["obtained"]}
                   for e in events if e.kind == "resource_created" and e.data.get("obtained")],
        cache=summarise_cache(events),
    )


def summarise_cache(events: Sequence[Event]) -> Any:
    from scalable.cache.telemetry import summarise

    return summarise(events)


def last_activity(db: TelemetryDB, run: Run) -> float:
    """When the run's scheduler was last heard of (for one that died without closing):
    its plugin's last write (heartbeat), worker events and task ends."""
    times = [run.started_at, run.last_seen or 0.0]
    times += [e.ts for e in db.events(run.id, (WORKER_ADDED, WORKER_REMOVED))]
    times += [t.stop for t in db.tasks(run.id) if t.stop is not None]
    return max(times)


# -- rendering -----------------------------------------------------------------------


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 0.001:
        return f"{s * 1e6:.0f}µs"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def fmt_usd(v: float | None) -> str:
    return format_usd(v)


def render_report(r: RunReport) -> str:
    run = r.run
    eff = r.efficiency
    lines = [
        f"Run: {run.id}",
        f"Target: {run.target} (provider: {run.provider})",
        f"Workers: peak={r.peak_workers}, avg={r.avg_workers:.1f}",
        f"Tasks: {r.completed} completed, {r.failed} failed",
        f"Duration: {fmt_seconds(r.duration)}" + (" (still running)" if r.running else ""),
        "Efficiency: " + ("n/a (no workers)" if eff is None else f"{eff:.0%}")
        + " (worker utilization)",
        "",
        "Tasks by tag:",
    ]
    if r.by_tag:
        width = max(8, *(len(s.tag or "-") for s in r.by_tag))
        lines.append(f"  {'TAG':<{width}}  {'COUNT':>7}  {'FAILED':>6}  {'MEDIAN':>7}  "
                     f"{'P95':>7}")
        for s in r.by_tag:
            lines.append(f"  {s.tag or '-':<{width}}  {s.count:>7}  {s.failed:>6}  "
                         f"{fmt_seconds(s.median):>7}  {fmt_seconds(s.p95):>7}")
    else:
        lines.append("  (no tasks)")
    lines += ["", "Scaling decisions:"]
    if r.decisions:
        for d in r.decisions:
            group = f" [{d.group}]" if d.group else ""
            when = "+" + fmt_seconds(d.offset)
            lines.append(f"  {when:<8}  {d.from_} → {d.to} workers{group}  {d.reason}")
    elif not r.held:
        lines.append("  (none)")
    for d in r.held:
        group = f" [{d.group}]" if d.group else ""
        when = "+" + fmt_seconds(d.offset)
        lines.append(f"  {when:<8}  held at {d.to} workers{group}  {d.reason}")
    if r.removed:
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(r.removed.items()))
        lines += ["", f"Workers removed: {parts}"]
    if r.preemptions:
        lines += ["", "Preemptions:"]
        for p in r.preemptions:
            notice = "no notice given" if p.notice_seconds is None else (
                f"{fmt_seconds(p.notice_seconds)} notice")
            moved = "data moved" if p.retired else "data NOT moved"
            lines.append(f"  +{fmt_seconds(p.offset):<7}  {p.worker}  {p.reason} ({notice}; "
                         f"{moved}); cost: {p.rerun_tasks} task(s) re-run, "
                         f"{p.lost_results} result(s) recomputed")
    if r.failovers:
        lines += ["", "Capacity failovers (what was obtained, and why):"]
        for f in r.failovers:
            where = " in ".join(str(f[k]) for k in (
                "instance_type", "machine_type", "subnet", "zone") if f.get(k))
            lines.append(f"  {f['address']}: {where or 'obtained'} after "
                         f"{'; '.join(f.get('failover') or [])}")
    c = r.cost
    detail = f"{c.worker_hours:.3g} worker-hours"
    if c.source:
        detail += f"; prices: {c.source}"
    if c.note:
        detail += f"; {c.note}"
    lines += ["", f"Cost: {fmt_usd(c.usd)} ({detail})"]
    if r.budget_usd is not None:
        predicted = (r.objective or {}).get("predicted_cost_usd")
        lines.append(f"Budget: {fmt_usd(r.budget_usd)}; spent {fmt_usd(c.usd)}; predicted "
                     f"{fmt_usd(predicted)}")
        for e in r.budget_actions:
            word = "warning" if e.kind == "budget_warning" else "exhausted"
            lines.append(f"  +{fmt_seconds(e.ts - r.run.started_at):<7}  {word}: "
                         f"{e.data.get('reason', '')}")
    if r.objective is not None:
        lines += [""] + render_objective(r)
    if r.cache is not None:
        lines += [""] + render_cache(r.cache)
    return "\n".join(lines) + "\n"


def render_cache(summary: Any) -> list[str]:
    """The "Cache" section: calls, hit rate, misses and time saved, per tag."""
    t = summary.total
    rate = "-" if t.hit_rate is None else f"{t.hit_rate:.0%}"
    lines = [f"Cache: {t.calls} calls, {t.hits} hits ({rate}), {t.misses} misses, "
             f"{fmt_seconds(t.saved_seconds)} saved"]
    if summary.by_tag:
        width = max(8, *(len(tag) for tag in summary.by_tag))
        lines.append(f"  {'TAG':<{width}}  {'CALLS':>7}  {'HITS':>7}  {'MISSES':>7}  "
                     f"{'SAVED':>7}")
        for tag, c in sorted(summary.by_tag.items()):
            hits = f"{c.hit_rate:.0%}" if c.hit_rate is not None else "-"
            lines.append(f"  {tag:<{width}}  {c.calls:>7}  {hits:>7}  {c.misses:>7}  "
                         f"{fmt_seconds(c.saved_seconds):>7}")
    return lines


def render_objective(r: RunReport) -> list[str]:
    o = r.objective or {}
    goals = []
    if o.get("deadline_hours") is not None:
        goals.append(f"deadline {o['deadline_hours']:g} h")
    if o.get("budget_usd") is not None:
        goals.append(f"budget {fmt_usd(o['budget_usd'])}")
    low, high = o.get("predicted_low"), o.get("predicted_high")
    spread = ""
    if low is not None and high is not None and high > low:
        spread = f" ({fmt_seconds(low)}–{fmt_seconds(high)}, 90% range)"
    err = r.prediction_error
    return [
        f"Objective: {', '.join(goals) or 'none'} for {o.get('tasks')} tasks → "
        f"{o.get('workers')} workers (group {o.get('group')})",
        f"  predicted: {fmt_seconds(o.get('predicted_seconds'))}{spread}, "
        f"{fmt_usd(o.get('predicted_cost_usd'))}"
        f"  (task time {fmt_seconds(o.get('task_seconds'))} mean; {o.get('source')})",
        f"  actual:    {fmt_seconds(r.work_seconds)} from asking for capacity to the last "
        f"task ({fmt_error(err)} vs predicted), {fmt_usd(r.cost.usd)}",
    ]


def report_to_dict(r: RunReport) -> dict[str, Any]:
    """The ``--json`` document (``format_version`` 1; additive changes only)."""
    return {
        "format_version": REPORT_FORMAT_VERSION,
        "run": {**r.run.to_dict(), "running": r.running, "end": r.end},
        "workers": {"peak": r.peak_workers, "avg": r.avg_workers, "removed": r.removed},
        "tasks": {"completed": r.completed, "failed": r.failed},
        "duration_seconds": r.duration,
        "efficiency": r.efficiency,
        "busy_thread_seconds": r.busy_thread_seconds,
        "available_thread_seconds": r.available_thread_seconds,
        "by_tag": [asdict(s) for s in r.by_tag],
        "scaling_decisions": [
            {"ts": d.ts, "offset_seconds": d.offset, "from": d.from_, "to": d.to,
             "reason": d.reason, "group": d.group} for d in r.decisions
        ],
        "cost": asdict(r.cost),
        "budget_usd": r.budget_usd,
        "spent_usd": r.cost.usd,
        "budget_actions": [e.to_dict() for e in r.budget_actions],
        "failovers": r.failovers,
        "objective": None if r.objective is None else {
            "predicted": r.objective, "actual_seconds": r.work_seconds,
            "actual_cost_usd": r.cost.usd, "error": r.prediction_error},
        "scaling_held": [
            {"ts": d.ts, "offset_seconds": d.offset, "from": d.from_, "allowed": d.to,
             "reason": d.reason, "group": d.group} for d in r.held
        ],
        "steps": [e.to_dict() for e in r.steps],
        "preemptions": [asdict(p) for p in r.preemptions],
        "cache": None if r.cache is None else r.cache.to_dict(),
    }


def run_prediction_error(db: TelemetryDB, run: Run) -> float | None:
    """How far the run's objective prediction was off (cheap: two small queries)."""
    planned = db.events(run.id, ("objective_plan",))
    if not planned:
        return None
    _, last = db.task_span(run.id)
    return prediction_error(planned[0].data, actual_seconds(planned[0].ts, last))


def render_run_list(db: TelemetryDB, runs: Sequence[Run]) -> str:
    if not runs:
        return "No runs recorded.\n"
    lines = [f"{'RUN':<48} {'TARGET':<12} {'STARTED':<19} {'DURATION':>9} "
             f"{'TASKS':>8} {'FAILED':>6} {'PRED.ERR':>8}  STATUS"]
    for run in runs:
        counts = db.task_counts(run.id)
        ok = counts.get("ok", 0)
        bad = sum(v for k, v in counts.items() if k in FAILED_STATUSES)
        started = datetime.fromtimestamp(run.started_at).strftime("%Y-%m-%d %H:%M:%S")
        status = "running" if run.ended_at is None else "ended"
        err = fmt_error(run_prediction_error(db, run))
        lines.append(f"{run.id:<48} {run.target:<12} {started:<19} "
                     f"{fmt_seconds(run.duration()):>9} {ok:>8} {bad:>6} {err:>8}  {status}")
    return "\n".join(lines) + "\n"
