"""What one batch system is, to the shared batch provider: how to submit a script, list
jobs, cancel them, and write a job script (dask-jobqueue's job class for that system).

A :class:`BatchSystem` is a small table of command lines and parsers; everything else
(which jobs a target needs, identity, refresh, drift, walltime → lifetime, deletes) is
the same for every system and lives in :mod:`scalable.providers.batch.provider`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


def jobqueue_script(
    job_class: Any, req: JobRequest, job_id_var: str, *, command: str | None = None, **kwargs: Any
) -> str:
    """The script of dask-jobqueue's ``job_class`` with our worker command in it.

    Keys the request leaves unset are passed explicitly so a user's ``jobqueue.yaml``
    cannot fill them in behind the plan's back.
    """

    class _Job(job_class):
        def __init__(self, command: str, **kw: object) -> None:
            super().__init__(**kw)
            self._command_template = command

    base: dict[str, Any] = {
        "scheduler": "(set by scalable)",
        "name": req.name,
        "cores": req.cores,
        "memory": f"{req.memory or 2**30}B",
        "processes": 1,
        "job_script_prologue": script_prologue(req, job_id_var),
        "log_directory": req.log_directory,
        "shebang": "#!/usr/bin/env bash",
        "python": req.python,
        "job_name": req.name,
        "interface": None,
        "death_timeout": None,
        "local_directory": None,
        "worker_extra_args": [],
        "env_extra": None,
        "job_extra": None,
        "header_skip": None,
        "extra": None,
    }
    base.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        job = _Job(command=command or shell_join(req.command), **base)
    text: str = job.job_script()
    return text


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
