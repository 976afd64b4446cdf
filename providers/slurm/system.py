"""Slurm as a :class:`~scalable.providers.batch.system.BatchSystem`: what the shared batch
base needs to know (names, command lines, squeue rows as batch jobs).

The Slurm provider keeps its own refresh and submission paths on top (arrays, a
scheduler in a job, ``sbatch --test-only``), but its shapes, prices, caps, scheduler
address, TLS flags and job environment are the base's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from scalable.providers.batch.system import BatchJob, BatchSystem, JobRequest, Phase
from scalable.providers.slurm import commands as slurm
from scalable.providers.slurm import script as scripts

PENDING_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESV_DEL_HOLD",
        "SUSPENDED",
        "STOPPED",
    }
)
ALIVE_STATES = frozenset({"RUNNING", "RESIZING", "SIGNALING", "STAGE_OUT"})


def phase_of(state: str) -> Phase:
    if state in ALIVE_STATES:
        return "alive"
    if state in PENDING_STATES:
        return "pending"
    if state == "COMPLETING":
        return "ending"
    return "gone"


def batch_job(job: slurm.Job) -> BatchJob:
    """One squeue row as the base sees it; identity from our comment (array tasks too)."""
    fields = scripts.parse_comment(job.comment)
    identity = None
    if fields is not None:
        task = scripts.task_identity(fields, job.array_task)
        address, key = task or (fields["address"], fields["key"])
        identity = {"lineage": fields["lineage"], "address": address, "key": key}
    reason = job.reason if job.reason not in ("", "None", "(null)") else ""
    return BatchJob(
        id=job.id,
        name=job.name,
        state=job.state,
        phase=phase_of(job.state),
        reason=reason,
        nodes=job.nodes,
        identity=identity,
    )


class SlurmSystem(BatchSystem):
    name = "slurm"
    label = "Slurm"
    job_type = "slurm.job"
    submit_prog = "sbatch"
    status_prog = "squeue"
    cancel_prog = "scancel"
    verified = True
    install_hint = slurm.INSTALL_HINT

    def render(self, req: JobRequest) -> str:
        return scripts.render(
            scripts.JobShape(
                job_name=req.name,
                comment=scripts.comment(
                    req.identity["lineage"], req.identity["address"], req.identity["key"]
                ),
                wckey=scripts.wckey(req.identity["lineage"]),
                partition=req.queue,
                account=req.account,
                walltime=req.walltime,
                cores=req.cores,
                memory=req.memory,
                log_directory=req.log_directory,
                worker_command=req.command,
                extra_directives=list(req.extra_directives),
                prologue=list(req.prologue),
                env=dict(req.env),
                python=req.python,
            )
        )

    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str]) -> str:
        return slurm.sbatch(script, cwd=cwd, env=env)

    def submit_argv(self, script: Path) -> list[str]:
        return ["sbatch", "--parsable", str(script)]

    def parse_submit(self, out: str) -> str:
        return out.strip().splitlines()[-1].split(";")[0]

    def status_argv(self) -> list[str]:
        return ["squeue", "-h", "-r", "-t", "all", "--me"]

    def parse_status(self, text: str) -> list[BatchJob]:
        return [batch_job(j) for j in slurm.parse_squeue(text)]

    def list_jobs(self) -> list[BatchJob]:
        return [batch_job(j) for j in slurm.squeue(all_states=True, mine=True)]

    def cancel(self, ids: Sequence[str]) -> None:
        slurm.scancel(ids)

    def ping(self) -> None:
        slurm.ping()
