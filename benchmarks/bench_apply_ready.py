"""`scalable apply` → 4/4 local workers ready, and `destroy`, against raw Dask
(issue 15's third row, the destroy aim and the memory figure).

Raw Dask: ``LocalCluster(n_workers=4, threads_per_worker=1, processes=True)`` +
``wait_for_workers(4)``, timed inside a fresh interpreter after ``import distributed``
(as the issue defines it), then ``close()`` timed the same way. Two pairings, like for
like: with the scheduler's dashboard (LocalCluster's default, on a free loopback port;
scalable's default) and without (``dashboard_address=None``; ``dashboard: false``).
``BENCH_DASHBOARD=on`` or ``off`` runs one of them. scalable: the whole
``scalable apply --auto-approve`` process (interpreter start, plan, state writes,
detached processes, wait until every worker has registered) and ``scalable destroy``.
Both use one process per worker with a nanny. The two sides alternate (order rotated
per trial) and each ratio is taken within a trial. Memory: the total RSS of the
scheduler and the 4 workers (nannies included) against LocalCluster's (its process,
which hosts the scheduler and nannies, plus its 4 worker processes), and the total PSS
(proportional set size: a page shared by k processes counts 1/k in each), which does
not count twice the pages a forked worker shares with its nanny.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, os.path.dirname(__file__))
from _util import PY, load, project, scalable, spread  # noqa: E402

N = int(os.environ.get("BENCH_RUNS", "5"))

RAW = """
import json, os, time, psutil
import distributed
from distributed import Client, LocalCluster
t0 = time.perf_counter()
cluster = LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                       dashboard_address=os.environ["RAW_DASHBOARD"] or None)
client = Client(cluster)
client.wait_for_workers(4)
up = time.perf_counter() - t0
me = psutil.Process()
procs = [me, *me.children(recursive=True)]
rss = sum(p.memory_info().rss for p in procs)
pss = sum(p.memory_full_info().pss for p in procs)
client.close()
t1 = time.perf_counter()
cluster.close()
down = time.perf_counter() - t1
print(json.dumps({"up": up, "down": down, "rss": rss, "pss": pss}))
"""


def raw_dask(dashboard: bool) -> dict[str, float]:
    env = {**os.environ, "RAW_DASHBOARD": "127.0.0.1:0" if dashboard else ""}
    out = subprocess.run([PY, "-c", RAW], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def our_memory(root: Path) -> tuple[int, int]:
    """(RSS, PSS) summed over every recorded process and its children."""
    state = json.loads((root / ".scalable" / "local" / "state.json").read_text())
    rss = pss = 0
    for rec in state["resources"]:
        try:
            top = psutil.Process(rec["meta"]["pid"])
            for p in [top, *top.children(recursive=True)]:
                rss += p.memory_info().rss
                pss += p.memory_full_info().pss
        except (psutil.NoSuchProcess, KeyError):
            continue
    return rss, pss


def ours(root: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    scalable("apply", "--auto-approve", cwd=root)  # returns once 4/4 are registered
    up = time.perf_counter() - t0
    rss, pss = our_memory(root)
    t1 = time.perf_counter()
    scalable("destroy", "--auto-approve", cwd=root)
    return {"up": up, "down": time.perf_counter() - t1, "rss": rss, "pss": pss}


def trials(dashboard: bool) -> None:
    root = project(f"""
        targets:
          local: {{provider: local, max_workers: 4, threads_per_worker: 1, processes: true,
                  dashboard: {str(dashboard).lower()}}}
        """)
    raw_dask(dashboard)  # warm the file cache for both sides
    before = load()
    pairs = []
    for i in range(N):
        if i % 2:
            m, r = ours(root), raw_dask(dashboard)
        else:
            r, m = raw_dask(dashboard), ours(root)
        pairs.append((r, m))
    print(f"\nscheduler dashboard {'on' if dashboard else 'off'} on both sides: load average "
          f"(1 min) before {before}, after {load()}; {N} interleaved trials")
    for key, label in (("up", "apply -> 4/4 ready"), ("down", "destroy 4 workers")):
        r = sorted(p[0][key] for p in pairs)[N // 2]
        m = sorted(p[1][key] for p in pairs)[N // 2]
        ratios = [p[1][key] / p[0][key] for p in pairs]
        print(
            f"{label:20s} LocalCluster median {r:5.2f} s   scalable median {m:5.2f} s   "
            f"ratio {spread(ratios)}"
        )
    for key, label in (("rss", "total RSS"), ("pss", "total PSS")):
        r = sorted(p[0][key] for p in pairs)[N // 2] / 2**20
        m = sorted(p[1][key] for p in pairs)[N // 2] / 2**20
        print(
            f"{label:20s} LocalCluster median {r:5.0f} MiB scalable median {m:5.0f} MiB "
            f"ratio {spread([p[1][key] / p[0][key] for p in pairs])}"
        )


def main() -> None:
    which = os.environ.get("BENCH_DASHBOARD", "both")
    for dashboard in (True, False):
        if which in ("both", "on" if dashboard else "off"):
            trials(dashboard)
    print("aims: apply ratio <= 1.5x, destroy ratio <= 1.5x")


if __name__ == "__main__":
    main()
