"""How far the objective planner's finish prediction is from the run (issue 19).

Three workload shapes the tests do not use — uniform, lognormal, bimodal — CPU-bound,
with different task counts, each run twice on the local target with
``objectives: {budget_usd}`` (the fastest count that fits: here all four workers, so
the last-wave model is exercised, not just the sum): run 1 plans from a manifest hint
(one task time: the median, what a person quotes), run 2 from run 1's telemetry (the
distribution of task times). Prints, per run, the planned workers, predicted finish
(90% range), actual (``scalable report``'s "from asking for capacity to the last
task") and the error, with the machine's load.

The tasks spin on the CPU for a drawn wall-clock time (``while perf_counter() < end``):
CPU-bound, and their length does not depend on how many other processes share the two
cores — so the figures measure the planner, not the neighbours. The same drawn list is
submitted in both runs (a repeat run of the same workload).

    .venv/bin/python benchmarks/bench_prediction.py [--shape NAME]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _util import project  # noqa: E402

MAX_WORKERS = 4


def spin(seconds: float) -> int:
    import time

    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def shapes() -> dict[str, list[float]]:
    rng = random.Random(2026)
    return {
        "uniform": [rng.uniform(0.2, 0.6) for _ in range(60)],
        "lognormal": [rng.lognormvariate(math.log(0.15), 1.0) for _ in range(100)],
        "bimodal": [2.0 if rng.random() < 0.25 else 0.2 for _ in range(40)],
    }


def one_run(root: object, durations: list[float]) -> dict[str, object]:
    from scalable import ScalableSession
    from scalable.telemetry.report import build_report
    from scalable.telemetry.store import TelemetryDB

    path = root / "scalable.yaml"  # type: ignore[operator]
    with ScalableSession.from_yaml(
        path, objectives={"budget_usd": 10.0}, tasks=len(durations)
    ) as session:
        goal = session.objective
        client = session.start()
        client.gather(client.map(spin, durations, pure=False))
    db = TelemetryDB.for_root(root)  # type: ignore[arg-type]
    run = db.last_run("local")
    assert run is not None
    rep = build_report(db, run)
    return {
        "workers": goal.chosen.workers,
        "predicted": goal.chosen.finish_seconds,
        "low": goal.chosen.finish_low,
        "high": goal.chosen.finish_high,
        "actual": rep.work_seconds,
        "error": rep.prediction_error,
        "source": goal.estimate.source,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(shapes()), action="append")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores)")
    print(
        f"{'SHAPE':<10} {'TASKS':>5} {'MEAN':>6} {'MEDIAN':>6} {'RUN':>3} {'W':>2} "
        f"{'PREDICTED':>9} {'90% RANGE':>13} {'ACTUAL':>7} {'ERROR':>6}  SOURCE"
    )
    second: dict[str, float] = {}
    for name, durations in shapes().items():
        if args.shape and name not in args.shape:
            continue
        mean = statistics.fmean(durations)
        hint = statistics.median(durations)
        root = project(f"""
            project: {{name: bench-{name}}}
            targets:
              local:
                provider: local
                max_workers: {MAX_WORKERS}
                pricing: {{hourly_usd: 0.01}}
                workload: {{tasks: {len(durations)}, task_seconds: {hint:.3f}}}
            """)
        for i in (1, 2):
            r = one_run(root, durations)
            err = r["error"]
            if i == 2 and isinstance(err, float):
                second[name] = err
            print(
                f"{name:<10} {len(durations):>5} {mean:>6.3f} "
                f"{statistics.median(durations):>6.3f} {i:>3} {r['workers']:>2} "
                f"{r['predicted']:>8.1f}s {r['low']:>5.1f}–{r['high']:>5.1f}s "
                f"{r['actual']:>6.1f}s {err:>+6.0%}  {r['source']}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    worst = max((abs(e) for e in second.values()), default=float("nan"))
    print(f"second runs: worst |error| {worst:.0%} (aim: within 10%)")


if __name__ == "__main__":
    main()
