"""Scheduler throughput with and without ``scalable dashboard`` attached.

Aim: a dashboard polling once a second does not make the scheduler slower (throughput
ratio with/without >= 0.95, within this machine's noise).

One local target (4 worker processes x 1 thread, telemetry plugin on, as ``scalable
apply`` starts it) serves every trial. A trial times
``client.gather(client.map(inc, range(N)))`` after a warm-up, with the scheduler's CPU
time (utime+stime from /proc) over the same section. Trials alternate without / with a
dashboard: the real app (``DashboardApp`` over ``LiveSource``) running headless in its
own process, drawing every update, polling every BENCH_INTERVAL seconds. Medians are
compared.

It also reports what one poll costs the scheduler's event loop (the probe measures
itself) with an empty queue and with BENCH_QUEUED tasks queued, and how long a poll
takes end to end on the dashboard's side.

Env: BENCH_TASKS (10000), BENCH_RUNS (4 trials of each), BENCH_INTERVAL (1.0 s),
BENCH_QUEUED (20000).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import project, scalable  # noqa: E402

TASKS = int(os.environ.get("BENCH_TASKS", "10000"))
RUNS = int(os.environ.get("BENCH_RUNS", "4"))
INTERVAL = float(os.environ.get("BENCH_INTERVAL", "1.0"))
QUEUED = int(os.environ.get("BENCH_QUEUED", "20000"))
WORKERS = 4

DASHBOARD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from scalable.tui.app import DashboardApp
    from scalable.tui.source import LiveSource
    from scalable.workspace import Workspace

    ready = Path(sys.argv[3])

    class Bench(DashboardApp):
        def show(self, snap):
            super().show(snap)
            if snap.connected and not ready.exists():
                ready.write_text(str(self.polls))

    app = Bench(LiveSource(Workspace.open(sys.argv[1], "local")), interval=float(sys.argv[2]))
    app.run(headless=True, size=(80, 24))
""")


def inc(x: int) -> int:
    return x + 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_dashboard(root: Path) -> subprocess.Popen[bytes]:
    ready = root / "dashboard.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", DASHBOARD, str(root / "scalable.yaml"), str(INTERVAL),
         str(ready)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.1)
    time.sleep(INTERVAL)  # a few polls in, steady state
    return proc


def stop(proc: subprocess.Popen[bytes]) -> float:
    """Stop the dashboard; its CPU seconds."""
    cpu = cpu_seconds(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    return cpu


def trial(client: object, sched_pid: int, root: Path, with_dashboard: bool,
          n: int) -> tuple[float, float, float | None]:
    """(tasks/s, scheduler CPU ms per 1000 tasks, dashboard CPU % of one core)."""
    dash = start_dashboard(root) if with_dashboard else None
    try:
        d0 = cpu_seconds(dash.pid) if dash else 0.0
        c0, t0 = cpu_seconds(sched_pid), time.perf_counter()
        out = client.gather(client.map(inc, range(n), pure=False))  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(sched_pid) - c0
        dcpu = (cpu_seconds(dash.pid) - d0) / elapsed * 100 if dash else None
        assert len(out) == n
    finally:
        if dash is not None:
            stop(dash)
    return n / elapsed, 1e6 * cpu / n, dcpu


def probe_costs(root: Path, client: object) -> dict[str, float]:
    """Probe time on the scheduler (ms) idle and with QUEUED tasks queued; poll wall ms."""
    from scalable.tui.source import LiveSource
    from scalable.workspace import Workspace

    src = LiveSource(Workspace.open(root / "scalable.yaml", "local"))
    out: dict[str, float] = {}
    try:
        src.poll()
        idle, walls = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            snap = src.poll()
            walls.append(time.perf_counter() - t0)
            idle.append(snap.extra["probe_seconds"])
        out["idle_ms"] = 1000 * statistics.median(idle)
        out["poll_wall_ms"] = 1000 * statistics.median(walls)
        futs = client.map(time.sleep, [0.05] * QUEUED, pure=False)  # type: ignore[attr-defined]
        time.sleep(2)
        busy, queued = [], []
        for _ in range(5):
            snap = src.poll()
            busy.append(snap.extra["probe_seconds"])
            queued.append(sum(t.queued or 0 for t in snap.work))
            time.sleep(0.2)
        out["queued_ms"] = 1000 * statistics.median(busy)
        out["queued"] = statistics.median(queued)
        out["approximate"] = float(snap.approximate)
        client.cancel(futs)  # type: ignore[attr-defined]
    finally:
        src.close()
    return out


def main() -> None:
    from distributed import Client

    root = project(f"""
        project: {{name: bench-dashboard}}
        targets:
          local:
            provider: local
            max_workers: {WORKERS}
            threads_per_worker: 1
        """)
    scalable("apply", "--auto-approve", cwd=root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        import json

        state = json.loads((root / ".scalable" / "local" / "state.json").read_text())
        sched_pid = next(r["meta"]["pid"] for r in state["resources"]
                         if r["address"] == "scheduler")
        with Client(state["outputs"]["scheduler_address"], timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=60)
            client.gather(client.map(inc, range(500), key=[f"warm-{i}" for i in range(500)]))
            rates: dict[bool, list[float]] = {True: [], False: []}
            cpus: dict[bool, list[float]] = {True: [], False: []}
            dcpus: list[float] = []
            for i in range(RUNS):
                for dash in ((False, True) if i % 2 == 0 else (True, False)):
                    rate, cpu, dcpu = trial(client, sched_pid, root, dash, TASKS)
                    rates[dash].append(rate)
                    cpus[dash].append(cpu)
                    if dcpu is not None:
                        dcpus.append(dcpu)
                    print(f"  trial {i + 1} {'with   ' if dash else 'without'} dashboard: "
                          f"{rate:7.0f} tasks/s  scheduler CPU {cpu:6.0f} ms/1000 tasks"
                          + (f"  dashboard CPU {dcpu:4.1f}% of a core" if dash else ""),
                          flush=True)
            costs = probe_costs(root, client)
    finally:
        scalable("destroy", "--auto-approve", cwd=root)
    w, wo = statistics.median(rates[True]), statistics.median(rates[False])
    cw, cwo = statistics.median(cpus[True]), statistics.median(cpus[False])
    print(f"{TASKS} tasks, {WORKERS} worker processes x 1 thread, {RUNS} trials each, "
          f"dashboard polling every {INTERVAL:g}s, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"without dashboard  median {wo:7.0f} tasks/s   scheduler CPU {cwo:6.0f} ms/1000 tasks")
    print(f"with dashboard     median {w:7.0f} tasks/s   scheduler CPU {cw:6.0f} ms/1000 tasks")
    print(f"throughput ratio with/without {w / wo:.3f}  (overhead {100 * (1 - w / wo):+.1f}%)"
          "   aim: >= 0.95")
    print(f"scheduler CPU ratio with/without {cw / cwo:.3f}  (steadier than throughput on "
          "a shared machine)")
    print(f"dashboard process: median {statistics.median(dcpus):.1f}% of one core")
    print(f"one poll on the scheduler's event loop: {costs['idle_ms']:.3f} ms idle, "
          f"{costs['queued_ms']:.2f} ms with {costs['queued']:.0f} tasks queued"
          + (" (per-tag counts scaled past the probe's cap)" if costs["approximate"] else ""))
    share = costs["queued_ms"] / (INTERVAL * 1000) * 100
    print(f"  = {share:.2f}% of the scheduler's event loop at one poll per {INTERVAL:g}s "
          f"(bounded: the probe stops after 5,000 tasks)")
    print(f"one poll end to end (dashboard side, idle): {costs['poll_wall_ms']:.1f} ms")


if __name__ == "__main__":
    main()
