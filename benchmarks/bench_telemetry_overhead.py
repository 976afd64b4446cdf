"""What the telemetry plugin costs a 10,000-task run on 4 workers. Aim: at most 5%.

Two measurements:

1. **Throughput, with vs without** the plugin. Each trial starts a standalone
   ``dask scheduler`` exactly as the providers do (``scheduler_argv``), with or without
   ``--preload scalable.telemetry.plugin`` (database mode: it writes a real
   ``.scalable/telemetry.db``), plus 4 one-thread worker processes, and times
   ``client.gather(client.map(inc, range(N)))`` after a warm-up. Trials alternate so
   machine noise hits both alike; it prints medians, the median of paired ratios and
   the spread. On a shared machine the spread can be larger than what is measured.
2. **The plugin's share of the scheduler's event loop**, inside one run: the
   scheduler's event-loop thread CPU time over the timed section, and the CPU time
   spent in the plugin's hooks on that thread (every call wrapped with
   ``time.thread_time``) plus the writer thread's CPU. Both figures come from the same
   run, so machine load cancels out; the wrappers' own cost is included, so it is an
   upper bound. The loop thread is what bounds a Dask scheduler's throughput.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TASKS = int(os.environ.get("BENCH_TASKS", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MODE = os.environ.get("BENCH_MODE", "db")
WORKERS = 4


def inc(x: int) -> int:
    return x + 1


@contextlib.contextmanager
def cluster(with_plugin: bool) -> Iterator[tuple[str, Path]]:
    """A scheduler (as the providers start it) and 4 workers; yields (address, root)."""
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
        yield addr, root
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def recorded_tasks(root: Path) -> int:
    from scalable.telemetry.store import TelemetryDB

    db = TelemetryDB.for_root(root)
    run = db.last_run() if db.exists else None
    return len(db.tasks(run.id)) if run else 0


def trial(with_plugin: bool) -> tuple[float, int | None]:
    """(tasks per second, tasks the plugin recorded: None without it, or in memory mode)."""
    from distributed import Client

    with cluster(with_plugin) as (addr, root), Client(addr, timeout=30) as client:
        client.wait_for_workers(WORKERS, timeout=60)
        client.gather(client.map(inc, range(200), key=[f"warm-{i}" for i in range(200)]))
        t0 = time.perf_counter()
        out = client.gather(client.map(inc, range(TASKS)))
        elapsed = time.perf_counter() - t0
        assert len(out) == TASKS
    return TASKS / elapsed, (recorded_tasks(root) if with_plugin and MODE == "db" else None)


# -- the plugin's share of the scheduler's loop (runs inside the scheduler) -------------


def _instrument(dask_scheduler: Any) -> None:
    import functools
    import time

    plugin = dask_scheduler.plugins["scalable-telemetry"]
    acc = {"hooks": 0.0, "writer": 0.0, "calls": 0}

    def timed(fn: Any, key: str) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[key] += time.thread_time() - t
                acc["calls"] += key == "hooks"
        return wrapper

    # The wrappers' own cost, per call: timed around a wrapped no-op.
    probe = timed(lambda: None, "probe")
    acc["probe"] = 0.0
    t = time.thread_time()
    for _ in range(20_000):
        probe()
    acc["per_call"] = (time.thread_time() - t) / 20_000
    for name in ("transition", "log_event", "add_worker", "remove_worker", "_flush"):
        setattr(plugin, name, timed(getattr(plugin, name), "hooks"))
    if plugin._pc is not None:
        plugin._pc.callback = plugin._flush
    plugin._drain = timed(plugin._drain, "writer")
    dask_scheduler._bench = (acc, time.thread_time())


def _collect(dask_scheduler: Any) -> dict[str, float]:
    import time

    acc, t0 = dask_scheduler._bench
    return {**acc, "loop": time.thread_time() - t0}


def loop_share() -> dict[str, float]:
    from distributed import Client

    with cluster(True) as (addr, _), Client(addr, timeout=30) as client:
        client.wait_for_workers(WORKERS, timeout=60)
        client.gather(client.map(inc, range(200), key=[f"warm-{i}" for i in range(200)]))
        client.run_on_scheduler(_instrument)
        out = client.gather(client.map(inc, range(TASKS)))
        time.sleep(1.5)  # the last flush
        assert len(out) == TASKS
        return client.run_on_scheduler(_collect)  # type: ignore[no-any-return]


def main() -> None:
    # A SIGTERM still stops the trial's scheduler and workers (finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rates: dict[bool, list[float]] = {True: [], False: []}
    recorded: set[int | None] = set()
    for i in range(RUNS):
        for plugin in ((False, True) if i % 2 == 0 else (True, False)):
            rate, rec = trial(plugin)
            rates[plugin].append(rate)
            if plugin:
                recorded.add(rec)
            print(f"  trial {i + 1} {'with   ' if plugin else 'without'} plugin: "
                  f"{rate:7.0f} tasks/s"
                  + (f"  (recorded {rec} tasks incl. 200 warm-up)" if plugin else ""),
                  flush=True)
    w, wo = statistics.median(rates[True]), statistics.median(rates[False])
    paired = statistics.median(a / b for a, b in zip(rates[True], rates[False], strict=True))
    print(f"{TASKS} tasks, {WORKERS} worker processes x 1 thread, {RUNS} trials each, "
          f"plugin mode={MODE}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"without plugin  median {wo:7.0f} tasks/s  (spread {min(rates[False]):.0f}-"
          f"{max(rates[False]):.0f})")
    print(f"with plugin     median {w:7.0f} tasks/s  (spread {min(rates[True]):.0f}-"
          f"{max(rates[True]):.0f})")
    print(f"throughput ratio with/without: medians {w / wo:.3f}, "
          f"median of paired trials {paired:.3f}")
    s = loop_share()
    share = s["hooks"] / s["loop"]
    net = max(0.0, s["hooks"] - s["calls"] * s["per_call"])
    print(f"inside one run with the plugin: scheduler loop {1e6 * s['loop'] / TASKS:.0f} µs "
          f"CPU/task; plugin hooks {1e6 * s['hooks'] / TASKS:.1f} µs/task as measured "
          f"({s['calls'] / TASKS:.1f} calls/task), {1e6 * net / TASKS:.1f} µs/task without "
          f"the timers' own cost")
    print(f"plugin share of the scheduler loop: {100 * share:.1f}% as measured, "
          f"{100 * net / s['loop']:.1f}% net (aim: <= 5%); its writer thread "
          f"{1e6 * s['writer'] / TASKS:.1f} µs/task of CPU off the loop")


if __name__ == "__main__":
    main()
