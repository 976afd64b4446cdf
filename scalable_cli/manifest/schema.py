"""The manifest schema (pydantic v2): the keys every target shares, and the assembly.

Each provider declares its own keys (a ``TargetConfig`` and a ``GroupConfig`` subclass,
see ``Provider.target_model``); ``manifest_model`` assembles the manifest's model from
the providers the manifest names, so a provider installed through the
``scalable.providers`` entry point is usable from a manifest, and a provider's schema is
built only when a target uses it (``scalable schema`` assembles all of them).

Every number has bounds, written where the key is declared, and the limit is in the
error: a count of workers, a size or a duration out of range is refused at ``validate``
rather than reaching a provider (or ``MemoryError``).
"""


import contextlib
import functools
import ipaddress
import math
import os
import re
import sys
import types
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from scalable.registry import provider_models
from scalable.units import parse_duration, parse_size, parse_walltime

# -- value types --------------------------------------------------------------------------

KIB, GIB, TIB = 2**10, 2**30, 2**40
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["4GiB", "512MiB", "4 GB"]}),
]
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    AfterValidator(_finite),
    WithJsonSchema({"type": ["string", "number"], "examples": ["30s", "5m", "2h"]}),
]
Walltime = Annotated[
    int,
    BeforeValidator(parse_walltime),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["04:00:00", "1-12:00:00", 90]}),
]


def empty_list() -> list[Any]:
    """``default_factory=list`` for a model's field, without its cost at start-up.

    pydantic inspects a default factory's signature (does it take the validated data?),
    and ``list`` has only a text signature, which ``inspect`` parses with ``tokenize``:
    compiling tokenize's expressions is about 7 ms of a cold ``scalable plan``."""
    return []


Money = Annotated[float, AfterValidator(_finite), Field(ge=0, le=1e9)]
Fraction = Annotated[float, AfterValidator(_finite), Field(ge=0, lt=1)]
# A name as the file writes it: ``fullmatch`` (``re.match(...$)`` accepts "gpu\n", which
# would split an #SBATCH line). Pydantic patterns use Rust's regex, where ``$`` is the
# end of the text.
NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
Text = Annotated[str, Field(max_length=4096)]
Memory = Annotated[Size, Field(gt=0, le=64 * TIB)]
Threads = Annotated[int, Field(ge=1, le=1024)]
Processes = Annotated[int, Field(ge=1, le=256)]
# One line: a value that lands in a batch script line (#SBATCH …) must not split it.
Line = Annotated[str, Field(max_length=1024, pattern=r"^[^\n\r]*$")]
# A GPU model as the backends spell it (Slurm's GRES type "a100", GKE's accelerator
# "nvidia-l4"): it lands in ``--gres=gpu:<type>:N`` and API fields, so no ':' or spaces.
GpuType = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Gpus = Annotated[int, Field(ge=0, le=64)]

# POSIX shell variable names: they are written into job scripts and user data as
# ``export NAME=…``, so anything else would be shell code (``X=1; echo pwned #``).
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(v: str) -> str:
    if not ENV_NAME_RE.fullmatch(v):
        raise ValueError(
            f"environment variable name {v!r} is not a POSIX name (letters, digits and "
            "'_', not starting with a digit)"
        )
    return v


def _env_value(v: str) -> str:
    if "\x00" in v:
        raise ValueError("an environment variable value cannot hold a NUL character")
    return v


EnvName = Annotated[str, AfterValidator(_env_name)]
EnvValue = Annotated[str, AfterValidator(_env_value)]


def _cidr(v: str) -> str:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise ValueError(
            f"{v!r} is not a CIDR block (e.g. 10.0.0.0/16 or 203.0.113.7/32)"
        ) from None
    return v


Cidr = Annotated[str, AfterValidator(_cidr)]


class StrictModel(BaseModel):
    """Base of every manifest block: unknown keys are errors; values are frozen."""

    # defer_build: each block is validated as part of the assembled manifest model, so
    # building every block's own validator at import was wasted start-up (issue 15).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


_Strict = StrictModel


# -- containers ----------------------------------------------------------------------------

# The runtimes a group's workers can run in (scalable/providers/containers.py holds each
# one's command-line template). ``singularity`` is apptainer under its older name.
ContainerRuntime = Literal["none", "apptainer", "singularity", "docker", "podman", "bwrap"]


def _bind_path(v: str) -> str:
    if "\x00" in v or "\n" in v or "\r" in v:
        raise ValueError("a bind path cannot hold a NUL or a line break")
    if not v.startswith("/"):
        raise ValueError(f"bind path {v!r} is not absolute (write it from /)")
    # apptainer's --bind and docker's -v separate fields with ':' (and apptainer lists
    # with ','): such a path would be read as another field, so it is refused.
    if ":" in v or "," in v:
        raise ValueError(f"bind path {v!r} holds ':' or ',', which the runtimes' bind "
                         "syntax (SRC:DST) cannot carry")
    if any(part == ".." for part in v.split("/")):
        raise ValueError(f"bind path {v!r} has a '..' component (write the real path)")
    return v


def _argv_item(v: str) -> str:
    if "\x00" in v or "\n" in v or "\r" in v:
        raise ValueError("an option is one argv item: it cannot hold a NUL or a line break")
    return v


BindPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_bind_path)]
ArgvItem = Annotated[str, Field(max_length=4096), AfterValidator(_argv_item)]
ImageRef = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_argv_item)]


class ContainerConfig(StrictModel):
    """What a group's workers run in: a runtime, an image, host folders bound into it,
    environment and extra runtime options (each one argv item, never shell text)."""

    runtime: ContainerRuntime = "none"
    image: ImageRef | None = Field(
        default=None,
        description="docker/podman: an image reference; apptainer: a .sif or docker:// "
        "URI; bwrap: a root filesystem folder ('/' = this host's)",
    )
    binds: dict[BindPath, BindPath] = Field(
        default_factory=dict, max_length=256, description="host path: container path"
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=256)
    options: list[ArgvItem] = Field(
        default_factory=empty_list, max_length=256,
        description="extra arguments to the runtime, one argv item each",
    )

    @field_validator("options", mode="before")
    @classmethod
    def _no_shell_string(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError("options is a list of argv items, not a shell string "
                             "(write [--cap-drop, ALL], not '--cap-drop ALL')")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ContainerConfig":
        if self.runtime == "none":
            if self.image or self.binds or self.env or self.options:
                raise ValueError("runtime: none runs no container, so image, binds, env "
                                 "and options mean nothing (set a runtime, or remove them)")
            return self
        if not self.image:
            raise ValueError(f"runtime: {self.runtime} needs an image: (bwrap: a root "
                             "filesystem folder, '/' for this host's)")
        if self.runtime == "bwrap" and not self.image.startswith("/"):
            raise ValueError(f"bwrap's image is a root filesystem folder: {self.image!r} "
                             "is not an absolute path")
        if self.runtime in ("apptainer", "singularity"):
            for k, v in self.env.items():
                if "," in v or "\n" in v:
                    raise ValueError(f"env {k}: apptainer's --env cannot carry ',' or a line "
                                     "break in a value")
        seen: dict[str, str] = {}
        for host, inside in self.binds.items():
            if inside.rstrip("/") == "":
                raise ValueError(f"bind {host!r}: the container path cannot be '/'")
            if inside in seen:
                raise ValueError(f"binds {seen[inside]!r} and {host!r} both mount on "
                                 f"{inside!r}")
            seen[inside] = host
        return self

    @property
    def enabled(self) -> bool:
        return self.runtime != "none"

    def summary(self) -> dict[str, Any]:
        """What a plan shows (env by name only: values may be secrets)."""
        out: dict[str, Any] = {"runtime": self.runtime, "image": self.image}
        if self.binds:
            out["binds"] = dict(self.binds)
        if self.env:
            out["env"] = sorted(self.env)
        if self.options:
            out["options"] = list(self.options)
        return out


class Project(_Strict):
    name: str = Field(default="scalable", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Adaptive(_Strict):
    """Adaptive scaling bounds and the controller's pacing (see docs/scaling)."""

    # Upper bounds are the provider's (``_Counts.MAX_WORKERS``); minimum <= maximum.
    minimum: int = Field(default=0, ge=0)
    maximum: int = Field(ge=1)
    interval: Duration = Field(default=1.0, gt=0, le=HOUR)
    cooldown: Duration = Field(default=30.0, ge=0, le=DAY)
    wait_count: int = Field(default=3, ge=1, le=1000)
    max_scale_down_fraction: float = Field(default=0.5, gt=0, le=1)
    target_duration: Duration = Field(default=5.0, gt=0, le=DAY)

    @model_validator(mode="after")
    def _bounds(self) -> "Adaptive":
        if self.minimum > self.maximum:
            raise ValueError(f"minimum ({self.minimum}) is above maximum ({self.maximum})")
        return self

    def clamp(self, n: int) -> int:
        """``n`` workers brought into ``[minimum, maximum]`` (the one place it is done)."""
        return max(self.minimum, min(self.maximum, n))


class Objectives(_Strict):
    budget_usd: Money | None = Field(default=None, gt=0)
    deadline_hours: float | None = Field(default=None, gt=0, le=24 * 366)
    # What happens when a run's spend reaches budget_usd (docs/guides/scaling.rst).
    on_budget: Literal["stop", "destroy"] = "stop"


class Workload(_Strict):
    """An estimate of the work where telemetry has no history yet."""

    tasks: int | None = Field(default=None, ge=1, le=10**9)
    task_seconds: float | None = Field(default=None, gt=0, le=365 * DAY)
    serial_fraction: Fraction = 0.0
    tag: Text | None = None


class Pricing(_Strict):
    hourly_usd: Money | None = None
    discount: Fraction = 0.0
    core_hour_usd: Money | None = None


class StateBackend(_Strict):
    backend: Literal["local", "s3", "gcs"] = "local"
    bucket: Text | None = None
    key: Text | None = None  # s3: a prefix, or the object itself when it ends in .json
    prefix: Text | None = None  # gcs: the same, in Terraform's gcs backend's word
    region: Text | None = None

    @model_validator(mode="after")
    def _remote(self) -> "StateBackend":
        if self.backend in ("s3", "gcs") and not self.bucket:
            raise ValueError(f"the {self.backend} backend needs a 'bucket'")
        if self.backend != "s3" and (self.key is not None or self.region is not None):
            raise ValueError(
                f"'key' and 'region' are s3 settings; the {self.backend} "
                "backend does not take them" + (" (use 'prefix')" if self.backend == "gcs" else "")
            )
        if self.backend != "gcs" and self.prefix is not None:
            raise ValueError(
                "'prefix' is a gcs setting" + (" (s3 uses 'key')" if self.backend == "s3" else "")
            )
        return self


class CacheConfig(_Strict):
    """Result caching of ``@cacheable`` calls on this target's workers
    (docs/guides/caching.rst); each key becomes a ``SCALABLE_CACHE_*`` variable."""

    enabled: StrictBool = True
    directory: Text | None = Field(
        default=None, description="local cache folder (relative: to the manifest's folder)"
    )
    remote: str | None = Field(
        default=None,
        pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,62}(/.*)?$",
        description="shared cache behind the local one: s3://bucket/prefix/",
    )
    size_limit: Annotated[Size, Field(gt=0, le=1024 * TIB)] | None = Field(
        default=None, description="evict least recently used entries beyond this size"
    )
    tags: dict[str, StrictBool] = Field(
        default_factory=dict, description="per task tag: false = never cache its calls"
    )


# -- counts and worker shape, shared by targets and groups ----------------------------------


class _Counts(_Strict):
    # The most workers (of one group) a provider will plan; a provider's keys raise or
    # lower it. Above it is a typo, not capacity (and a plan of 10^12 would never end).
    MAX_WORKERS: ClassVar[int] = 1000

    max_workers: int | None = Field(default=None, ge=0)
    adaptive: Adaptive | None = None
    threads_per_worker: Threads = 1
    memory_per_worker: Memory | None = None
    worker_extra_args: list[Text] = Field(default_factory=empty_list, max_length=256)
    # GPUs each worker gets; every such worker advertises the Dask resource GPU=<gpus>
    # (docs/guides/worker-groups.rst, "GPUs and hardware"). 0: a CPU worker.
    gpus: Gpus = 0
    gpu_type: GpuType | None = Field(
        default=None,
        description="GPU model: a Slurm GRES type, an EC2 GPU (a10g, l4, a100…) or a GKE "
                    "accelerator (nvidia-l4…); only used where gpus >= 1",
    )
    container: ContainerConfig | None = Field(
        default=None,
        description="what the workers run in (a group's replaces the target's as a whole)",
    )

    @field_validator("max_workers")
    @classmethod
    def _max_workers_cap(cls, v: int | None) -> int | None:
        if v is not None and v > cls.MAX_WORKERS:
            raise ValueError(f"{v:,} is above this provider's limit of {cls.MAX_WORKERS:,}")
        return v

    @field_validator("adaptive")
    @classmethod
    def _adaptive_cap(cls, v: Adaptive | None) -> Adaptive | None:
        if v is not None and v.maximum > cls.MAX_WORKERS:
            raise ValueError(
                f"maximum {v.maximum:,} is above this provider's limit of {cls.MAX_WORKERS:,}"
            )
        return v

    @model_validator(mode="after")
    def _one_count(self) -> "_Counts":
        if self.max_workers is not None and self.adaptive is not None:
            raise ValueError(
                "set either max_workers (a fixed count) or adaptive (a range), not both"
            )
        return self


class GroupConfig(_Counts):
    """What every group may set: counts, worker shape, tags. A provider's group model
    adds its own keys; a group inherits every key it does not set from its target."""

    tags: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=empty_list, max_length=256
    )


class TargetConfig(_Counts):
    """What every target may set. A provider's target model adds its own keys."""

    provider: str
    # The older spelling of a target-wide container (``container: {runtime, image}``);
    # kept as the default every group inherits. ``container:`` is the full form.
    containers: Literal["none", "apptainer", "docker"] = "none"
    image: Text | None = None
    objectives: Objectives | None = None
    workload: Workload | None = None
    pricing: Pricing = Field(default_factory=Pricing)
    state: StateBackend | None = None
    tls: StrictBool | None = Field(
        default=None, description="Dask TLS between scheduler, workers and clients"
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    # The scheduler's leak guard (Dask's --idle-timeout): it exits after this long with
    # no work, and its workers follow (--death-timeout). false turns it off.
    idle_timeout: Annotated[Duration, Field(gt=0, le=30 * DAY)] | Literal[False] = 3600.0
    cache: CacheConfig | None = None
    groups: dict[str, GroupConfig] = Field(default_factory=dict, max_length=100)

    @model_validator(mode="after")
    def _one_container_spelling(self) -> "TargetConfig":
        if self.container is not None and self.containers != "none":
            raise ValueError("set either container: (the full form) or containers:/image: "
                             "(the older one), not both")
        return self

    def default_container(self) -> ContainerConfig | None:
        """The container every group inherits: ``container:``, else the older
        ``containers:``/``image:`` pair (an image-less one is a provider's to judge)."""
        if self.container is not None:
            return self.container if self.container.enabled else None
        if self.containers == "none":
            return None
        return ContainerConfig.model_construct(runtime=self.containers, image=self.image,
                                               binds={}, env={}, options=[])

    @classmethod
    def group_key(cls, name: str) -> str:
        """The name a group's resources get on the backend. Providers that rewrite names
        (GKE: DNS labels, ``_`` → ``-``) override it, so that two groups whose names
        collide there are refused at validate."""
        return name

    @field_validator("groups")
    @classmethod
    def _group_names(cls, groups: dict[str, GroupConfig]) -> dict[str, GroupConfig]:
        seen: dict[str, str] = {}
        for g in groups:
            if not NAME_RE.fullmatch(g) or g == "default":
                raise ValueError(
                    f"group name {g!r} must be lower-case letters, digits, '-' or '_' "
                    "(at most 40, starting with a letter), and not 'default'"
                )
            key = cls.group_key(g)
            if key in seen:
                raise ValueError(
                    f"groups {seen[key]!r} and {g!r} would both be named {key!r} by this provider"
                )
            seen[key] = g
        return groups


class Manifest(_Strict):
    """The manifest; ``manifest_model`` gives its ``targets`` the providers' own models."""

    version: Literal[1] = 1
    project: Project = Field(default_factory=Project)
    default_target: str | None = None
    state: StateBackend | None = None
    targets: dict[str, TargetConfig] = Field(min_length=1, max_length=100)

    @field_validator("targets")
    @classmethod
    def _target_names(cls, targets: dict[str, TargetConfig]) -> dict[str, TargetConfig]:
        for name in targets:
            if not NAME_RE.fullmatch(name):
                raise ValueError(
                    f"target name {name!r} must be lower-case letters, digits, '-' or '_' "
                    "(at most 40, starting with a letter)"
                )
        return targets

    @model_validator(mode="after")
    def _default(self) -> "Manifest":
        if self.default_target is not None and self.default_target not in self.targets:
            raise ValueError(
                f"default_target {self.default_target!r} is not a target "
                f"(targets: {', '.join(self.targets)})"
            )
        return self


# -- assembly from the registered providers -------------------------------------------------


@functools.cache
def target_model(provider: str) -> type[TargetConfig]:
    """The target model of a registered provider: its ``target_model`` with ``provider``
    fixed to the registered name and ``groups`` typed by its ``group_model``."""
    base, group = provider_models(provider)
    if not (issubclass(base, TargetConfig) and issubclass(group, GroupConfig)):
        raise TypeError(
            f"provider {provider!r}: target_model/group_model must subclass "
            "TargetConfig/GroupConfig"
        )
    tag: Any = Literal[provider]  # the registered name is the discriminator's value
    groups: Any = dict[str, group]  # type: ignore[valid-type]
    model: type[TargetConfig] = create_model(
        base.__name__,
        __base__=base,
        __module__=base.__module__,
        provider=(tag, ...),
        groups=(groups, Field(default_factory=dict, max_length=100)),
    )
    model.group_model = group  # type: ignore[attr-defined]
    # Built now (it is validated and dumped on every load), without the plugin scan.
    with without_pydantic_plugins():
        model.model_rebuild(force=True)
    return model


def group_model(target: TargetConfig) -> type[GroupConfig]:
    """The group model of a target's provider (``GroupConfig`` for a bare base)."""
    found: type[GroupConfig] = getattr(type(target), "group_model", GroupConfig)
    return found


@functools.cache
def manifest_model(providers: tuple[str, ...]) -> type[Manifest]:
    """The manifest's model with ``targets`` a union of these providers' target models
    (sorted, unique names). Unnamed providers are not imported."""
    members = tuple(target_model(p) for p in providers)
    if not members:
        return Manifest
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    target: Any = Annotated[union, Field(discriminator="provider")]
    model: type[Manifest] = create_model(
        "Manifest",
        __base__=Manifest,
        __module__=__name__,
        targets=(dict[str, target], Field(min_length=1, max_length=100)),
    )
    with without_pydantic_plugins():
        model.model_rebuild(force=True)
    return model


_PLUGIN_LOADER = "pydantic.plugin._loader"


@contextlib.contextmanager
def without_pydantic_plugins() -> Iterator[None]:
    """Build scalable's own validators without looking for pydantic plugins.

    The first validator pydantic builds in a process looks for plugins among the entry
    points of every installed distribution: 20-40 ms, most of what ``plan`` spends on
    its manifest (issue 15). Plugins observe validation of the application's models;
    scalable's manifest is none of theirs. Set only while the build runs, so a child
    process never inherits it.

    With plugins off, pydantic's plugin loader answers "none" without reading any entry
    point, but importing it still imports ``importlib.metadata`` (email, zipfile, csv:
    about 12 ms of a cold start). So when no validator has imported it yet, the build
    sees a loader that answers "none" too; the real one is imported by the first
    validator built after, exactly as it would have been."""
    key = "PYDANTIC_DISABLE_PLUGINS"
    previous = os.environ.get(key)
    os.environ[key] = "1"
    stub = None
    if _PLUGIN_LOADER not in sys.modules:
        stub = types.ModuleType(_PLUGIN_LOADER)
        stub.get_plugins = tuple  # type: ignore[attr-defined]  # no plugins: ()
        sys.modules[_PLUGIN_LOADER] = stub
    try:
        yield
    finally:
        if stub is not None and sys.modules.get(_PLUGIN_LOADER) is stub:
            del sys.modules[_PLUGIN_LOADER]
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous
