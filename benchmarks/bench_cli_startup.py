"""CLI start-up against the import floor (issue 15's first two rows).

Each trial runs, in an order rotated per trial, three whole processes:
``python -c "import yaml, pydantic"`` (the floor), ``scalable plan`` on an applied local
target with nothing to change, and ``scalable --help``. A ratio is taken within each
trial, so a machine whose speed drifts (other jobs) moves both sides alike. Aim: ≤ 2.0×.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import PY, load, project, run, scalable, spread  # noqa: E402

N = int(os.environ.get("BENCH_RUNS", "15"))


def timed(args: list[str], cwd: object) -> float:
    t0 = time.perf_counter()
    run(args, cwd=cwd)  # type: ignore[arg-type]
    return time.perf_counter() - t0


def main() -> None:
    root = project("""
        targets:
          local: {provider: local, max_workers: 1}
        """)
    scalable("apply", "--auto-approve", cwd=root)
    cmds = {
        "floor": [PY, "-c", "import yaml, pydantic"],
        # pydantic imports lazily: the floor above has not loaded BaseModel, which any
        # manifest validation needs (about 35 ms more). Printed for the record.
        "floor+BaseModel": [PY, "-c", "import yaml; from pydantic import BaseModel"],
        "plan": [PY, "-m", "scalable", "plan"],
        "help": [PY, "-m", "scalable", "--help"],
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for args in cmds.values():  # warm-up: bytecode written, files in the page cache
        run(args, cwd=root)
    before = load()
    try:
        for i in range(N):
            order = list(cmds)[i % len(cmds) :] + list(cmds)[: i % len(cmds)]
            for name in order:
                times[name].append(timed(cmds[name], root))
    finally:
        scalable("destroy", "--auto-approve", cwd=root)
    floor = times["floor"]
    print(f"load average (1 min) before {before}, after {load()}; {N} interleaved trials")
    print(f"floor: python -c 'import yaml, pydantic' median {sorted(floor)[N // 2] * 1000:6.0f} ms")
    for name, label in (
        ("floor+BaseModel", "import yaml + BaseModel"),
        ("plan", "scalable plan (no changes)"),
        ("help", "scalable --help"),
    ):
        ratios = [t / f for t, f in zip(times[name], floor, strict=True)]
        print(
            f"{label:28s} median {sorted(times[name])[N // 2] * 1000:6.0f} ms   "
            f"ratio {spread(ratios)}"
        )
    print("aim: ratio <= 2.0x")


if __name__ == "__main__":
    main()
