"""The GKE provider's manifest keys."""


import re
from typing import Annotated, ClassVar

from pydantic import Field, StrictBool
from scalable.manifest.schema import (
    DAY,
    Cidr,
    Duration,
    GroupConfig,
    Processes,
    StrictModel,
    TargetConfig,
    Text,
)

_MACHINE = r"^[a-z0-9][a-z0-9-]{0,63}$"


class GkeKeys(StrictModel):
    MAX_WORKERS: ClassVar[int] = 5000  # worker pods per group

    processes: Processes = 1
    machine_type: str = Field(default="e2-standard-4", pattern=_MACHINE)
    spot: StrictBool = False
    # Alternatives tried in order when GCE has no capacity for one (GCE_STOCKOUT,
    # ZONE_RESOURCE_POOL_EXHAUSTED); the first is what `plan` prices, as EC2's
    # instance_types (docs/guides/resilience.rst).
    machine_types: list[Annotated[str, Field(pattern=_MACHINE)]] | None = Field(
        default=None, min_length=1, max_length=20)


class GkeGroup(GkeKeys, GroupConfig):
    pass


class GkeTarget(GkeKeys, TargetConfig):
    project: Text | None = None
    location: str | None = Field(default=None, pattern=r"^[a-z0-9-]{1,63}$")
    cluster: str | None = Field(default=None, pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
    node_pool: str | None = Field(default=None, pattern=r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
    # Zones tried in order for each machine type (a pool in one zone at a time), when GCE
    # has no capacity in one; default: the cluster's zones, all at once.
    zones: list[Annotated[str, Field(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")]] | None = Field(
        default=None, min_length=1, max_length=20)
    disk_size_gb: int = Field(default=100, ge=10, le=65536)
    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    allowed_cidrs: list[Cidr] = Field(
        default_factory=list,
        max_length=64,
        description="client networks allowed to reach the scheduler",
    )
    operation_timeout: Duration = Field(
        default=1800.0,
        gt=0,
        le=DAY,
        description="how long to wait for one GKE node-pool operation",
    )

    @classmethod
    def group_key(cls, name: str) -> str:
        # Node pools and StatefulSets are DNS labels (see provider.dns_name): '_' → '-'.
        return re.sub(r"-{2,}", "-", name.replace("_", "-")).strip("-")
