"""Task throughput with and without the telemetry plugin: 10,000 tasks, 4 workers.

Aim: the plugin costs at most 5% of throughput (ratio with/without >= 0.95).

Each trial starts a standalone ``dask scheduler`` exactly as the providers do
(``scalable.providers.commands.scheduler_argv``), with or without
``--preload scalable.telemetry.plugin`` (database mode: it writes a real
``.scalable/telemetry.db``), plus 4 one-thread worker processes; then it times
``client.gather(client.map(inc, range(N)))`` after a warm-up. Trials alternate
with/without so machine noise hits both alike; medians are compared.

Wall-clock throughput on a shared machine is noisy, so each trial also reads the
scheduler process's CPU time (utime+stime from /proc) over the timed section: scheduler
CPU per task, with and without the plugin, is the steadier measure of what the plugin
adds to the process that bounds throughput.

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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trial(with_plugin: bool) -> tuple[float, float, int | None]:
    """(tasks per second, scheduler CPU ms per 1000 tasks, tasks the plugin recorded)."""
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
            c0, t0 = cpu_seconds(procs[0].pid), time.perf_counter()
            out = client.gather(client.map(inc, range(TASKS)))
            elapsed = time.perf_counter() - t0
            cpu = cpu_seconds(procs[0].pid) - c0
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
    return TASKS / elapsed, 1e6 * cpu / TASKS, recorded


def plugin_cpu_per_task(n: int = 10_000) -> tuple[float, float]:
    """(µs of CPU in the transition hooks, µs writing) per task, for the plugin alone.

    The plugin is driven directly with the five transitions a task goes through and a
    stand-in for the scheduler's task table: no Dask scheduler, no noise from it.
    """
    from types import SimpleNamespace

    from scalable.telemetry.plugin import TelemetryConfig, TelemetryPlugin

    root = Path(tempfile.mkdtemp(prefix="scalable-bench-telemetry-"))
    plugin = TelemetryPlugin(TelemetryConfig("db", "bench", "bench", "local",
                                             root / "telemetry.db"))
    assert plugin.db is not None
    plugin.db.start_run(run_id=plugin.run_id, project="bench", target="bench",
                        provider="local")
    keys = [f"inc-{i:032x}" for i in range(n)]
    prefix = SimpleNamespace(name="inc")
    plugin.scheduler = SimpleNamespace(
        tasks={k: SimpleNamespace(annotations={"tag": "bench"}, prefix=prefix) for k in keys})
    plugin._names["tcp://127.0.0.1:1"] = "workers.default[0]"
    done = {"worker": "tcp://127.0.0.1:1", "nbytes": 28, "type": b"", "typename": "int",
            "thread": 1, "metadata": {},
            "startstops": [{"action": "compute", "start": 1.0, "stop": 1.001}]}
    t0 = time.thread_time()
    for k in keys:
        plugin.transition(k, "released", "waiting", stimulus_id="s")
        plugin.transition(k, "waiting", "processing", stimulus_id="s")
        plugin.transition(k, "processing", "memory", stimulus_id="s", **done)
        plugin.transition(k, "memory", "released", stimulus_id="s")
        plugin.transition(k, "released", "forgotten", stimulus_id="s")
    hooks = time.thread_time() - t0
    t0 = time.thread_time()
    plugin._flush()
    plugin._drain()  # what the writer thread does, here on this thread
    write = time.thread_time() - t0
    assert len(plugin.db.tasks(plugin.run_id)) == n
    return 1e6 * hooks / n, 1e6 * write / n


def main() -> None:
    # A SIGTERM still stops the trial's scheduler and workers (finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpus: dict[bool, list[float]] = {True: [], False: []}
    recorded: set[int | None] = set()
    for i in range(RUNS):
        for plugin in ((False, True) if i % 2 == 0 else (True, False)):
            rate, cpu, rec = trial(plugin)
            rates[plugin].append(rate)
            cpus[plugin].append(cpu)
            if plugin:
                recorded.add(rec)
            print(f"  trial {i + 1} {'with   ' if plugin else 'without'} plugin: "
                  f"{rate:7.0f} tasks/s  scheduler CPU {cpu:6.0f} ms/1000 tasks"
                  + (f"  (recorded {rec} tasks incl. 200 warm-up)" if plugin else ""),
                  flush=True)
    w, wo = statistics.median(rates[True]), statistics.median(rates[False])
    cw, cwo = statistics.median(cpus[True]), statistics.median(cpus[False])
    print(f"{TASKS} tasks, {WORKERS} worker processes x 1 thread, {RUNS} trials each, "
          f"plugin mode={MODE}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"without plugin  median {wo:7.0f} tasks/s   scheduler CPU {cwo:6.0f} ms/1000 tasks")
    print(f"with plugin     median {w:7.0f} tasks/s   scheduler CPU {cw:6.0f} ms/1000 tasks")
    print(f"throughput ratio with/without {w / wo:.3f}  (overhead {100 * (1 - w / wo):+.1f}%)")
    print(f"scheduler CPU ratio with/without {cw / cwo:.3f}  "
          f"(overhead {100 * (cw / cwo - 1):+.1f}%)   aim: <= 5%")
    hooks, write = plugin_cpu_per_task()
    print(f"plugin alone: {hooks:.1f} µs/task in hooks + {write:.1f} µs/task writing = "
          f"{hooks + write:.1f} µs/task, {100 * (hooks + write) / cwo:.1f}% of the scheduler's "
          f"{cwo:.0f} µs/task without it")


if __name__ == "__main__":
    main()
