"""The desired deployment, provider-neutral: what the manifest asks of one target.

Built from the validated manifest (pydantic at the edge) into plain frozen dataclasses
that the planner, engine and providers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from scalable.manifest.loader import LoadedManifest
from scalable.manifest.schema import (
    Adaptive,
    ContainerConfig,
    GroupConfig,
    Objectives,
    Pricing,
    StrictModel,
    TargetConfig,
    Workload,
    group_model,
)

# A group that sets neither count key has its own count (1), not the target's.
_GROUP_COUNT_KEYS = ("max_workers", "adaptive")
G = TypeVar("G", bound=StrictModel)
T = TypeVar("T", bound=TargetConfig)


def _as(value: Any, model: type[Any], what: str) -> Any:
    if not isinstance(value, model):
        raise TypeError(f"{what} is a {type(value).__name__}, not a {model.__name__}")
    return value


@dataclass(frozen=True)
class GroupSpec:
    """One named set of identical workers (the target's own keys make ``default``)."""

    name: str
    tags: tuple[str, ...]
    count: int  # workers to run now: max_workers, or adaptive.minimum
    adaptive: Adaptive | None
    threads_per_worker: int
    memory_per_worker: int | None
    # The provider's group model, each key merged target ← group (queue, walltime…).
    settings: GroupConfig = field(default_factory=GroupConfig)
    # What its workers run in (the group's own ``container:``, else the target's); None:
    # plain processes.
    container: ContainerConfig | None = None

    @property
    def maximum(self) -> int:
        return self.adaptive.maximum if self.adaptive else self.count

    @property
    def gpus(self) -> int:
        """GPUs per worker (0: a CPU worker); the manifest's ``gpus:``."""
        return int(getattr(self.settings, "gpus", 0) or 0)

    @property
    def gpu_type(self) -> str | None:
        """The GPU model asked for, only where the group has GPUs."""
        found = getattr(self.settings, "gpu_type", None)
        return str(found) if found and self.gpus else None

    def settings_as(self, model: type[G]) -> G:
        """The group's keys as the provider's own model: ``g.settings_as(SlurmGroup)``."""
        found: G = _as(self.settings, model, f"group {self.name}'s settings")
        return found


@dataclass(frozen=True)
class TargetSpec:
    project: str
    name: str
    provider: str
    config: TargetConfig  # the provider's target model, validated
    groups: tuple[GroupSpec, ...]
    pricing: Pricing
    objectives: Objectives | None
    workload: Workload | None
    tls: bool
    manifest_path: Path
    manifest_digest: str
    env: dict[str, str] = field(default_factory=dict)
    # Seconds an idle scheduler lives (every provider's leak guard); None: no limit.
    idle_timeout: float | None = 3600.0

    def config_as(self, model: type[T]) -> T:
        """The target's keys as the provider's own model: ``spec.config_as(SlurmTarget)``."""
        found: T = _as(self.config, model, f"target {self.name}'s config")
        return found

    @property
    def root(self) -> Path:
        """The folder holding the manifest; ``.scalable/`` lives beside it."""
        return self.manifest_path.parent

    @property
    def workdir(self) -> Path:
        return self.root / ".scalable" / self.name

    def group(self, name: str) -> GroupSpec:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def declared_tags(self) -> dict[str, str]:
        """tag → group, for every group that declares tags."""
        return {t: g.name for g in self.groups for t in g.tags}

    def scaled(self, counts: dict[str, int]) -> TargetSpec:
        """The target with adaptive groups at their current counts (clamped to range)."""
        clamped = {
            g.name: g.adaptive.clamp(counts[g.name])
            for g in self.groups
            if g.adaptive is not None and g.name in counts
        }
        return self.with_counts(clamped) if clamped else self

    def with_counts(self, counts: dict[str, int]) -> TargetSpec:
        """The same target with some groups' current counts replaced (scaling)."""
        groups = tuple(replace(g, count=counts.get(g.name, g.count)) for g in self.groups)
        return TargetSpec(**{**self.__dict__, "groups": groups})


def _group(name: str, base: TargetConfig, own: GroupConfig | None) -> GroupSpec:
    model = group_model(base)
    # Everything the group model has, from the target (an AWS target's own ``tags`` are
    # AWS tags, not worker tags), then what the group itself writes. Values are already
    # validated: constructed, not re-parsed (a walltime in seconds is not minutes).
    values: dict[str, Any] = {
        k: getattr(base, k)
        for k in model.model_fields
        if k in type(base).model_fields and k != "tags"
    }
    if own is not None:
        values.update(dict.fromkeys(_GROUP_COUNT_KEYS))
        values.update({k: getattr(own, k) for k in own.model_fields_set})
    settings = model.model_construct(**values)
    adaptive = settings.adaptive
    if adaptive is not None:
        count = adaptive.minimum
    else:
        count = 1 if settings.max_workers is None else int(settings.max_workers)
    own_container = own.container if own is not None else None
    if own_container is not None:  # a group's block replaces the target's as a whole
        container = own_container if own_container.enabled else None
    else:
        container = base.default_container()
    return GroupSpec(
        name=name,
        tags=tuple(settings.tags),
        count=count,
        adaptive=adaptive,
        threads_per_worker=settings.threads_per_worker,
        memory_per_worker=settings.memory_per_worker,
        settings=settings,
        container=container,
    )


def build_target(loaded: LoadedManifest, name: str) -> TargetSpec:
    cfg = loaded.manifest.targets[name]
    groups: list[GroupSpec] = []
    has_own_count = cfg.max_workers is not None or cfg.adaptive is not None
    if not cfg.groups or has_own_count:
        groups.append(_group("default", cfg, None))
    for gname, gcfg in cfg.groups.items():
        groups.append(_group(gname, cfg, gcfg))
    tls = cfg.tls if cfg.tls is not None else cfg.provider != "local"
    return TargetSpec(
        project=loaded.manifest.project.name,
        name=name,
        provider=cfg.provider,
        config=cfg,
        groups=tuple(groups),
        pricing=cfg.pricing,
        objectives=cfg.objectives,
        workload=cfg.workload,
        tls=tls,
        manifest_path=loaded.path.resolve(),
        manifest_digest=loaded.target_digest(name),
        env={**_cache_env(cfg, loaded.path.resolve().parent), **cfg.env},
        idle_timeout=None if cfg.idle_timeout is False else float(cfg.idle_timeout),
    )


def _cache_env(cfg: TargetConfig, root: Path) -> dict[str, str]:
    if cfg.cache is None:
        return {}
    from scalable.cache.config import worker_env

    # Local and Slurm workers share the client's filesystem; cloud workers have their own.
    return worker_env(cfg.cache, root if cfg.provider in ("local", "slurm") else None)
