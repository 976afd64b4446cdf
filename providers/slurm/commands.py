"""Thin wrappers over Slurm's client commands, with errors a user can act on.

Every call goes through :func:`run`, which turns "not installed", "controller not
answering" and Slurm's own refusals into one-line ``ProviderError``\\ s (Slurm's message
passed through). Output is parsed from fixed ``squeue --Format`` / ``sinfo -o`` columns:
``squeue --json`` ignores ``-j/-n/--me/-t`` filters in Slurm 22.05, and the text formats
exist in every version we meet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scalable.providers.base import ProviderError

# Job states that still hold (or will hold) an allocation: what a plain `squeue` shows.
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
     "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
     "RESV_DEL_HOLD"}
)

INSTALL_HINT = (
    "run scalable where the Slurm client commands are (a login node); "
    "for a local development Slurm: sudo scripts/slurm-dev.sh up"
)
CONTROLLER_HINT = "is slurmctld up and reachable? `scontrol ping` tells"

# squeue columns we read; the comment goes last because it may hold anything.
_SQUEUE_FIELDS = ("JobID", "Name", "State", "Reason", "StartTime", "Partition", "NodeList",
                  "TimeLimit", "WCKey", "ArrayJobID", "ArrayTaskID", "Comment")
SEP = "\x1f"  # ASCII unit separator: never in job names or comments we write


@dataclass(frozen=True)
class Job:
    """One row of ``squeue``."""

    id: str
    name: str
    state: str
    reason: str
    start: str
    partition: str
    nodes: str
    time_limit: str
    wckey: str
    comment: str
    # An array task: its index (the id is then ``<array job id>_<index>``, what
    # scancel and sacct take for one task).
    array_task: int | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Partition:
    name: str
    default: bool
    max_time: int | None  # seconds; None = UNLIMITED / INFINITE
    available: str  # up / down / drain / inact
    cpus: int  # CPUs per node (the largest reported)
    # GPUs per node by GRES type ("" for an untyped ``gpu:2``), the largest node's.
    gpus: Mapping[str, int] = field(default_factory=dict)

    def gpu_count(self, gpu_type: str | None) -> int:
        """GPUs of ``gpu_type`` (any type: None) one node of this partition has."""
        if gpu_type is None:
            return sum(self.gpus.values())
        return self.gpus.get(gpu_type, 0)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a Slurm command; its stdout, or a ProviderError with Slurm's own words."""
    prog = argv[0]
    if shutil.which(prog) is None:
        raise ProviderError(f"{prog} not found: no Slurm client commands on PATH",
                            hint=INSTALL_HINT)
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, cwd=cwd,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ProviderError(
            f"{prog} did not answer within {timeout:g}s (Slurm controller not answering?)",
            hint=CONTROLLER_HINT,
        ) from None
    if proc.returncode != 0:
        raise ProviderError(f"{prog} failed: {slurm_message(proc.stderr or proc.stdout)}",
                            hint=_hint_for(proc.stderr))
    return proc.stdout


def slurm_message(stderr: str) -> str:
    """Slurm's most telling line: the last ``error:`` line, prefixes trimmed."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    if not lines:
        return "no message"
    errors = [ln for ln in lines if "error" in ln.lower() or "failure" in ln.lower()]
    # sbatch prints the specific reason first and a generic one ("Batch job submission
    # failed: …", "allocation failure: …") last: keep both, specific first.
    if len(errors) >= 2:
        return f"{_trim(errors[0])} ({_trim(errors[-1])})"
    return _trim(errors[-1] if errors else lines[-1])


def _trim(line: str) -> str:
    for prefix in ("sbatch: error: ", "squeue: error: ", "scancel: error: ", "sinfo: error: ",
                   "scontrol: error: ", "error: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def _hint_for(stderr: str) -> str | None:
    low = stderr.lower()
    if "unable to contact slurm controller" in low or "connection refused" in low:
        return CONTROLLER_HINT
    if "partition" in low:
        return "check `queue:` against `sinfo -s`"
    if "account" in low or "association" in low:
        return "check `account:` against `sacctmgr show assoc user=$USER`"
    if "time limit" in low:
        return "lower `walltime:` or choose a partition with a longer MaxTime (`sinfo -s`)"
    return None


# -- the controller -------------------------------------------------------------------


def ping(timeout: float = 15.0) -> None:
    """Fail unless ``scontrol ping`` says the controller is UP (it answers at once)."""
    prog = "scontrol"
    if shutil.which(prog) is None:
        raise ProviderError("scontrol not found: no Slurm client commands on PATH",
                            hint=INSTALL_HINT)
    try:
        proc = subprocess.run([prog, "ping"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProviderError("the Slurm controller did not answer `scontrol ping`",
                            hint=CONTROLLER_HINT) from None
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or " is UP" not in out:
        raise ProviderError(
            f"the Slurm controller is not answering (scontrol ping: "
            f"{out.splitlines()[-1] if out else 'no answer'})",
            hint=CONTROLLER_HINT,
        )


def require_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise ProviderError("sbatch not found: no Slurm client commands on PATH",
                            hint=INSTALL_HINT)


# -- jobs -------------------------------------------------------------------------------


def sbatch(script: Path, *, cwd: Path, env: Mapping[str, str] | None = None,
           timeout: float = 60.0) -> str:
    """Submit a batch script; the new job's id."""
    out = run(["sbatch", "--parsable", str(script)], cwd=cwd, env=env, timeout=timeout)
    job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not job_id.isdigit():
        raise ProviderError(f"sbatch returned no job id (output: {out.strip()[:200]!r})")
    return job_id


def squeue(*, all_states: bool = True, mine: bool = True, timeout: float = 60.0) -> list[Job]:
    """Jobs as squeue lists them (``-t all`` keeps finished ones for MinJobAge)."""
    fmt = ",".join(f"{f}:{SEP}" for f in _SQUEUE_FIELDS[:-1]) + f",{_SQUEUE_FIELDS[-1]}:"
    # -r: one row per array task (pending tasks are otherwise one row, ``2-63%8``).
    argv = ["squeue", "-h", "-r", "-O", fmt]
    if all_states:
        argv += ["-t", "all"]
    if mine:
        argv += ["--me"]
    return parse_squeue(run(argv, timeout=timeout))


def parse_squeue(text: str) -> list[Job]:
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(SEP, len(_SQUEUE_FIELDS) - 1)
        if len(parts) != len(_SQUEUE_FIELDS):
            continue
        vals = [p.strip() for p in parts]
        # A state may carry a suffix ("CANCELLED by 0"): keep the word.
        state = vals[2].split()[0] if vals[2] else ""
        job_id, task = vals[0], None
        if vals[10].isdigit():
            job_id, task = f"{vals[9]}_{vals[10]}", int(vals[10])
        jobs.append(Job(id=job_id, name=vals[1], state=state, reason=vals[3], start=vals[4],
                        partition=vals[5], nodes=vals[6], time_limit=vals[7], wckey=vals[8],
                        comment=vals[11], array_task=task))
    return jobs


def scancel(job_ids: Iterable[str], timeout: float = 60.0) -> None:
    """Cancel jobs; ones that already ended are not an error."""
    ids = [j for j in job_ids if j]
    if not ids:
        return
    try:
        run(["scancel", *ids], timeout=timeout)
    except ProviderError as exc:
        msg = str(exc).lower()
        if "already completing or completed" in msg or "invalid job id" in msg:
            return
        raise


# -- partitions -------------------------------------------------------------------------


def partitions(timeout: float = 30.0) -> dict[str, Partition]:
    return parse_sinfo(run(["sinfo", "-h", "-o", f"%P{SEP}%l{SEP}%a{SEP}%c{SEP}%G"],
                           timeout=timeout))


def parse_gres(text: str) -> dict[str, int]:
    """GPUs by type from a Gres column: ``gpu:a100:4(S:0-1),gpu:v100:2,shard:8`` →
    ``{"a100": 4, "v100": 2}``; an untyped ``gpu:2`` is type ``""``; ``(null)``: none."""
    out: dict[str, int] = {}
    for item in text.split(","):
        item = item.split("(", 1)[0].strip()
        fields = item.split(":")
        if fields[0] != "gpu" or len(fields) < 2:
            continue
        kind, count = (fields[1], fields[-1]) if len(fields) >= 3 else ("", fields[1])
        try:
            n = int(count)
        except ValueError:
            continue
        out[kind] = max(out.get(kind, 0), n)
    return out


def parse_sinfo(text: str) -> dict[str, Partition]:
    out: dict[str, Partition] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(SEP)]
        if len(parts) == 4:  # an older caller's four columns: no Gres
            parts.append("")
        if len(parts) != 5 or not parts[0]:
            continue
        name, limit, avail, cpus, gres = parts
        default = name.endswith("*")
        name = name.rstrip("*")
        try:
            ncpu = int(cpus.rstrip("+"))
        except ValueError:
            ncpu = 0
        gpus = parse_gres(gres)
        prev = out.get(name)
        if prev is not None:  # one line per node state: keep the largest node
            ncpu = max(ncpu, prev.cpus)
            gpus = {k: max(gpus.get(k, 0), prev.gpus.get(k, 0))
                    for k in {*gpus, *prev.gpus}}
        out[name] = Partition(name=name, default=default, max_time=parse_time_limit(limit),
                              available=avail, cpus=ncpu, gpus=gpus)
    return out


def parse_time_limit(text: str) -> int | None:
    """Seconds from sinfo/squeue limits: ``30:00``, ``1-00:00:00``, ``UNLIMITED``."""
    text = text.strip()
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "N/A", "NONE"):
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        days = int(d)
    nums = [int(p) for p in text.split(":")]
    if len(nums) == 1:
        # minutes alone (or days-hours, after a dash)
        h, m, s = (nums[0], 0, 0) if days else (0, nums[0], 0)
    elif len(nums) == 2:
        h, m, s = (nums[0], nums[1], 0) if days else (0, nums[0], nums[1])
    else:
        h, m, s = nums[0], nums[1], nums[2]
    return days * 86400 + h * 3600 + m * 60 + s


def test_only(options: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0) -> str:
    """``sbatch --test-only``: Slurm checks partition, account, node shape; submits nothing.

    Returns Slurm's forecast ("Job N to start at … on nodes … in partition …"). A time
    limit over the partition's MaxTime is *not* refused here (the job would just pend
    forever with reason PartitionTimeLimit), which is why callers also check ``sinfo``.
    """
    prog = "sbatch"
    if shutil.which(prog) is None:
        raise ProviderError("sbatch not found: no Slurm client commands on PATH",
                            hint=INSTALL_HINT)
    try:
        proc = subprocess.run([prog, "--test-only", *options, "--wrap", "true"],
                              capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ProviderError(f"sbatch --test-only did not answer within {timeout:g}s",
                            hint=CONTROLLER_HINT) from None
    if proc.returncode != 0:
        raise ProviderError(f"Slurm refuses the job: {slurm_message(proc.stderr)}",
                            hint=_hint_for(proc.stderr))
    return proc.stderr.strip()
