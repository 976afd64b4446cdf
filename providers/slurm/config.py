"""The Slurm provider's manifest keys."""


from typing import Literal

from pydantic import Field
from scalable.manifest.schema import (
    DAY,
    Duration,
    GroupConfig,
    StrictModel,
)
from scalable.providers.batch.config import JobKeys, JobTarget, QueueName

SlurmName = QueueName


class SlurmKeys(JobKeys):
    """A Slurm group's keys: the batch systems' job shape (``array`` is Slurm's)."""


class SlurmGroup(SlurmKeys, GroupConfig):
    pass


class SchedulerPlacement(StrictModel):
    placement: Literal["local", "job"] = "local"


class SlurmTarget(SlurmKeys, JobTarget):
    scheduler: SchedulerPlacement = Field(default_factory=SchedulerPlacement)
    allocation_grace: Duration = Field(
        default=120.0, ge=0, le=DAY,
        description="a running multi-node allocation short of workers is drift only "
        "after this long (its workers start and register within it)",
    )
