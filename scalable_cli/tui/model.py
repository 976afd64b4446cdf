"""The dashboard's picture as plain data, and the arithmetic that builds it.

A *source* (``scalable.tui.source``) produces a :class:`Snapshot` per update; widgets
only draw snapshots. Nothing here imports Textual or Dask, so sources and these
functions are tested without a terminal and without a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from scalable.addrs import group_of
from scalable.events import (
    APPLY_COMPLETE,
    BUDGET_EXHAUSTED,
    BUDGET_WARNING,
    DESTROY_START,
    OBJECTIVE_PLAN,
    SCALE_DECISION,
    WORKER_PREEMPTED,
    WORKER_REMOVED,
)
from scalable.payloads import WorkerPreempted
from scalable.telemetry.report import compute_cost, fmt_seconds, worker_price
from scalable.telemetry.store import Event, WorkerSpan, timeline

# The worker-count sparkline: COLUMNS columns of SPARK_SECONDS / COLUMNS seconds each,
# ending at the moment shown; a column is the most workers present during it.
SPARK_COLUMNS = 24
SPARK_SECONDS = 120.0
SPARK_BARS = "▁▂▃▄▅▆▇█"
# Throughput: tasks finished over the last RATE_WINDOW seconds.
RATE_WINDOW = 10.0
# The log keeps the newest lines only.
MAX_LOG_LINES = 500


@dataclass(frozen=True)
class WorkerRow:
    name: str
    address: str
    host: str
    threads: int
    memory: int | None  # bytes in use (None: not known, e.g. in a replay)
    memory_limit: int | None
    processing: int | None
    cpu: float | None  # percent of one core
    group: str | None


@dataclass(frozen=True)
class GroupRow:
    name: str
    mode: str  # "fixed" or "adaptive 1-3"
    desired: int | None
    pending: int | None
    ready: int
    history: tuple[int, ...]  # SPARK_COLUMNS worker counts, oldest first (-1: before the run)
    adaptive: bool = False


@dataclass(frozen=True)
class TagRow:
    tag: str | None  # None: untagged tasks
    queued: int | None  # None: not known (replays do not record queues)
    processing: int | None
    done: int
    failed: int
    rate: float | None  # tasks finished per second over the last RATE_WINDOW


@dataclass(frozen=True)
class LogLine:
    key: str
    ts: float
    offset: float  # seconds since the run started
    kind: str  # scale | drift | step | note | error
    text: str


@dataclass(frozen=True)
class BudgetView:
    """The run's budget against its spend so far, and where the guard stands."""

    budget_usd: float
    spent_usd: float | None  # None: a price is unknown
    level: str  # ok | warning | held | exhausted (the guard's own events say which)
    on_budget: str = "stop"
    guard_spent_usd: float | None = None  # what the guard counted when it stopped

    @property
    def share(self) -> float | None:
        spent = self.guard_spent_usd if self.level == "exhausted" else self.spent_usd
        return None if spent is None else spent / self.budget_usd


@dataclass(frozen=True)
class Snapshot:
    mode: str  # live | replay
    target: str
    provider: str
    scheduler_address: str | None
    run_id: str | None
    started_at: float | None
    at: float  # the moment this picture shows
    status: str  # what the header says about the connection / playback
    connected: bool = True
    cost_usd: float | None = None
    hourly_usd: float | None = None
    cost_note: str = ""
    groups: tuple[GroupRow, ...] = ()
    workers: tuple[WorkerRow, ...] = ()
    work: tuple[TagRow, ...] = ()
    log: tuple[LogLine, ...] = ()
    waiting: int | None = None  # tasks waiting on dependencies (live only)
    approximate: bool = False  # per-tag counts scaled past the probe's cap
    extra: dict[str, Any] = field(default_factory=dict)
    cache: tuple[int, int] | None = None  # @cacheable (hits, calls) so far in this run
    budget: BudgetView | None = None  # the run's objectives.budget_usd, if it has one

    @property
    def uptime(self) -> float | None:
        return None if self.started_at is None else max(0.0, self.at - self.started_at)


def cache_hits(events: Iterable[Event], until: float | None = None) -> tuple[int, int] | None:
    """(hits, calls) of @cacheable calls recorded up to ``until``; None without any."""
    from scalable.cache.telemetry import summarise

    summary = summarise(e for e in events if until is None or e.ts <= until)
    return None if summary is None else (summary.total.hits, summary.total.calls)


def fmt_cache(cache: tuple[int, int] | None) -> str:
    if cache is None or not cache[1]:
        return ""
    hits, calls = cache
    return f"cache {hits / calls:.0%} hits of {fmt_count(calls)}"


# -- formatting --------------------------------------------------------------------------


def sparkline(values: Sequence[int], top: int | None = None) -> str:
    """Bars scaled from 0 to ``top`` (default: the largest value); -1 draws a blank."""
    top = max([top or 0, *values, 1])
    out = []
    for v in values:
        if v < 0:
            out.append(" ")
        elif v == 0:
            out.append("·")
        else:
            out.append(SPARK_BARS[min(len(SPARK_BARS) - 1,
                                      math.ceil(v / top * len(SPARK_BARS)) - 1)])
    return "".join(out)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, factor in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= factor:
            v = n / factor
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return f"{n}B"


def fmt_memory(used: int | None, limit: int | None) -> str:
    if used is None and not limit:
        return "-"
    if not limit:
        return fmt_bytes(used)
    return f"{fmt_bytes(used)}/{fmt_bytes(limit)}"


def fmt_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}d {text}" if days else text


def fmt_offset(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return "+" + fmt_seconds(seconds) if seconds >= 1 else f"+{seconds:.1f}s"


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    if rate >= 100:
        return f"{rate:.0f}/s"
    return f"{rate:.1f}/s"


def fmt_count(n: int | None, approximate: bool = False) -> str:
    if n is None:
        return "-"
    return f"≈{n}" if approximate and n else str(n)


# -- arithmetic shared by the live and replay sources -------------------------------------


def group_series(spans: Iterable[WorkerSpan], start: float, at: float,
                 columns: int = SPARK_COLUMNS, seconds: float = SPARK_SECONDS) -> tuple[int, ...]:
    """The most workers present in each of ``columns`` slices of ``seconds`` up to ``at``.

    Slices that end before ``start`` (the run had not begun) are -1.
    """
    points = timeline(list(spans))
    width = seconds / columns
    out: list[int] = []
    for i in range(columns):
        lo = at - seconds + i * width
        hi = lo + width
        if hi <= start:
            out.append(-1)
            continue
        # Workers present at the slice's start, then any change inside it.
        before = [p.workers for p in points if p.ts <= lo]
        peak = before[-1] if before else 0
        for p in points:
            if lo < p.ts <= hi:
                peak = max(peak, p.workers)
        out.append(peak)
    return tuple(out)


def spans_at(spans: Iterable[WorkerSpan], at: float) -> list[WorkerSpan]:
    """The spans as they were known at ``at``: later ones dropped, later ends reopened."""
    out = []
    for sp in spans:
        if sp.start > at:
            continue
        if sp.stop is not None and sp.stop > at:
            sp = WorkerSpan(sp.name, sp.address, sp.nthreads, sp.start, None, None)
        out.append(sp)
    return out


def cost_at(spans: Sequence[WorkerSpan], start: float, at: float,
            pricing: dict[str, Any] | None) -> tuple[float | None, float | None, str]:
    """(cost so far, $/hour now, note) with the run's recorded prices."""
    cost = compute_cost(spans, start, at, pricing)
    if pricing is None:
        return None, None, cost.note
    prices: dict[str, float | None] = pricing.get("worker_hourly") or {}
    hourly: float | None = pricing.get("scheduler_hourly")
    for sp in spans:
        if sp.start <= at and (sp.stop is None or sp.stop > at):
            p = worker_price(sp.name, prices)
            hourly = None if p is None or hourly is None else hourly + p
    return cost.usd, hourly, cost.note


# The guard holds scale-ups from this share of the budget on (scaling/budget.py).
HOLD_SHARE = 0.9


def budget_view(events: Iterable[Event], spent: float | None,
                until: float | None = None) -> BudgetView | None:
    """The budget of the run's latest ``objective_plan`` (up to ``until``) against
    ``spent`` (the run's cost so far, as the header and ``report`` count it); the level
    from the guard's own ``budget_warning`` / ``budget_exhausted`` events, and "held" once
    the spend passes 90% (the guard's no-scale-up line)."""
    budget: float | None = None
    on_budget = "stop"
    level = "ok"
    guard: float | None = None
    for ev in events:
        if until is not None and ev.ts > until:
            break
        if ev.kind == OBJECTIVE_PLAN and ev.data.get("budget_usd") is not None:
            budget = float(ev.data["budget_usd"])
            on_budget = str(ev.data.get("on_budget") or "stop")
            level, guard = "ok", None  # a new objective starts a new budget
        elif ev.kind == BUDGET_WARNING and level == "ok":
            level = "warning"
        elif ev.kind == BUDGET_EXHAUSTED:
            level = "exhausted"
            guard = float(ev.data.get("spent_usd") or 0.0)
            on_budget = str(ev.data.get("on_budget") or on_budget)
    if budget is None:
        return None
    if level != "exhausted" and spent is not None and spent >= HOLD_SHARE * budget:
        level = "held"
    return BudgetView(budget, spent, level, on_budget, guard)


def budget_bar(share: float | None, width: int = 10) -> str:
    """``width`` cells filled in proportion to ``share`` (capped at full)."""
    if share is None:
        return "?" * width
    full = min(width, round(max(0.0, share) * width))
    return "█" * full + "░" * (width - full)


def event_line(key: str, ev: Event, start: float) -> LogLine | None:
    """The log line for a telemetry event, or None for events the log leaves out."""
    d = ev.data
    offset = ev.ts - start
    if ev.kind == SCALE_DECISION:
        group = d.get("group") or "default"
        reason = str(d.get("reason") or "").strip()
        text = f"{group}: {d.get('from')} → {d.get('to')} workers"
        return LogLine(key, ev.ts, offset, "scale", text + (f"  {reason}" if reason else ""))
    if ev.kind == WORKER_PREEMPTED:
        p = WorkerPreempted.from_data(d, ev.worker)
        notice = "" if p.notice_seconds is None else f", {p.notice_seconds:.0f}s notice"
        moved = "data moved off" if p.retired else "data NOT moved"
        return LogLine(key, ev.ts, offset, "drift",
                       f"preempted: {p.name} ({p.reason}{notice}); {moved}")
    if ev.kind == WORKER_REMOVED:
        name = ev.worker or d.get("name") or d.get("address") or "?"
        why = d.get("reason")
        busy = int(d.get("processing_tasks") or 0)
        more = f" ({busy} task{'s' if busy != 1 else ''} rescheduled)" if busy else ""
        if why == "lost":
            return LogLine(key, ev.ts, offset, "drift", f"lost worker {name}{more}")
        if why == "walltime":
            return LogLine(key, ev.ts, offset, "drift",
                           f"job expired: {name} reached its walltime{more}")
        return None
    if ev.kind == APPLY_COMPLETE:
        errors = d.get("errors") or []
        text = (f"apply: {d.get('added', 0)} added, {d.get('changed', 0)} changed, "
                f"{d.get('destroyed', 0)} destroyed")
        if errors:
            text += f"; {len(errors)} error(s): {errors[0]}"
        return LogLine(key, ev.ts, offset, "error" if errors else "step", text)
    if ev.kind == DESTROY_START:
        return LogLine(key, ev.ts, offset, "step", "destroy started")
    if ev.kind in (BUDGET_WARNING, BUDGET_EXHAUSTED):
        word = "budget warning" if ev.kind == BUDGET_WARNING else "budget exhausted"
        return LogLine(key, ev.ts, offset, "error" if ev.kind == BUDGET_EXHAUSTED else "note",
                       f"{word}: {d.get('reason', '')}")
    return None


def group_names(declared: Sequence[str], spans: Iterable[WorkerSpan],
                decisions: Iterable[Event]) -> list[str]:
    """Declared groups first, then any group seen in worker names or decisions."""
    names = list(declared)
    for sp in spans:
        g = group_of(sp.name)
        if g is not None and g not in names:
            names.append(g)
    for ev in decisions:
        g = ev.data.get("group")
        if g and g not in names:
            names.append(str(g))
    return names


def spans_of_group(spans: Iterable[WorkerSpan], group: str, only: bool) -> list[WorkerSpan]:
    """The spans of one group (``only``: the target has one group; every worker counts)."""
    return [sp for sp in spans if only or group_of(sp.name) == group]


def rate_from(history: Sequence[tuple[float, dict[str | None, int]]], tag: str | None,
              window: float = RATE_WINDOW) -> float | None:
    """Tasks per second of ``tag`` (None key: untagged; "*": all) over the history's
    newest ``window`` seconds; None until two readings exist."""
    if len(history) < 2:
        return None
    now, last = history[-1]
    base_t, base = history[0]
    for t, counts in history:
        if now - t <= window:
            base_t, base = t, counts
            break
    if now <= base_t:
        return None

    def total(c: dict[str | None, int]) -> int:
        return sum(c.values()) if tag == "*" else c.get(tag, 0)

    return max(0, total(last) - total(base)) / (now - base_t)
