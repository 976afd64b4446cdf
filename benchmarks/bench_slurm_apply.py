"""Time to N Slurm-hosted Dask workers: ``scalable apply`` vs dask-jobqueue.

    python benchmarks/bench_slurm_apply.py [--workers N] [--rounds R] [--partition batch]

Both sides run on the same Slurm, one worker per job (1 core), in the same partition,
alternating rounds:

- scalable: the real CLI (``python -m scalable apply --auto-approve``) from a fresh
  project: start-up, validate (``scontrol ping``, ``sinfo``, ``sbatch --test-only``),
  plan, the scheduler process, parallel ``sbatch``, and the wait until every worker has
  registered. Measured with TLS (scalable's default off the local target) and without.
- dask-jobqueue: ``SLURMCluster(...)``, ``cluster.scale(N)``,
  ``client.wait_for_workers(N)`` in this process (its scheduler is in-process, no TLS,
  dask already imported), and again as a fresh ``python`` process (imports included, as
  the CLI's are).

The four sides run in an order rotated per round, and each ratio is taken within a
round (a ratio holds when the machine's speed drifts; an absolute time does not). Prints
each round, the medians, and each ratio scalable / dask-jobqueue with its spread (≤ 1 is
the aim), with the load average before and after. Needs a Slurm (``sudo scripts/slurm-dev.sh up``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

T0 = time.perf_counter()  # a --jobqueue-child counts from here

sys.path.insert(0, os.path.dirname(__file__))
from _util import bench_env, load, spread  # noqa: E402


def scalable_round(n: int, partition: str, tls: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
        root = Path(tmp)
        (root / "scalable.yaml").write_text(textwrap.dedent(f"""\
            project: {{name: bench}}
            targets:
              hpc:
                provider: slurm
                queue: {partition}
                walltime: "00:10:00"
                processes: 1
                max_workers: {n}
                tls: {"true" if tls else "false"}
        """))
        env = bench_env()
        cmd = [sys.executable, "-m", "scalable"]
        start = time.perf_counter()
        out = subprocess.run([*cmd, "apply", "--auto-approve"], cwd=root, env=env,
                             capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        try:
            if out.returncode != 0 or f"workers {n}/{n} ready" not in out.stdout:
                raise SystemExit(f"scalable apply failed:\n{out.stdout}\n{out.stderr}")
        finally:
            subprocess.run([*cmd, "destroy", "--auto-approve"], cwd=root, env=env,
                           capture_output=True, text=True)
        state = json.loads((root / ".scalable" / "hpc" / "state.json").read_text())
        assert state["resources"] == [], "destroy left resources"
        return elapsed


def jobqueue_round(n: int, partition: str, start: float | None = None) -> float:
    """Seconds to n workers; from ``start`` if given (a child counting its imports)."""
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    with tempfile.TemporaryDirectory(prefix="bench-jq-") as tmp:
        start = time.perf_counter() if start is None else start
        cluster = SLURMCluster(cores=1, processes=1, memory="512MiB", queue=partition,
                               walltime="00:10:00", log_directory=tmp,
                               job_extra_directives=["--chdir", tmp])
        client = Client(cluster)
        cluster.scale(n)
        client.wait_for_workers(n, timeout=300)
        elapsed = time.perf_counter() - start
        client.close()
        cluster.close()
        return elapsed


def jobqueue_process_round(n: int, partition: str) -> float:
    """The same, as a fresh ``python`` process (imports included, like the CLI's)."""
    out = subprocess.run([sys.executable, __file__, "--jobqueue-child", str(n), partition],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"dask-jobqueue failed:\n{out.stderr}")
    # Up to the workers being ready, measured inside (teardown excluded), plus the
    # interpreter's own start-up before the first line ran.
    inside = float(out.stdout.strip().splitlines()[-1])
    return inside + _interpreter_startup()


_STARTUP: list[float] = []


def _interpreter_startup() -> float:
    if not _STARTUP:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        _STARTUP.append(time.perf_counter() - t)
    return _STARTUP[0]


def main() -> None:
    if sys.argv[1:2] == ["--jobqueue-child"]:
        print(jobqueue_round(int(sys.argv[2]), sys.argv[3], start=T0))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partition", default="batch")
    args = ap.parse_args()
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        raise SystemExit("no Slurm here: sudo scripts/slurm-dev.sh up")

    w, q = args.workers, args.partition
    sides = {
        "dask-jobqueue": lambda: jobqueue_round(w, q),
        "dask-jobqueue (process)": lambda: jobqueue_process_round(w, q),
        "scalable (TLS)": lambda: scalable_round(w, q, True),
        "scalable (no TLS)": lambda: scalable_round(w, q, False),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    before = load()
    for r in range(args.rounds):
        order = list(sides)[r % 4:] + list(sides)[:r % 4]
        for k in order:
            times[k].append(sides[k]())
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{w} workers in {w} jobs, partition {q}, median of {args.rounds}:")
    for k, v in med.items():
        print(f"  {k:<24} {v:6.2f}s")
    for base in ("dask-jobqueue", "dask-jobqueue (process)"):
        for ours in ("scalable (TLS)", "scalable (no TLS)"):
            ratios = [a / b for a, b in zip(times[ours], times[base], strict=True)]
            print(f"  ratio {ours} / {base}: {spread(ratios)}")
    print(f"  load average (1 min) before {before}, after {load()} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
