"""The desired deployment, provider-neutral: what the manifest asks of one target.

Built from the validated manifest (pydantic at the edge) into plain frozen dataclasses
that the planner, engine and providers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalable.manifest.loader import LoadedManifest
from scalable.manifest.schema import (
    Adaptive,
    GroupModel,
    Objectives,
    Pricing,
    TargetModel,
    Workload,
)

# Keys a group may set for itself; anything unset falls back to the target's value.
_GROUP_COUNT_KEYS = ("max_workers", "adaptive")


@dataclass(frozen=True)
class GroupSpec:
    """One named set of identical workers (the target's own keys make ``default``)."""

    name: str
    tags: tuple[str, ...]
    count: int  # workers to run now: max_workers, or adaptive.minimum
    adaptive: Adaptive | None
    threads_per_worker: int
    memory_per_worker: int | None
    # Provider-specific keys merged target ← group (instance_type, queue, walltime…).
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def maximum(self) -> int:
        return self.adaptive.maximum if self.adaptive else self.count

    def setting(self, key: str, default: Any = None) -> Any:
        value = self.settings.get(key, default)
        return default if value is None else value


@dataclass(frozen=True)
class TargetSpec:
    project: str
    name: str
    provider: str
    config: TargetModel  # the validated target block, for provider-specific keys
    groups: tuple[GroupSpec, ...]
    pricing: Pricing
    objectives: Objectives | None
    workload: Workload | None
    tls: bool
    manifest_path: Path
    manifest_digest: str
    env: dict[str, str] = field(default_factory=dict)

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
            g.name: max(g.adaptive.minimum, min(g.adaptive.maximum, counts[g.name]))
            for g in self.groups
            if g.adaptive is not None and g.name in counts
        }
        return self.with_counts(clamped) if clamped else self

    def with_counts(self, counts: dict[str, int]) -> TargetSpec:
        """The same target with some groups' current counts replaced (scaling)."""
        groups = tuple(
            GroupSpec(
                name=g.name,
                tags=g.tags,
                count=counts.get(g.name, g.count),
                adaptive=g.adaptive,
                threads_per_worker=g.threads_per_worker,
                memory_per_worker=g.memory_per_worker,
                settings=g.settings,
            )
            for g in self.groups
        )
        return TargetSpec(**{**self.__dict__, "groups": groups})


def _group(name: str, base: TargetModel, own: GroupModel | None) -> GroupSpec:
    merged: dict[str, Any] = base.model_dump(exclude={"groups"})
    if own is not None:
        for key in _GROUP_COUNT_KEYS:
            merged[key] = None
        merged.update(own.model_dump(exclude_unset=True))
        if "adaptive" in own.model_fields_set:
            merged["adaptive"] = own.adaptive
    else:
        merged["adaptive"] = base.adaptive
    adaptive = merged.get("adaptive")
    if isinstance(adaptive, dict):
        adaptive = Adaptive.model_validate(adaptive)
    if adaptive is not None:
        count = adaptive.minimum
    else:
        count = merged.get("max_workers")
        count = 1 if count is None else int(count)
    raw_tags = merged.pop("tags", ()) or ()
    # An AWS target's own `tags:` is a dict of AWS tags, not worker tags.
    tags = tuple(raw_tags) if isinstance(raw_tags, list | tuple) else ()
    return GroupSpec(
        name=name,
        tags=tags,
        count=count,
        adaptive=adaptive,
        threads_per_worker=int(merged.get("threads_per_worker") or 1),
        memory_per_worker=merged.get("memory_per_worker"),
        settings=merged,
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
    )


def _cache_env(cfg: TargetModel, root: Path) -> dict[str, str]:
    if cfg.cache is None:
        return {}
    from scalable.cache.config import worker_env

    # Local and Slurm workers share the client's filesystem; cloud workers have their own.
    return worker_env(cfg.cache, root if cfg.provider in ("local", "slurm") else None)
