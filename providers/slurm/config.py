"""The Slurm provider's manifest keys."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

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

# Partition and account names as sbatch takes them (a comma separates partitions).
SlurmName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+,-]{0,127}$")]


class SlurmKeys(StrictModel):
    MAX_WORKERS: ClassVar[int] = 10_000  # jobs per group

    processes: Processes = 1
    queue: SlurmName | None = None
    account: SlurmName | None = None
    walltime: Walltime = Field(default=3600, le=int(365 * DAY))
    cores: int | None = Field(default=None, ge=1, le=4096)
    memory: Memory | None = None
    job_extra_directives: list[Line] = Field(default_factory=list, max_length=256)
    job_script_prologue: list[Text] = Field(default_factory=list, max_length=256)


class SlurmGroup(SlurmKeys, GroupConfig):
    pass


class SchedulerPlacement(StrictModel):
    placement: Literal["local", "job"] = "local"


class SlurmTarget(SlurmKeys, TargetConfig):
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:@-]{1,32}$")
    python: Text | None = None
    scheduler: SchedulerPlacement = Field(default_factory=SchedulerPlacement)
    lifetime_margin: Duration = Field(default=300.0, ge=0, le=DAY)

    @model_validator(mode="after")
    def _margin_below_walltime(self) -> SlurmTarget:
        walltimes = {"the target": self.walltime}
        for name, g in self.groups.items():
            if "walltime" in g.model_fields_set and isinstance(g, SlurmKeys):
                walltimes[f"group {name}"] = g.walltime
        for who, walltime in walltimes.items():
            if self.lifetime_margin >= walltime:
                raise ValueError(
                    f"lifetime_margin ({self.lifetime_margin:g}s) must be shorter than the "
                    f"walltime of {who} ({walltime}s): workers retire that long before it"
                )
        return self
