"""Batch scripts for worker jobs, built on dask-jobqueue's ``SLURMJob``.

dask-jobqueue owns the ``#SBATCH`` header (``-J``, ``-e/-o``, ``-p``, ``-A``, ``-n 1``,
``--cpus-per-task``, ``--mem``, ``-t``, extra directives) and the script template; we
supply the worker command (the same ``dask worker`` argv every scalable provider builds,
wrapped in the group's container runtime, ``providers/containers.py``) and our identity
directives (``--comment``, ``--wckey``). ``scalable plan --show-scripts`` prints exactly
what :func:`render` returns.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from scalable import addrs
from scalable.providers.batch.system import lifetime  # noqa: F401 - one rule for every system
from scalable.providers.commands import export_lines
from scalable.units import format_walltime

# Written into the job script where a value exists only at run time (the job's tmp,
# the node's address): left for bash to expand.
LOCAL_DIR = "${TMPDIR:-/tmp}/scalable-${SLURM_JOB_ID}"
HOST_VAR = "${SCALABLE_HOST}"
# (``LOCAL_DIR:LOCAL_DIR``: a container runtime's ``-v`` binding it in place.)
_RAW_TOKENS = {LOCAL_DIR, HOST_VAR, f"{HOST_VAR}:0", f"{LOCAL_DIR}:{LOCAL_DIR}"}
# An array task's worker name, ``workers.<group>[${SLURM_ARRAY_TASK_ID}]``: expanded by
# bash in the task (group names are [a-z0-9_-], nothing else in it needs quoting).
TASK_VAR = "${SLURM_ARRAY_TASK_ID}"
_TASK_NAME = re.compile(r"workers\.[a-z0-9_-]+\[\$\{SLURM_ARRAY_TASK_ID\}\]")

COMMENT_PREFIX = "scalable"

# A multi-node allocation's srun task: the worker's name gets the task's node index
# (``workers.<group>[i]-<node>``), which exists only inside the task, so a tiny bash
# names it there. ``$1`` is the allocation's address, the rest the worker command.
SRUN_TASK = 'name="$1-$SLURM_NODEID"; shift; exec "$@" --name "$name"'


# -- identity ---------------------------------------------------------------------------


def job_name(lineage: str, address: str) -> str:
    """``scalable-<lineage8>-<group>-<i>``: unique per state and address."""
    return f"scalable-{lineage[:8]}-{addrs.slug(address)}"


def wckey(lineage: str) -> str:
    """One wckey per state: ``scancel --wckey`` stops everything a state made."""
    return f"scalable-{lineage[:8]}"


def comment(lineage: str, address: str, key: str) -> str:
    """``scalable;lineage=…;address=…;key=…``: what discover reads back."""
    return f"{COMMENT_PREFIX};lineage={lineage};address={address};key={key}"


def array_comment(lineage: str, group: str, keys: dict[int, str]) -> str:
    """An array's comment: one per array, the idempotency key of each task in it."""
    tasks = ",".join(f"{i}:{k}" for i, k in sorted(keys.items()))
    first = keys[min(keys)] if keys else "<key>"
    return (f"{COMMENT_PREFIX};lineage={lineage};address=workers.{group}[*];key={first};"
            f"tasks={tasks}")


def task_identity(fields: dict[str, str], task: int | None) -> tuple[str, str] | None:
    """(address, key) of one array task from its array's comment fields (None: not ours)."""
    if task is None or "tasks" not in fields or not fields["address"].endswith("[*]"):
        return None
    keys = dict(item.split(":", 1) for item in fields["tasks"].split(",") if ":" in item)
    key = keys.get(str(task))
    if key is None:
        return None
    return fields["address"][:-3] + f"[{task}]", key


def array_spec(indices: Sequence[int], throttle: int | None) -> str:
    """``--array`` value: ``0-63%8``, ``3,5,9-11``."""
    parts: list[str] = []
    idx = sorted(set(indices))
    start = prev = idx[0]
    for i in [*idx[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts) + (f"%{throttle}" if throttle else "")


def parse_comment(text: str) -> dict[str, str] | None:
    """The fields of a comment we wrote, or None for anyone else's job."""
    parts = text.strip().split(";")
    if not parts or parts[0] != COMMENT_PREFIX:
        return None
    out: dict[str, str] = {}
    for p in parts[1:]:
        k, sep, v = p.partition("=")
        if sep:
            out[k] = v
    if not {"lineage", "address", "key"} <= set(out):
        return None
    return out


# -- shape of one job -----------------------------------------------------------------


@dataclass(frozen=True)
class JobShape:
    """Everything a job's script says, resolved from the manifest."""

    job_name: str
    comment: str
    wckey: str
    partition: str | None
    account: str | None
    walltime: int  # seconds
    cores: int
    memory: int | None  # bytes for --mem; None = the partition's default
    log_directory: str
    worker_command: Sequence[str]
    extra_directives: Sequence[str] = ()
    prologue: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    python: str = "python3"
    # A multi-node allocation: ``nodes`` nodes, one srun task on each (``cores`` and
    # ``memory`` are per node, as Slurm's --cpus-per-task and --mem are).
    nodes: int = 1


def srun_argv(worker: Sequence[str], address: str, nodes: int, cores: int) -> list[str]:
    """One srun task per node of the allocation, each running ``worker`` (a ``dask worker
    --nworkers P`` command, as dask-jobqueue runs ``processes`` > 1) named after its node.

    ``--kill-on-bad-exit=0``: one node's workers ending (a crash, a node lost) leaves the
    other nodes' workers running; refresh counts the allocation's workers and calls the
    shortfall drift. Slurm 22.05's srun does not inherit ``--cpus-per-task``: given here.
    """
    argv = list(worker)
    if "--name" in argv:  # the name is set per node, inside the task
        i = argv.index("--name")
        del argv[i:i + 2]
    return ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1",
            f"--cpus-per-task={cores}", "--kill-on-bad-exit=0",
            "bash", "-c", SRUN_TASK, "scalable-worker", address, *argv]


def mem_directive(nbytes: int) -> str:
    """``--mem`` value in MiB, rounded up (Slurm's M is MiB)."""
    return f"{max(1, math.ceil(nbytes / 2**20))}M"


def host_line(interface: str | None) -> str:
    """Bash that sets SCALABLE_HOST to the node's address (on ``interface`` if given)."""
    if interface:
        return (f"SCALABLE_HOST=$(ip -4 -o addr show dev {shlex.quote(interface)} "
                "| awk '{split($4, a, \"/\"); print a[1]; exit}')")
    return "SCALABLE_HOST=$(hostname -I | awk '{print $1}')"


def shell_join(argv: Sequence[str]) -> str:
    """Quote for bash, leaving our run-time tokens (``$TMPDIR``…) to expand."""
    return " ".join(f'"{a}"' if a in _RAW_TOKENS or _TASK_NAME.fullmatch(a)
                    else shlex.quote(a) for a in argv)


def render(shape: JobShape) -> str:
    """The exact batch script for one job: dask-jobqueue's SLURMJob header and template.

    Written out here rather than built by SLURMJob: importing dask_jobqueue imports
    distributed and numpy (~0.9 s on 2 cores) on apply's critical path, before the first
    sbatch. ``test_slurm_script`` holds the two to the same text, byte for byte.
    Every key is given: nothing is filled from a user's jobqueue.yaml behind the plan's
    back.
    """
    prologue = list(shape.prologue)
    prologue += export_lines(dict(sorted(shape.env.items())))
    prologue += [
        f'export SCALABLE_LOCAL_DIR="{LOCAL_DIR}"',
        'mkdir -p "$SCALABLE_LOCAL_DIR" && trap \'rm -rf "$SCALABLE_LOCAL_DIR"\' EXIT',
    ]
    directives = [f"--comment={shape.comment}", f"--wckey={shape.wckey}",
                  *shape.extra_directives]
    header = [f"#SBATCH -J {shape.job_name}",
              f"#SBATCH -e {shape.log_directory}/{shape.job_name}-%J.err",
              f"#SBATCH -o {shape.log_directory}/{shape.job_name}-%J.out"]
    if shape.partition:
        header.append(f"#SBATCH -p {shape.partition}")
    if shape.account:
        header.append(f"#SBATCH -A {shape.account}")
    if shape.nodes > 1:  # an allocation is one task per node, not SLURMJob's one task
        directives = [f"--nodes={shape.nodes}", "--ntasks-per-node=1", *directives]
    else:
        header.append("#SBATCH -n 1")
    header.append(f"#SBATCH --cpus-per-task={shape.cores}")
    if shape.memory:
        header.append(f"#SBATCH --mem={mem_directive(shape.memory)}")
    header.append(f"#SBATCH -t {format_walltime(shape.walltime)}")
    header += [f"#SBATCH {d}" for d in directives]
    lines = ["#!/usr/bin/env bash", "", *header, *filter(None, prologue),
             shell_join(shape.worker_command)]
    return "\n".join(lines) + "\n"
