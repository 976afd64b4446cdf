"""CLI start-up against the import floor (issue 15's first two rows).

Each trial runs, in an order rotated per trial, three whole processes:
``python -c "import yaml, pydantic"`` (the floor), ``scalable plan`` on an applied local
target with nothing to change, and ``scalable --help`` (and, printed beside them: ``plan``
with the code cache off, ``plan -t laptop`` in a manifest of three providers, ``destroy``'s
start-up, the floor with a code cache of its own). A ratio is taken within each
trial, so a machine whose speed drifts (other jobs) moves both sides alike. Aim: ≤ 2.0×.

``--instructions`` (needs valgrind) also counts each command's instructions once, under
``valgrind --tool=callgrind``: a count does not move with the machine's load, so the
ratios it gives compare passes taken under different loads (about a minute).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _util import CLI, PY, bench_env, load, project, run, scalable, spread  # noqa: E402

N = int(os.environ.get("BENCH_RUNS", "15"))
CODECACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                             "scalable_cli", "cli")


def timed(args: list[str], cwd: object, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall clock, CPU time (user + system) and minor page faults of one run of ``args``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run(args, cwd=cwd, env=env)  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, r1.ru_minflt - r0.ru_minflt


def instructions(args: list[str], cwd: object, env: dict[str, str]) -> int:
    """Instructions one run of ``args`` executes (valgrind's callgrind; its ``I refs``)."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
        cwd=cwd, capture_output=True, text=True, env={**bench_env(), **env},  # type: ignore[arg-type]
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind: {proc.stderr[-300:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    if "--instructions" in sys.argv and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind on PATH")
    root = project("""
        targets:
          local: {provider: local, max_workers: 1}
        """)
    scalable("apply", "--auto-approve", cwd=root)
    # destroy's start-up: the same target never applied, so destroy plans, finds nothing
    # and stops; what it spends is what every destroy spends before its first SIGTERM
    # (less the refresh of live processes).
    empty = project("""
        targets:
          local: {provider: local, max_workers: 1}
        """)
    # A user's manifest rather than the one-worker target: three providers, the
    # local one with groups, planned with -t (every target is validated; one is run).
    several = project("""
        project: {name: ensemble}
        default_target: laptop
        targets:
          laptop:
            provider: local
            max_workers: 1
            groups:
              io: {max_workers: 1, tags: [io]}
              cpu: {adaptive: {minimum: 1, maximum: 3}, tags: [cpu]}
          hpc: {provider: slurm, queue: batch, max_workers: 4, walltime: "01:00:00"}
          cloud: {provider: aws, launch_type: ec2, region: us-east-1, max_workers: 2}
        """)
    scalable("apply", "--auto-approve", cwd=several)
    cwds = {"destroy": empty, "plan-3-providers": several}
    cmds = {
        "floor": [PY, "-c", "import yaml, pydantic"],
        # pydantic imports lazily: the floor above has not loaded BaseModel, which any
        # manifest validation needs (about 35 ms more). Printed for the record.
        "floor+BaseModel": [PY, "-c", "import yaml; from pydantic import BaseModel"],
        # The floor with its generated code served from scalable's code cache too (the
        # module loaded on its own, without the rest of scalable): a like-for-like floor.
        "floor+codecache": [PY, "-c", f"import sys; sys.path.insert(0, {CODECACHE_DIR!r}); "
                            "import codecache; codecache.install(); import yaml, pydantic"],
        "plan": [*CLI, "plan"],
        "plan-nocache": [*CLI, "plan"],
        "plan-3-providers": [*CLI, "plan", "-t", "laptop"],
        "help": [*CLI, "--help"],
        "destroy": [*CLI, "destroy", "--auto-approve"],
    }
    # The console script keeps the code that libraries generate as they load (dataclass
    # methods, ForwardRefs) in ~/.cache/scalable (docs/performance.rst, seventh pass);
    # the warm-up below fills it. plan-nocache is the same plan with it turned off.
    envs = {"plan-nocache": {"SCALABLE_CODE_CACHE": "off"}}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpus: dict[str, list[float]] = {k: [] for k in cmds}
    faults: dict[str, list[int]] = {k: [] for k in cmds}
    for name, args in cmds.items():  # warm-up: bytecode written, files in the page cache
        run(args, cwd=cwds.get(name, root), env=envs.get(name))
    before = load()
    try:
        for i in range(N):
            order = list(cmds)[i % len(cmds) :] + list(cmds)[: i % len(cmds)]
            for name in order:
                wall, cpu, flt = timed(cmds[name], cwds.get(name, root), envs.get(name, {}))
                times[name].append(wall)
                cpus[name].append(cpu)
                faults[name].append(flt)
        counts = (
            {
                name: instructions(args, cwds.get(name, root), envs.get(name, {}))
                for name, args in cmds.items()
            }
            if "--instructions" in sys.argv
            else {}
        )
    finally:
        scalable("destroy", "--auto-approve", cwd=root)
        scalable("destroy", "--auto-approve", "-t", "laptop", cwd=several)
    floor = times["floor"]
    print(f"load average (1 min) before {before}, after {load()}; {N} interleaved trials")
    print(f"floor: python -c 'import yaml, pydantic' median {sorted(floor)[N // 2] * 1000:6.0f} ms")
    for name, label in (
        ("floor+BaseModel", "import yaml + BaseModel"),
        ("floor+codecache", "floor, code cache on"),
        ("plan", "scalable plan (no changes)"),
        ("plan-nocache", "plan, code cache off"),
        ("plan-3-providers", "plan, 3-provider manifest"),
        ("help", "scalable --help"),
        ("destroy", "destroy (nothing to destroy)"),
    ):
        ratios = [t / f for t, f in zip(times[name], floor, strict=True)]
        print(
            f"{label:28s} median {sorted(times[name])[N // 2] * 1000:6.0f} ms   "
            f"ratio {spread(ratios)}"
        )
    # CPU time (user + system) moves less with other jobs than the wall clock does; the
    # page faults show memory the process touched (and maps freed and made again).
    print("CPU time (user + system) and minor page faults, medians:")
    cpu_floor = cpus["floor"]
    for name in cmds:
        ratios = [c / f for c, f in zip(cpus[name], cpu_floor, strict=True)]
        print(
            f"  {name:16s} {statistics.median(cpus[name]) * 1000:6.0f} ms  "
            f"ratio {statistics.median(ratios):.2f}   "
            f"{statistics.median(faults[name]):7.0f} faults"
        )
    if counts:
        print("instructions (valgrind, one run each; ratio to the floor):")
        for name, n in counts.items():
            print(f"  {name:16s} {n / 1e6:8.0f} M   {n / counts['floor']:.2f}x")
        print(f"  plan ÷ floor+codecache (both with the cache): "
              f"{counts['plan'] / counts['floor+codecache']:.2f}x")
    print("aim: ratio <= 2.0x")


if __name__ == "__main__":
    main()
