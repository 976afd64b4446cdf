"""A synthetic, fully deterministic run in a telemetry database (for replays and snapshots).

Two minutes of a Slurm target: 2 workers come up, a scale-up to 4 with its reason, one
worker lost, one job reaching its walltime, a scale-down; 140 tagged tasks (3 fail).
Every number the dashboard shows for it can be computed by hand from this file.
"""

from __future__ import annotations

from pathlib import Path

from scalable.telemetry.store import TelemetryDB

T0 = 1_779_271_200.0  # 2026-05-20T10:00:00Z
RUN_ID = "run-20260520T100000-climate-abc123"
GIB = 2**30
WORKER_HOURLY = 0.192
SCHEDULER_HOURLY = 0.048
# (name, address, added at, removed at, reason)
WORKERS = [
    ("workers.default[0]", "tls://10.0.0.11:40001", 4.0, 95.0, "walltime"),
    ("workers.default[1]", "tls://10.0.0.12:40001", 5.0, 70.0, "lost"),
    ("workers.default[2]", "tls://10.0.0.13:40001", 38.0, None, None),
    ("workers.default[3]", "tls://10.0.0.14:40001", 41.0, 112.0, "retired"),
]
END = 120.0
UP_REASON = "+2: 120 queued tasks ≈ 18 s of work per worker > target 5 s"
DOWN_REASON = ("-2: idle for 3 readings (needs 1; at most 50% removed per step)")


def present(at: float) -> list[tuple[str, str, float, float | None, str | None]]:
    return [w for w in WORKERS if w[2] <= at and (w[3] is None or w[3] > at)]


def tasks() -> list[tuple[str, str, str | None, str | None, float, float, str]]:
    """(key, prefix, tag, worker, start, stop, status) for 140 tasks between +6 s and +92 s."""
    out = []
    for i in range(140):
        tag = "analysis" if i < 100 else "io"
        start = T0 + 6.0 + i * 0.6
        names = [w[0] for w in present(start - T0)]
        worker = names[i % len(names)]
        stop = start + 2.0 + (i % 5) * 0.3
        status = "error" if i in (17, 42, 77) else "ok"
        out.append((f"{tag}-{i:04d}", tag, tag, worker, start, stop, status))
    return out


def write(root: Path) -> TelemetryDB:
    db = TelemetryDB.for_root(root)
    db.start_run(run_id=RUN_ID, project="climate", target="hpc", provider="slurm",
                 scheduler_address="tls://10.0.0.5:8786", started_at=T0)
    ev: list[tuple[float, str, str | None, dict[str, object]]] = [
        (T0 + 0.5, "apply_start", None, {"changes": 3}),
        (T0 + 1.0, "pricing", None, {"worker_hourly": {"default": WORKER_HOURLY},
                                     "scheduler_hourly": SCHEDULER_HOURLY,
                                     "source": "manifest pricing", "notes": []}),
        (T0 + 3.0, "apply_complete", None, {"added": 3, "changed": 0, "destroyed": 0,
                                            "errors": []}),
        (T0 + 30.0, "scale_decision", None, {"group": "default", "from": 2, "to": 4,
                                             "reason": UP_REASON}),
        (T0 + 31.0, "apply_complete", None, {"added": 2, "changed": 0, "destroyed": 0,
                                             "errors": []}),
        (T0 + 110.0, "scale_decision", None, {"group": "default", "from": 4, "to": 2,
                                              "reason": DOWN_REASON}),
    ]
    for name, addr, added, removed, reason in WORKERS:
        ev.append((T0 + added, "worker_added", name, {"address": addr, "name": name,
                                                      "nthreads": 4,
                                                      "memory_limit": 8 * GIB}))
        if removed is not None:
            ev.append((T0 + removed, "worker_removed", name, {
                "address": addr, "name": name, "reason": reason,
                "processing_tasks": 3 if reason == "lost" else 0}))
    ev.sort(key=lambda e: e[0])
    db.write_batch(RUN_ID, events=ev, tasks=tasks())
    db.end_run(RUN_ID, T0 + END)
    return db
