"""`scalable apply` until 4 workers are ready vs raw `LocalCluster(n_workers=4)`.

Aim: ratio ≤ 1.5. Both use one process per worker (with nannies), 1 thread each.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import project, scalable  # noqa: E402

N = int(os.environ.get("BENCH_RUNS", "5"))


def raw_dask() -> float:
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(4)
        elapsed = time.perf_counter() - t0
    return elapsed


def ours(root: object) -> float:
    t0 = time.perf_counter()
    scalable("apply", "--auto-approve", cwd=root)  # returns once 4/4 are registered
    elapsed = time.perf_counter() - t0
    scalable("destroy", "--auto-approve", cwd=root)
    return elapsed


def main() -> None:
    root = project("""
        targets:
          local: {provider: local, max_workers: 4, threads_per_worker: 1, processes: true}
        """)
    raw = sorted(raw_dask() for _ in range(N))
    mine = sorted(ours(root) for _ in range(N))
    r, m = raw[N // 2], mine[N // 2]
    print(f"LocalCluster(n_workers=4)+wait  median {r:6.2f} s  (n={N})")
    print(f"scalable apply -> 4/4 ready     median {m:6.2f} s  ratio {m / r:.2f}x")
    print("(scalable's figure includes the CLI process start, the plan and state writes,")
    print(" and detached processes; aim: ratio <= 1.5x)")


if __name__ == "__main__":
    main()
