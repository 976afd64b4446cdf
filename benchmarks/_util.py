"""Helpers for the benchmark scripts: timing whole commands, medians, temp projects."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable
# What a user types: the console script pip wrote beside the interpreter (no runpy,
# which ``python -m`` adds: 3-5 ms), or ``python -m scalable`` where there is none.
_SCRIPT = Path(PY).with_name("scalable")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "scalable"]


def median_wall(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_env() -> dict[str, str]:
    """The environment benchmarked commands run in. Bytecode is written and used, as in an
    installed package: with ``PYTHONDONTWRITEBYTECODE`` set (as in some CI shells) an
    editable install recompiles every scalable module at each start, which once made
    ``plan`` look 100 ms slower than a user sees it."""
    env = {**os.environ, "CI": "1", "NO_COLOR": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run ``args`` in ``bench_env()``, with ``env``'s variables added."""
    subprocess.run(args, cwd=cwd, check=True, capture_output=True,
                   env={**bench_env(), **(env or {})})


def project(manifest: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="scalable-bench-"))
    (root / "scalable.yaml").write_text(textwrap.dedent(manifest).lstrip())
    return root


def scalable(*args: str, cwd: Path) -> None:
    run([*CLI, *args], cwd=cwd)


def load() -> str:
    """The 1-minute load average, as printed beside every figure."""
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"


def spread(values: list[float]) -> str:
    """median with the interquartile range and the extremes: ``1.62 (IQR 1.50–1.80, 1.41–2.10)``."""
    qs = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return (f"{statistics.median(values):.2f} (IQR {qs[0]:.2f}–{qs[-1]:.2f}, "
            f"range {min(values):.2f}–{max(values):.2f}, n={len(values)})")
