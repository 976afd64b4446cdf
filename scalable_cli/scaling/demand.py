"""Reading demand per worker group from a live scheduler.

``scheduler_demand`` runs *on the scheduler* (``Client.run_on_scheduler``): it sums the
expected duration of queued, unrunnable and processing tasks, split by the tag resources
that route tasks to groups, and turns that into a worker count the way Dask's
``adaptive_target`` does (work ÷ target duration ÷ threads), never more workers than
tasks can use.
"""

from __future__ import annotations

import math
from typing import Any

from scalable.scaling.policy import Demand
from scalable.spec import TargetSpec

TAG_PREFIX = "tag-"


def scheduler_demand(dask_scheduler: Any, target_duration: float) -> dict[str, list[float]]:
    """{tag resource or "": [tasks, work_seconds]} for unfinished, runnable-or-running work."""
    s = dask_scheduler
    out: dict[str, list[float]] = {}

    def add(ts: Any) -> None:
        keys = [r for r in (ts.resource_restrictions or {}) if r.startswith(TAG_PREFIX)]
        bucket = out.setdefault(keys[0] if keys else "", [0, 0.0])
        bucket[0] += 1
        bucket[1] += s._get_prefix_duration(ts.prefix)

    for ts in list(getattr(s, "queued", ())):
        add(ts)
    for ts in list(getattr(s, "unrunnable", ())):
        add(ts)
    for ws in list(s.workers.values()):
        for ts in list(ws.processing):
            add(ts)
    return out


def group_demand(
    spec: TargetSpec, raw: dict[str, list[float]], target_duration: float
) -> dict[str, Demand]:
    """Split the scheduler's buckets over the target's groups."""
    out: dict[str, Demand] = {}
    untagged_owner = next(
        (g.name for g in spec.groups if g.name == "default"),
        next((g.name for g in spec.groups if not g.tags), None),
    )
    for g in spec.groups:
        tasks, work = 0, 0.0
        for tag in g.tags:
            t, w = raw.get(f"{TAG_PREFIX}{tag}", (0, 0.0))
            tasks, work = tasks + int(t), work + float(w)
        if g.name == untagged_owner:
            t, w = raw.get("", (0, 0.0))
            tasks, work = tasks + int(t), work + float(w)
        threads = max(g.threads_per_worker, 1)
        by_time = math.ceil(work / target_duration / threads) if work else 0
        by_tasks = math.ceil(tasks / threads)
        workers = min(by_time, by_tasks) if tasks else 0
        out[g.name] = Demand(tasks=tasks, work_seconds=work,
                             workers=max(workers, 1 if tasks else 0))
    return out
