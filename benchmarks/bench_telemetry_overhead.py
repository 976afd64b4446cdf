"""Task throughput with and without the telemetry plugin: 10,000 tasks, 4 workers.

Aim: the plugin costs at most 5% of throughput (ratio with/without >= 0.95).

Each trial starts a standalone ``dask scheduler`` exactly as the providers do
(``scalable.providers.commands.scheduler_argv``), with or without
``--preload scalable.telemetry.plugin`` (database mode: it writes a real
``.scalable/telemetry.db``), plus 4 one-thread worker processes; then it times
``client.gather(client.map(inc, range(N)))`` after a warm-up. Trials alternate
with/without so machine noise hits both alike; medians are compared.

Env: BENCH_TASKS (10000), BENCH_RUNS (5 trials of each), BENCH_MODE (db | memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = int(os.environ.get("BENCH_TASKS", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MODE = os.environ.get("BENCH_MODE", "db")
WORKERS = 4


def inc(x: int) -> int:
    return x + 1


def trial(with_plugin: bool) -> tuple[float, int | None]:
    """(tasks per second, tasks the plugin recorded or None)."""
    from distributed import Client
    from scalable.providers.commands import TELEMETRY_PRELOAD, scheduler_argv

    root = Path(tempfile.mkdtemp(prefix="scalable-bench-telemetry-"))
    state = root / ".scalable" / "bench"
    state.mkdir(parents=True)
    env = {**os.environ, "SCALABLE_STATE_DIR": str(state), "SCALABLE_TARGET": "bench",
           "SCALABLE_PROJECT": "bench", "SCALABLE_PROVIDER": "local",
           "SCALABLE_TELEMETRY": MODE, "DASK_SCHEDULER_ADDRESS": ""}
    sched_file = state / "scheduler.json"
    argv = scheduler_argv(host="127.0.0.1", scheduler_file=sched_file, dashboard=False,
                          preload=[TELEMETRY_PRELOAD] if with_plugin else [])
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("scheduler did not start")
            time.sleep(0.05)
        time.sleep(0.1)
        addr = json.loads(sched_file.read_text())["address"]
        for i in range(WORKERS):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", addr, "--name", f"w{i}",
                 "--nthreads", "1", "--no-dashboard"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))
        with Client(addr, timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=60)
            client.gather(client.map(inc, range(200), key=[f"warm-{i}" for i in range(200)]))
            t0 = time.perf_counter()
            out = client.gather(client.map(inc, range(TASKS)))
            elapsed = time.perf_counter() - t0
            assert len(out) == TASKS
            pulled = None
            if with_plugin and MODE == "memory":
                info = client.run_on_scheduler(
                    lambda dask_scheduler: len(
                        dask_scheduler.plugins["scalable-telemetry"]._log_tasks)
                    + len(dask_scheduler.plugins["scalable-telemetry"]._tasks))
                pulled = int(info)
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    recorded = pulled
    if with_plugin and MODE == "db":
        from scalable.telemetry.store import TelemetryDB

        db = TelemetryDB.for_root(root)
        run = db.last_run()
        recorded = len(db.tasks(run.id)) if run else 0
    return TASKS / elapsed, recorded


def main() -> None:
    with_p: list[float] = []
    without: list[float] = []
    recorded: set[int | None] = set()
    for i in range(RUNS):
        for plugin in ((False, True) if i % 2 == 0 else (True, False)):
            rate, rec = trial(plugin)
            (with_p if plugin else without).append(rate)
            if plugin:
                recorded.add(rec)
            print(f"  trial {i + 1} {'with   ' if plugin else 'without'} plugin: "
                  f"{rate:7.0f} tasks/s" + (f"  (recorded {rec} tasks)" if plugin else ""),
                  flush=True)
    w, wo = statistics.median(with_p), statistics.median(without)
    print(f"{TASKS} tasks, {WORKERS} worker processes x 1 thread, {RUNS} trials each, "
          f"plugin mode={MODE}")
    print(f"without plugin  median {wo:7.0f} tasks/s")
    print(f"with plugin     median {w:7.0f} tasks/s  (recorded {sorted(map(str, recorded))})")
    print(f"ratio with/without {w / wo:.3f}  (overhead {100 * (1 - w / wo):+.1f}%; "
          "aim: <= 5%)")


if __name__ == "__main__":
    main()
