"""The manifest schema (pydantic v2): the one place that says which keys exist.

Every provider's keys are here, so a manifest for any target validates on any machine;
the providers' code only reads the validated models.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from scalable.units import parse_duration, parse_size, parse_walltime


def _size(v: Any) -> int:
    return parse_size(v)


def _duration(v: Any) -> float:
    return parse_duration(v)


def _walltime(v: Any) -> int:
    return parse_walltime(v)


Size = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["4GiB", "512MiB", "4 GB"]}),
]
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema({"type": ["string", "number"], "examples": ["30s", "5m", "2h"]}),
]
Walltime = Annotated[
    int,
    BeforeValidator(_walltime),
    WithJsonSchema(
        {"type": ["string", "integer"], "examples": ["04:00:00", "1-12:00:00", 90]}
    ),
]
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Project(_Strict):
    name: str = Field(default="scalable", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Adaptive(_Strict):
    """Adaptive scaling bounds and the controller's pacing (see docs/scaling)."""

    minimum: NonNegativeInt = 0
    maximum: PositiveInt
    interval: Duration = 1.0
    cooldown: Duration = 30.0
    wait_count: PositiveInt = 3
    max_scale_down_fraction: float = Field(default=0.5, gt=0, le=1)
    target_duration: Duration = 5.0

    @model_validator(mode="after")
    def _bounds(self) -> Adaptive:
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) is above maximum ({self.maximum})")
        return self


class Objectives(_Strict):
    budget_usd: float | None = Field(default=None, gt=0)
    deadline_hours: float | None = Field(default=None, gt=0)
    # What happens when a run's spend reaches budget_usd (docs/guides/scaling.rst).
    on_budget: Literal["stop", "destroy"] = "stop"


class Workload(_Strict):
    """An estimate of the work where telemetry has no history yet."""

    tasks: PositiveInt | None = None
    task_seconds: float | None = Field(default=None, gt=0)
    serial_fraction: float = Field(default=0.0, ge=0, lt=1)
    tag: str | None = None


class Pricing(_Strict):
    hourly_usd: float | None = Field(default=None, ge=0)
    discount: float = Field(default=0.0, ge=0, lt=1)
    core_hour_usd: float | None = Field(default=None, ge=0)


class StateBackend(_Strict):
    backend: Literal["local", "s3", "gcs"] = "local"
    bucket: str | None = None
    key: str | None = None  # s3: a prefix, or the object itself when it ends in .json
    prefix: str | None = None  # gcs: the same, in Terraform's gcs backend's word
    region: str | None = None

    @model_validator(mode="after")
    def _remote(self) -> StateBackend:
        if self.backend in ("s3", "gcs") and not self.bucket:
            raise ValueError(f"the {self.backend} backend needs a 'bucket'")
        if self.backend != "s3" and (self.key is not None or self.region is not None):
            raise ValueError(f"'key' and 'region' are s3 settings; the {self.backend} "
                             "backend does not take them" +
                             (" (use 'prefix')" if self.backend == "gcs" else ""))
        if self.backend != "gcs" and self.prefix is not None:
            raise ValueError("'prefix' is a gcs setting" +
                             (" (s3 uses 'key')" if self.backend == "s3" else ""))
        return self


class CacheConfig(_Strict):
    """Result caching of ``@cacheable`` calls on this target's workers
    (docs/guides/caching.rst); each key becomes a ``SCALABLE_CACHE_*`` variable."""

    enabled: StrictBool = True
    directory: str | None = Field(
        default=None, description="local cache folder (relative: to the manifest's folder)")
    remote: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,62}(/.*)?$",
        description="shared cache behind the local one: s3://bucket/prefix/")
    size_limit: Size | None = Field(
        default=None, description="evict least recently used entries beyond this size")
    tags: dict[str, StrictBool] = Field(
        default_factory=dict, description="per task tag: false = never cache its calls")


# -- counts and worker shape, shared by targets and groups -----------------------------


class _Counts(_Strict):
    max_workers: NonNegativeInt | None = None
    adaptive: Adaptive | None = None
    threads_per_worker: PositiveInt = 1
    memory_per_worker: Size | None = None
    worker_extra_args: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_count(self) -> _Counts:
        if self.max_workers is not None and self.adaptive is not None:
            raise ValueError(
                "set either max_workers (a fixed count) or adaptive (a range), not both"
            )
        return self


class _Container(_Strict):
    containers: Literal["none", "apptainer", "docker"] = "none"
    image: str | None = None


# -- provider-specific sizing keys (a group may override them) -------------------------


class _LocalKeys(_Strict):
    processes: StrictBool = True


class _SlurmKeys(_Strict):
    processes: PositiveInt = 1
    queue: str | None = None
    account: str | None = None
    walltime: Walltime = 3600
    cores: PositiveInt | None = None
    memory: Size | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)


class _AwsKeys(_Strict):
    processes: PositiveInt = 1
    instance_type: str = "m6i.large"
    cpu: float | None = Field(default=None, gt=0, description="Fargate vCPUs per task")
    memory: Size | None = Field(default=None, description="Fargate memory per task")
    spot: StrictBool | Literal["fallback"] = False


class _GkeKeys(_Strict):
    processes: PositiveInt = 1
    machine_type: str = "e2-standard-4"
    spot: StrictBool = False


class LocalGroup(_Counts, _LocalKeys):
    tags: list[str] = Field(default_factory=list)


class SlurmGroup(_Counts, _SlurmKeys):
    tags: list[str] = Field(default_factory=list)


class AwsGroup(_Counts, _AwsKeys):
    tags: list[str] = Field(default_factory=list)


class GkeGroup(_Counts, _GkeKeys):
    tags: list[str] = Field(default_factory=list)


class _TargetCommon(_Counts, _Container):
    objectives: Objectives | None = None
    workload: Workload | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    state: StateBackend | None = None
    tls: StrictBool | None = Field(
        default=None, description="Dask TLS between scheduler, workers and clients"
    )
    env: dict[str, str] = Field(default_factory=dict)
    cache: CacheConfig | None = None


class LocalTarget(_TargetCommon, _LocalKeys):
    provider: Literal["local"]
    host: str = Field(
        default="127.0.0.1",
        description="address every listener (scheduler, workers, nannies, dashboards) binds",
    )
    allow_insecure_listen: StrictBool = Field(
        default=False,
        description="accept a non-loopback host without TLS (anyone who can reach it can "
        "run code as you)",
    )
    worker_dashboard: StrictBool = Field(
        default=False, description="serve each worker's dashboard (off: faster start)"
    )
    groups: dict[str, LocalGroup] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exposure(self) -> LocalTarget:
        if is_loopback(self.host) or self.tls or self.allow_insecure_listen:
            return self
        raise ValueError(
            f"host {self.host!r} is not a loopback address and tls is off: anyone who can "
            "reach it could run code as you (set tls: true, or allow_insecure_listen: true "
            "to accept that)"
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SchedulerPlacement(_Strict):
    placement: Literal["local", "job"] = "local"


class SlurmTarget(_TargetCommon, _SlurmKeys):
    provider: Literal["slurm"]
    interface: str | None = None
    python: str | None = None
    scheduler: SchedulerPlacement = Field(default_factory=SchedulerPlacement)
    lifetime_margin: Duration = 300.0
    groups: dict[str, SlurmGroup] = Field(default_factory=dict)


class AwsTarget(_TargetCommon, _AwsKeys):
    provider: Literal["aws"]
    launch_type: Literal["ec2", "fargate"] = "ec2"
    region: str | None = None
    subnets: list[str] = Field(default_factory=list)
    security_groups: list[str] = Field(default_factory=list)
    allowed_cidrs: list[str] = Field(default_factory=list)
    iam_instance_profile: str | None = None
    execution_role: str | None = Field(
        default=None, pattern=r"^arn:",
        description="Fargate task execution role ARN; enables CloudWatch Logs for the tasks",
    )
    tags: dict[str, str] = Field(default_factory=dict)
    idle_timeout: Duration | Literal[False] = 3600.0
    groups: dict[str, AwsGroup] = Field(default_factory=dict)


class GkeTarget(_TargetCommon, _GkeKeys):
    provider: Literal["gke"]
    project: str | None = None
    location: str | None = None
    cluster: str | None = None
    node_pool: str | None = None
    disk_size_gb: PositiveInt = 100
    namespace: str = "default"
    allowed_cidrs: list[str] = Field(
        default_factory=list, description="client networks allowed to reach the scheduler"
    )
    operation_timeout: Duration = Field(
        default=1800.0, description="how long to wait for one GKE node-pool operation"
    )
    groups: dict[str, GkeGroup] = Field(default_factory=dict)


Target = Annotated[
    LocalTarget | SlurmTarget | AwsTarget | GkeTarget, Field(discriminator="provider")
]
TargetModel = LocalTarget | SlurmTarget | AwsTarget | GkeTarget
GroupModel = LocalGroup | SlurmGroup | AwsGroup | GkeGroup
TARGET_CLASSES: dict[str, type[BaseModel]] = {
    "local": LocalTarget,
    "slurm": SlurmTarget,
    "aws": AwsTarget,
    "gke": GkeTarget,
}


class Manifest(_Strict):
    version: Literal[1] = 1
    project: Project = Field(default_factory=Project)
    default_target: str | None = None
    state: StateBackend | None = None
    targets: dict[str, Target] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> Manifest:
        for name in self.targets:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"target name {name!r} must be lower-case letters, digits, '-' or '_'"
                )
            groups = self.targets[name].groups
            for g in groups:
                if not NAME_RE.match(g) or g == "default":
                    raise ValueError(f"group name {g!r} must be a lower-case name, not 'default'")
        if self.default_target is not None and self.default_target not in self.targets:
            raise ValueError(
                f"default_target {self.default_target!r} is not a target "
                f"(targets: {', '.join(self.targets)})"
            )
        return self
