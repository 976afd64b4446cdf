"""CLI start-up: `scalable plan` (local, no changes) vs `python -c "import yaml, pydantic"`.

Aim: ratio ≤ 2.5. Prints medians over N runs of whole processes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _util import PY, median_wall, project, run, scalable  # noqa: E402

N = int(os.environ.get("BENCH_RUNS", "15"))


def main() -> None:
    root = project("""
        targets:
          local: {provider: local, max_workers: 1}
        """)
    scalable("apply", "--auto-approve", cwd=root)
    try:
        base, _ = median_wall(lambda: run([PY, "-c", "import yaml, pydantic"]), N)
        plan, _ = median_wall(lambda: scalable("plan", cwd=root), N)
        direct, _ = median_wall(lambda: run([os.path.join(os.path.dirname(PY), "scalable"),
                                             "plan"], cwd=root), N)
    finally:
        scalable("destroy", "--auto-approve", cwd=root)
    print(f"import yaml, pydantic       median {base * 1000:7.1f} ms  (n={N})")
    print(f"python -m scalable plan     median {plan * 1000:7.1f} ms  ratio {plan / base:.2f}x")
    print(f"scalable plan (script)      median {direct * 1000:7.1f} ms  ratio {direct / base:.2f}x")
    print("aim: ratio <= 2.5x")


if __name__ == "__main__":
    main()
