"""@cacheable's overhead: a hit and a miss against calling a trivial function directly
(10,000 calls each), and a lookup on a worker against ``client.submit`` of the bare
function (real LocalCluster processes; the ratio is the cost the cache adds per task).

    python benchmarks/bench_cache.py [--calls 10000] [--tasks 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def trivial(x: int, y: int) -> int:
    return x + y


def per_call(fn, calls: int, offset: int = 0) -> float:
    t0 = time.perf_counter()
    for i in range(calls):
        fn(i + offset, 1)
    return (time.perf_counter() - t0) / calls


def in_process(calls: int) -> None:
    from scalable import cacheable

    cached = cacheable(trivial)
    direct = min(per_call(trivial, calls) for _ in range(3))
    miss = per_call(cached, calls)  # every argument new: look up, run, write an entry
    hit = min(per_call(cached, calls) for _ in range(3))  # the same calls again: hits
    print(f"in-process, {calls:,} calls of a trivial function (x + y):")
    print(f"  direct call      {direct * 1e6:9.2f} µs/call")
    print(f"  cache hit        {hit * 1e6:9.2f} µs/call  (+{(hit - direct) * 1e6:.1f} µs)")
    print(f"  cache miss       {miss * 1e6:9.2f} µs/call  (+{(miss - direct) * 1e6:.1f} µs: "
          "key, lookup, pickle, temp file + rename)")
    print(f"  {calls:,} hits cost {hit * calls:.2f} s in all; a miss costs "
          f"{miss / max(hit, 1e-9):.1f}× a hit")


def on_workers(tasks: int) -> None:
    from distributed import Client, LocalCluster, wait
    from scalable import cacheable

    cached = cacheable(trivial)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        def batch(fn, offset: int) -> float:
            t0 = time.perf_counter()
            futs = [client.submit(fn, i + offset, 1, pure=False) for i in range(tasks)]
            wait(futs)
            return time.perf_counter() - t0

        batch(trivial, 0)  # warm up: workers import, connections open
        bare = [batch(trivial, 0) for _ in range(3)]
        miss = batch(cached, 10_000)
        hits = [batch(cached, 10_000) for _ in range(3)]
    b, h = statistics.median(bare), statistics.median(hits)
    print(f"\nthrough workers (LocalCluster, 2 processes × 1 thread), {tasks} tasks:")
    print(f"  client.submit(bare function)   {b / tasks * 1e3:7.3f} ms/task")
    print(f"  client.submit(cached), misses  {miss / tasks * 1e3:7.3f} ms/task")
    print(f"  client.submit(cached), hits    {h / tasks * 1e3:7.3f} ms/task  "
          f"(ratio {h / b:.2f}× the bare function)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--tasks", type=int, default=500)
    ap.add_argument("--no-workers", action="store_true")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scalable-bench-cache-") as d:
        os.environ["SCALABLE_CACHE_DIR"] = d
        os.environ.pop("SCALABLE_CACHE_REMOTE", None)
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        in_process(opts.calls)
        if not opts.no_workers:
            on_workers(opts.tasks)


if __name__ == "__main__":
    main()
