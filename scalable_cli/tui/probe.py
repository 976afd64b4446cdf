"""What the dashboard reads from a live scheduler: one compact, bounded snapshot.

This module runs *on the scheduler*. The dashboard sends :func:`install` once per
scheduler with ``run_on_scheduler`` (pickled by value, so the scheduler needs nothing
of scalable installed); it registers the ``scalable_dashboard_snapshot`` handler, and
every later poll is one plain RPC to that handler: no client registration, no
"Run out-of-band function" log line and no scheduler event per poll.

Cost on the scheduler's event loop, per poll: one pass over the workers, over the tasks
each one is processing, and over the queued and no-worker tasks, stopping after
``max_tasks`` tasks (the counts past the cap are scaled from what was seen and the
snapshot says so); plus one pass over the task groups for the number of tasks waiting
on dependencies. Nothing here allocates per task beyond a dictionary lookup.

Keep this module free of imports beyond the standard library: it is shipped by value.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any

HANDLER = "scalable_dashboard_snapshot"
MAX_TASKS = 5_000


def install(dask_scheduler: Any, max_tasks: int = MAX_TASKS) -> dict[str, Any]:
    """Register the snapshot handler on this scheduler and return a first snapshot."""
    s = dask_scheduler

    def handler(max_tasks: int = MAX_TASKS) -> dict[str, Any]:
        return snapshot(s, max_tasks)

    handler.__name__ = HANDLER
    s.handlers[HANDLER] = handler
    return snapshot(s, max_tasks)


def _count(pools: Iterable[Iterable[Any]], slot: int, budget: int,
           tags: dict[str, list[int]]) -> int:
    """Add up to ``budget`` tasks from ``pools`` into ``tags[tag][slot]``; how many seen."""
    seen = 0
    for ts in itertools.islice(itertools.chain.from_iterable(pools), max(0, budget)):
        seen += 1
        ann = ts.annotations
        tag = str(ann.get("tag") or "") if ann else ""
        entry = tags.get(tag)
        if entry is None:
            entry = tags[tag] = [0, 0]
        entry[slot] += 1
    return seen


def snapshot(s: Any, max_tasks: int = MAX_TASKS) -> dict[str, Any]:
    """Workers, per-tag queued/processing counts and a few totals, as plain lists."""
    t0 = time.perf_counter()
    workers = []
    states = list(s.workers.values())
    for ws in states:
        metrics = ws.metrics or {}
        try:
            memory = int(ws.memory.process)
        except Exception:
            memory = int(metrics.get("memory") or 0)
        workers.append([
            str(ws.name), ws.address, ws.host, int(ws.nthreads), memory,
            int(ws.memory_limit or 0), len(ws.processing), float(metrics.get("cpu") or 0.0),
        ])
    # tag ("" for none) -> [queued, processing]
    tags: dict[str, list[int]] = {}
    total_processing = sum(w[6] for w in workers)
    total_queued = len(s.queued) + len(s.unrunnable)
    seen_processing = _count([ws.processing for ws in states], 1, max_tasks, tags)
    seen_queued = _count([s.queued, s.unrunnable], 0, max_tasks - seen_processing, tags)
    capped = seen_queued < total_queued or seen_processing < total_processing
    if capped:
        # Past the cap: scale each tag's share of what was seen up to the exact totals.
        qf = total_queued / seen_queued if seen_queued else 0.0
        pf = total_processing / seen_processing if seen_processing else 0.0
        for entry in tags.values():
            entry[0] = round(entry[0] * qf)
            entry[1] = round(entry[1] * pf)
        if not seen_queued and total_queued:
            tags.setdefault("?", [0, 0])[0] = total_queued
    waiting = 0
    for tg in list(s.task_groups.values()):
        waiting += tg.states.get("waiting", 0)
    return {
        "time": time.time(),
        "address": s.address,
        "workers": workers,
        "tags": tags,
        "queued": total_queued,
        "processing": total_processing,
        "waiting": waiting,
        "tasks": len(s.tasks),
        "capped": capped,
        "elapsed": time.perf_counter() - t0,
    }
