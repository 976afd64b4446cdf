"""A cached ensemble, run as its own process (so a test can kill -9 it).

    python cache_run.py ROOT N SECONDS LOG [--status]

Connects to the applied ``local`` target under ROOT and runs ``work(i, SECONDS, LOG)``
for i < N through ``client.submit(..., tag="sim")``; each execution appends ``start i``
to LOG (on the worker). ``--status`` prints the indexes already cached, one per line.
Defined in ``__main__``, so ``work`` travels to the workers by value.
"""

from __future__ import annotations

import os
import sys
import time

from scalable import cacheable


@cacheable(return_type=int, i=int)
def work(i: int, seconds: float, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"start {i} {os.getpid()}\n")
    time.sleep(seconds)
    return i * i


def main() -> None:
    root, n, seconds, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    os.chdir(root)
    if "--status" in sys.argv:
        for i in range(n):
            if work.is_cached(i, seconds, log):
                print(i)
        return
    from distributed import as_completed
    from scalable import connect

    client = connect(os.environ.get("CACHE_RUN_TARGET") or "local")
    futures = [client.submit(work, i, seconds, log, tag="sim", pure=False) for i in range(n)]
    for fut in as_completed(futures):
        print("done", fut.result(), flush=True)
    client.close()


if __name__ == "__main__":
    main()
