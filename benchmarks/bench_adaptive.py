"""A fixed workload under adaptive scaling vs. a fixed `maximum` workers.

Prints worker-seconds used and wall time for both. The workload is bursty: a burst of
sleep tasks, an idle gap, a second burst — where adaptive should use fewer
worker-seconds for a modest wall-time cost.
"""

from __future__ import annotations

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import project  # noqa: E402

MAX = 4


def workload(client) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):
        futs = client.map(lambda i: time.sleep(0.5) or i, range(48), pure=False)
        client.gather(futs)
        time.sleep(8)


def run(manifest: str) -> tuple[float, float]:
    from scalable import ScalableSession

    root = project(manifest)
    with ScalableSession.from_yaml(root / "scalable.yaml") as session:
        client = session.start()
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                samples.append(len(client.scheduler_info(n_workers=-1)["workers"]))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.perf_counter()
        workload(client)
        wall = time.perf_counter() - t0
        done.set()
        t.join()
    return wall, sum(samples) * 0.25


def main() -> None:
    fixed = run(f"""
        targets:
          local: {{provider: local, max_workers: {MAX}}}
        """)
    adaptive = run(f"""
        targets:
          local:
            provider: local
            adaptive: {{minimum: 1, maximum: {MAX}, interval: 0.5s, cooldown: 3s,
                        wait_count: 3}}
        """)
    print(f"fixed {MAX} workers : wall {fixed[0]:6.1f} s, worker-seconds {fixed[1]:7.1f}")
    print(f"adaptive 1..{MAX}   : wall {adaptive[0]:6.1f} s, worker-seconds {adaptive[1]:7.1f}")
    print(f"adaptive/fixed     : wall {adaptive[0] / fixed[0]:.2f}x, "
          f"worker-seconds {adaptive[1] / fixed[1]:.2f}x")


if __name__ == "__main__":
    main()
