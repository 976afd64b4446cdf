"""Caching an ensemble: run it, "crash", run it again — only the missing members run.

    python examples/caching.py

Uses the repository's ``local`` target (real Dask worker processes). The first pass
computes 8 scenarios; then 4 entries are removed, as if the run had been cut short;
the second pass computes only those 4, and the plan for a 1,000-call ensemble sizes
for the calls not cached.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from scalable import ScalableSession, cacheable


@cacheable(return_type=dict, scenario_id=int)
def run_simulation(scenario_id: int) -> dict:
    time.sleep(0.1)  # the expensive part
    return {"scenario": scenario_id, "result": scenario_id**2}


def main() -> None:
    os.chdir(Path(__file__).resolve().parent.parent)
    with ScalableSession.from_yaml("./scalable.yaml", target="local") as session:
        client = session.start()
        first = client.gather(
            [client.submit(run_simulation, i, tag="sim") for i in range(8)])
        assert [r["result"] for r in first] == [i * i for i in range(8)]

        for i in range(4, 8):  # as if the run had died before these were stored
            run_simulation.forget(i)
        cached = [i for i in range(8) if run_simulation.is_cached(i)]
        print(f"cached before the second pass: {cached}")

        # pure=False: run the calls again rather than reuse Dask's in-memory results.
        second = client.gather(
            [client.submit(run_simulation, i, tag="sim", pure=False) for i in range(8)])
        assert second == first
        assert all(run_simulation.is_cached(i) for i in range(8))

    # Planning knows what is cached: 8 of these 1,000 calls will not run.
    from scalable.cache.planning import count_cached

    print(count_cached([run_simulation.call(i) for i in range(1000)]).describe())


if __name__ == "__main__":
    main()
