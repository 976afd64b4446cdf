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


def median_wall(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(args: list[str], cwd: Path | None = None) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "CI": "1", "NO_COLOR": "1"})


def project(manifest: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="scalable-bench-"))
    (root / "scalable.yaml").write_text(textwrap.dedent(manifest).lstrip())
    return root


def scalable(*args: str, cwd: Path) -> None:
    run([PY, "-m", "scalable", *args], cwd=cwd)
