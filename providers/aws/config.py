"""The AWS provider's manifest keys (EC2 and Fargate)."""


from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, StrictBool
from scalable.manifest.schema import (
    GIB,
    Cidr,
    GroupConfig,
    Processes,
    Size,
    StrictModel,
    TargetConfig,
    Text,
    _finite,
)

AwsName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$")]


class AwsKeys(StrictModel):
    MAX_WORKERS: ClassVar[int] = 5000  # instances or tasks per group

    processes: Processes = 1
    instance_type: str = Field(default="m6i.large", pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")
    cpu: Annotated[float, AfterValidator(_finite)] | None = Field(
        default=None, gt=0, le=16, description="Fargate vCPUs per task"
    )
    memory: Size | None = Field(
        default=None, gt=0, le=120 * GIB, description="Fargate memory per task"
    )
    spot: StrictBool | Literal["fallback"] = False
    # EC2: alternatives tried in order when AWS has no capacity for one (the first is
    # what `plan` prices); see docs/guides/resilience.rst.
    instance_types: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$")]] | None = (
        Field(default=None, min_length=1, max_length=20)
    )


class AwsGroup(AwsKeys, GroupConfig):
    pass


class AwsTarget(AwsKeys, TargetConfig):
    launch_type: Literal["ec2", "fargate"] = "ec2"
    region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z0-9]+){1,3}$")
    subnets: list[AwsName] = Field(default_factory=list, max_length=64)
    security_groups: list[AwsName] = Field(default_factory=list, max_length=5)
    allowed_cidrs: list[Cidr] = Field(default_factory=list, max_length=64)
    iam_instance_profile: AwsName | None = None
    execution_role: str | None = Field(
        default=None,
        pattern=r"^arn:[^\s]{1,2040}$",
        description="Fargate task execution role ARN; enables CloudWatch Logs for the tasks",
    )
    # AWS tags of every resource (not worker tags): AWS allows 50 per resource.
    tags: dict[Annotated[str, Field(max_length=128)], Annotated[Text, Field(max_length=256)]] = (
        Field(default_factory=dict, max_length=40)
    )
