"""Manifest keys of batch-system targets: what every batch system shares (``JobKeys``,
``JobTarget``: Slurm's provider builds on them) and the few SGE, PBS/Torque, LSF and
HTCondor job scripts add (one model for those four; see docs/guides/batch-systems).
"""


from typing import Annotated, ClassVar

from pydantic import Field, model_validator
from scalable.manifest.schema import (
    DAY,
    Duration,
    GroupConfig,
    Line,
    Memory,
    Processes,
    StrictModel,
    TargetConfig,
    Text,
    Walltime,
)

# Queue/partition and account names as the batch systems take them (a comma separates
# Slurm partitions).
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+,@-]{0,127}$")]


class JobKeys(StrictModel):
    """A group's job shape, on any batch system."""

    MAX_WORKERS: ClassVar[int] = 10_000  # jobs per group

    processes: Processes = 1
    queue: QueueName | None = None
    account: QueueName | None = None
    walltime: Walltime = Field(default=3600, le=int(365 * DAY))
    cores: int | None = Field(default=None, ge=1, le=4096)
    memory: Memory | None = None
    job_extra_directives: list[Line] = Field(default_factory=list, max_length=256)
    job_script_prologue: list[Text] = Field(default_factory=list, max_length=256)
    array: bool = Field(
        default=False, strict=True,
        description="submit a group as one job array (one id, N tasks; Slurm only)",
    )
    nodes: int = Field(
        default=1, ge=1, le=1024,
        description="nodes per allocation (Slurm only): one job of `nodes` nodes, srun "
                    "starting `processes` workers on each; groups scale in whole allocations",
    )


class JobTarget(JobKeys, TargetConfig):
    """A batch target's own keys: where the scheduler listens, caps, the retire margin."""

    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,32}$")
    python: Text | None = None
    lifetime_margin: Duration = Field(default=300.0, ge=0, le=DAY)
    max_jobs_queued: int | None = Field(
        default=None, ge=1, le=100_000,
        description="at most this many of the target's jobs queued at once",
    )
    max_jobs_running: int | None = Field(
        default=None, ge=1, le=100_000,
        description="at most this many of the target's jobs running at once",
    )

    @model_validator(mode="after")
    def _margin_below_walltime(self) -> "JobTarget":
        # Only a margin the user set is held to this: the default is capped at a quarter
        # of a short walltime (batch.system.lifetime), so short test jobs still work.
        if "lifetime_margin" not in self.model_fields_set:
            return self
        walltimes = {"the target": self.walltime}
        for name, g in self.groups.items():
            if "walltime" in g.model_fields_set and isinstance(g, JobKeys):
                walltimes[f"group {name}"] = g.walltime
        for who, walltime in walltimes.items():
            if self.lifetime_margin >= walltime:
                raise ValueError(
                    f"lifetime_margin ({self.lifetime_margin:g}s) must be shorter than the "
                    f"walltime of {who} ({walltime}s): workers retire that long before it"
                )
        return self


class BatchKeys(JobKeys):
    resource_spec: Text | None = Field(
        default=None, description="SGE/PBS `-l` resource request, verbatim (site-specific)"
    )
    parallel_environment: Text | None = Field(
        default=None, description="SGE parallel environment for jobs of more than one core"
    )
    disk: Memory | None = Field(default=None, description="HTCondor disk request per job")


class BatchGroup(BatchKeys, GroupConfig):
    pass


class BatchTarget(BatchKeys, JobTarget):
    pass
