"""What one batch system is, to the shared batch provider: how to submit a script, list
jobs, cancel them, and write a job script (in dask-jobqueue's format for that system).

A :class:`BatchSystem` is a small table of command lines and parsers; everything else
(which jobs a target needs, identity, refresh, drift, walltime → lifetime, deletes) is
the same for every system and lives in :mod:`scalable.providers.batch.provider`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from scalable.providers.base import ProviderError

Phase = Literal["pending", "alive", "ending", "gone"]

# Written into the job script where a value exists only at run time.
LOCAL_DIR = "${TMPDIR:-/tmp}/scalable-${SCALABLE_JOB_ID}"
_RAW_TOKENS = {LOCAL_DIR}


@dataclass(frozen=True)
class BatchJob:
    """One job as the system's status command lists it."""

    id: str
    name: str
    state: str  # the system's own word (``qw``, ``R``, ``PEND``, ``Idle``)
    phase: Phase
    reason: str = ""
    nodes: str = ""
    # Our identity fields (lineage, address, key) where the listing carries them.
    identity: dict[str, str] | None = None
    # A job that will never run but still sits in the queue (SGE's Eqw) is "gone" to
    # the plan and yet has to be cancelled: the system says so here.
    stuck: bool = False

    @property
    def active(self) -> bool:
        """Still in the queue (or will hold a slot): what a delete has to cancel."""
        return self.stuck or self.phase in ("pending", "alive")


@dataclass(frozen=True)
class JobRequest:
    """Everything one job's script says, resolved from the manifest (system-neutral)."""

    name: str
    identity: dict[str, str]  # lineage, address, key
    queue: str | None
    account: str | None
    walltime: int  # seconds
    cores: int
    memory: int | None  # bytes; None = the queue's default
    log_directory: str
    command: Sequence[str]
    extra_directives: Sequence[str] = ()
    prologue: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    python: str = "python3"
    resource_spec: str | None = None
    parallel_environment: str | None = None
    disk: int | None = None


def lifetime(walltime: int, margin: float) -> tuple[float, float]:
    """Worker ``--lifetime`` and ``--lifetime-stagger`` for a job of ``walltime`` seconds.

    Workers retire (moving their data to other workers) ``margin`` seconds before the
    batch system would kill the job. The margin is capped at a quarter of the walltime so
    short jobs still do work; the stagger (a quarter of the margin) spreads retirements so
    jobs that started together do not leave all at once, and is small enough that
    lifetime + stagger stays before the walltime.
    """
    m = min(float(margin), walltime / 4.0)
    return walltime - m, m / 4.0


def shell_join(argv: Sequence[str]) -> str:
    """Quote for bash, leaving our run-time tokens to expand."""
    return " ".join(f'"{a}"' if a in _RAW_TOKENS else shlex.quote(a) for a in argv)


def hms(seconds: int) -> str:
    """``H:MM:SS`` (hours may exceed 24), what SGE, PBS and HTCondor accept."""
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def script_prologue(req: JobRequest, job_id_var: str) -> list[str]:
    """Environment and a per-job local directory, removed when the job ends."""
    lines = list(req.prologue)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(req.env.items())]
    lines += [
        f'export SCALABLE_JOB_ID="${{{job_id_var}}}"',
        f'export SCALABLE_LOCAL_DIR="{LOCAL_DIR}"',
        'mkdir -p "$SCALABLE_LOCAL_DIR" && trap \'rm -rf "$SCALABLE_LOCAL_DIR"\' EXIT',
    ]
    return lines


def job_script_text(
    req: JobRequest,
    job_id_var: str,
    *,
    header: Sequence[str],
    directive: str,
    skip: Sequence[str] = (),
    extra: Sequence[str] = (),
    shebang: str = "#!/usr/bin/env bash",
) -> str:
    """A job script in dask-jobqueue's format (``Job._script_template``), written here.

    ``header`` is the system's own directive lines in its job class's order; a line
    containing any ``skip`` string is dropped (dask-jobqueue's substring-based
    ``job_directives_skip``), then each of ``extra`` follows as ``<directive> <extra>``
    (never skipped). Then the prologue (empty lines left out) and the worker command.

    Written out rather than built by dask-jobqueue's job classes: importing dask_jobqueue
    imports distributed and numpy (~0.9 s on 2 cores) on apply's path before the first
    submit, and its Job creates the log folder as a side effect (the batch provider makes
    it where it writes the script). ``tests/unit/test_batch_systems.py`` holds each system
    to its dask-jobqueue class's text, byte for byte. Every key is explicit: nothing is
    filled from a user's ``jobqueue.yaml`` behind the plan's back.
    """
    lines = [ln for ln in header if not any(s in ln for s in skip)]
    lines += [f"{directive} {e}" for e in extra]
    prologue = "\n".join(filter(None, script_prologue(req, job_id_var)))
    return f"{shebang}\n\n" + "\n".join(lines) + f"\n{prologue}\n{shell_join(req.command)}\n"


class BatchSystem(ABC):
    """Command lines and parsers of one batch system.

    ``verified`` says whether this system's integration tests run against a real
    installation here (Slurm, SGE) or only against recorded outputs from its
    documentation (PBS, LSF, HTCondor).
    """

    name: str = ""
    label: str = ""
    job_type: str = ""
    submit_prog: str = ""
    status_prog: str = ""
    cancel_prog: str = ""
    verified: bool = False
    install_hint: str = "run scalable where the batch system's client commands are (a login node)"

    # -- scripts ---------------------------------------------------------------------
    @abstractmethod
    def render(self, req: JobRequest) -> str:
        """The exact job script (or submit description) for one job."""

    def script_suffix(self) -> str:
        return ".sh"

    # -- command lines ---------------------------------------------------------------
    def submit_argv(self, script: Path) -> list[str]:
        return [self.submit_prog, str(script)]

    @abstractmethod
    def parse_submit(self, out: str) -> str:
        """The new job's id from the submit command's output."""

    def user(self) -> str:
        import getpass

        return os.environ.get("USER") or getpass.getuser()

    @abstractmethod
    def status_argv(self) -> list[str]:
        """List this user's jobs (all states the system still shows)."""

    @abstractmethod
    def parse_status(self, text: str) -> list[BatchJob]:
        """Jobs from the status command's output."""

    def list_jobs(self) -> list[BatchJob]:
        return self.parse_status(self.run(self.status_argv()))

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return [self.cancel_prog, *ids]

    def already_gone(self, message: str) -> bool:
        """Whether a cancel failure only says the job had ended (not an error)."""
        low = message.lower()
        return any(
            w in low
            for w in ("does not exist", "unknown job", "not found", "already", "invalid job")
        )

    def cancel(self, ids: Sequence[str]) -> None:
        ids = [i for i in ids if i]
        if not ids:
            return
        try:
            self.run(self.cancel_argv(ids))
        except ProviderError as exc:
            if not self.already_gone(exc.message):
                raise

    def ended(self, job_id: str) -> str | None:
        """Why a job no longer listed ended, from the system's accounting (None: unknown)."""
        return None

    def ping(self) -> None:
        """Fail with a clear message unless the system answers (one status call)."""
        self.run(self.status_argv(), timeout=30.0)

    def preflight(self, queues: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Check what the system can tell before any submission (queues exist…)."""

    def identity_directives(self, identity: Mapping[str, str]) -> list[str]:
        """Directives that carry our identity fields, where the system has a place."""
        return []

    # -- running ---------------------------------------------------------------------
    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str]) -> str:
        """Submit one script; the new job's id."""
        return self.parse_submit(self.run(self.submit_argv(script), cwd=cwd, env=env))

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> str:
        """Run a client command; its stdout, or a ProviderError in the system's words."""
        prog = argv[0]
        if shutil.which(prog) is None:
            raise ProviderError(
                f"{prog} not found: no {self.label} client commands on PATH", hint=self.install_hint
            )
        try:
            proc = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                input=stdin if stdin is not None else "",
            )
        except subprocess.TimeoutExpired:
            raise ProviderError(
                f"{prog} did not answer within {timeout:g}s", hint=f"is the {self.label} master up?"
            ) from None
        if proc.returncode != 0:
            raise ProviderError(
                f"{prog} failed: {message(proc.stderr or proc.stdout)}",
                hint=self.hint_for(proc.stderr or proc.stdout),
            )
        return proc.stdout

    def hint_for(self, text: str) -> str | None:
        return None


def message(text: str) -> str:
    """The most telling line of a client command's complaint."""
    lines = [
        ln.strip() for ln in text.strip().splitlines() if ln.strip() and ln.strip() != "Exiting."
    ]
    if not lines:
        return "no message"
    errors = [
        ln
        for ln in lines
        if any(w in ln.lower() for w in ("error", "denied", "unable", "rejected", "invalid"))
    ]
    line = errors[0] if errors else lines[-1]
    for prefix in ("error: ", "Unable to run job: "):
        if line.startswith(prefix):
            line = line[len(prefix) :]
    return line
