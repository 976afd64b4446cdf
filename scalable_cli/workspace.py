"""One target opened for work: manifest → spec → provider + state store → engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from scalable.engine import Engine
from scalable.errors import ScalableError
from scalable.hooks import Hook, Hooks
from scalable.manifest.loader import LoadedManifest, load_manifest
from scalable.manifest.schema import StateBackend
from scalable.providers.base import Provider, provider_class
from scalable.scaling.resource import WithController
from scalable.spec import TargetSpec, build_target
from scalable.state.store import LocalStore, StateStore
from scalable.telemetry.recorder import RunRecorder

DEFAULT_FILE = "scalable.yaml"


def manifest_path(file: str | os.PathLike[str] | None) -> Path:
    return Path(file or os.environ.get("SCALABLE_FILE") or DEFAULT_FILE)


@dataclass
class Workspace:
    loaded: LoadedManifest
    spec: TargetSpec
    provider: Provider
    store: StateStore

    @classmethod
    def open(
        cls, file: str | os.PathLike[str] | None = None, target: str | None = None
    ) -> Workspace:
        loaded = load_manifest(manifest_path(file))
        name = loaded.target_name(target or os.environ.get("SCALABLE_TARGET"))
        spec = build_target(loaded, name)
        provider = provider_class(spec.provider)(spec, spec.workdir)
        return cls(loaded=loaded, spec=spec, provider=provider, store=open_store(loaded, spec))

    def engine(
        self, *, hooks: Hook | None = None, record: bool = True, owner: str = "cli"
    ) -> Engine:
        """An engine reporting to ``hooks`` and, unless ``record`` is off, to telemetry."""
        if record:
            # apply/destroy steps into telemetry.db
            hooks = Hooks([*([hooks] if hooks is not None else []), RunRecorder(self)])
        return Engine(self.provider_for(owner), self.store, hooks=hooks, owner=owner)

    def provider_for(self, owner: str) -> Provider:
        """The provider, wrapped with the ``controller`` resource where one belongs.

        A detached controller runs for adaptive targets whose capacity the CLI owns; a
        ScalableSession runs its controller in-process instead.
        """
        if not any(g.adaptive for g in self.spec.groups):
            return self.provider
        state = self.store.read()
        capacity_owner = state.owner if state is not None and state.resources else owner
        if capacity_owner not in ("cli", "controller"):
            return self.provider
        return WithController(self.provider)


def open_store(loaded: LoadedManifest, spec: TargetSpec) -> StateStore:
    return backend_store(spec.config.state or loaded.manifest.state, spec)


def backend_store(cfg: StateBackend | None, spec: TargetSpec) -> StateStore:
    """The store a ``state:`` block names, for ``spec``'s target."""
    if cfg is None or cfg.backend == "local":
        return LocalStore(spec.workdir)
    if cfg.backend == "s3":
        try:
            from scalable.state.s3 import S3Store  # imports boto3 only when used
        except ModuleNotFoundError as exc:
            raise ScalableError(
                f"the s3 state backend is not available: {exc}", hint="pip install 'scalable[aws]'"
            ) from None
        return S3Store.from_config(cfg, spec)
    if cfg.backend == "gcs":
        try:
            from scalable.state.gcs import GcsStore
        except ModuleNotFoundError as exc:
            raise ScalableError(
                f"the gcs state backend is not available: {exc}", hint="pip install 'scalable[gcs]'"
            ) from None
        return GcsStore.from_config(cfg, spec)
    raise ScalableError(f"unknown state backend {cfg.backend!r}")
