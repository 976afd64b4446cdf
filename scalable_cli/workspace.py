"""One target opened for work: manifest → spec → provider + state store → engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalable.addrs import CONTROLLER
from scalable.engine import Engine
from scalable.errors import ScalableError, StateError
from scalable.hooks import Hook, Hooks
from scalable.manifest.loader import LoadedManifest, load_manifest
from scalable.manifest.schema import StateBackend
from scalable.providers.base import Provider, provider_class
from scalable.scaling.resource import WithController
from scalable.spec import TargetSpec, build_target
from scalable.state.lock import LockInfo
from scalable.state.model import StateFile
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
        store = ProviderCheckedStore(open_store(loaded, spec), spec)
        return cls(loaded=loaded, spec=spec, provider=provider, store=store)

    def engine(
        self, *, hooks: Hook | None = None, record: bool = True, owner: str = "cli",
        budget: bool = False,
    ) -> Engine:
        """An engine reporting to ``hooks`` and, unless ``record`` is off, to telemetry.

        ``budget``: a budget was asked for outside the manifest (``apply --budget-usd``),
        so the run needs a controller to enforce it."""
        if record:
            # apply/destroy steps into telemetry.db
            hooks = Hooks([*([hooks] if hooks is not None else []), RunRecorder(self)])
        return Engine(self.provider_for(owner, budget=budget), self.store, hooks=hooks,
                      owner=owner)

    def provider_for(self, owner: str, *, budget: bool = False) -> Provider:
        """The provider, wrapped with the ``controller`` resource where one belongs.

        A detached controller runs for CLI-owned targets that need one: adaptive groups
        to resize, or a budget to enforce while the run goes (the manifest's
        ``objectives.budget_usd``, ``apply --budget-usd``, or a controller already in
        state, so a later plain ``plan`` keeps it). A ScalableSession runs its
        controller in-process instead.
        """
        objectives = self.spec.objectives
        wanted = (
            budget
            or any(g.adaptive for g in self.spec.groups)
            or (objectives is not None and objectives.budget_usd is not None)
        )
        state = self.store.read()
        if not wanted and not (state is not None and state.get(CONTROLLER) is not None):
            return self.provider
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


class ProviderCheckedStore:
    """A target's state store that refuses state recorded by another provider.

    Records are meaningful only to the provider that made them: read through another
    one (``aws`` records, manifest now ``local``), a refresh finds nothing alive and a
    destroy would report deletions that never happened, then empty the state while
    the instances run on. Every command reads state through here, so every command
    refuses, with the recorded provider and the way out. A state with nothing left in
    it is taken over by the new provider.
    """

    def __init__(self, inner: StateStore, spec: TargetSpec) -> None:
        self.inner = inner
        self.spec = spec
        self.location = inner.location

    def read(self) -> StateFile | None:
        state = self.inner.read()
        if state is None or state.provider == self.spec.provider:
            return state
        if not state.resources:
            state.provider = self.spec.provider
            return state
        raise provider_changed(self.spec, state, self.location)

    def write(self, state: StateFile, *, replace: bool = False) -> bool:
        return self.inner.write(state, replace=replace)

    def read_backup(self) -> StateFile | None:
        return self.inner.read_backup()

    def lock(
        self, operation: str, timeout: float = 0.0, notify: Callable[[str], None] | None = None
    ) -> AbstractContextManager[LockInfo]:
        return self.inner.lock(operation, timeout=timeout, notify=notify)

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.inner.force_unlock(lock_id)

    def __getattr__(self, name: str) -> Any:  # backend extras (LocalStore.path …)
        return getattr(self.inner, name)


def provider_changed(spec: TargetSpec, state: StateFile, location: str) -> StateError:
    n = len(state.resources)
    return StateError(
        f"target {spec.name!r}: its state ({location}) holds {n} resource(s) made by "
        f"provider {state.provider!r}, but the manifest now says provider "
        f"{spec.provider!r}; scalable will not manage {state.provider} resources "
        f"through the {spec.provider} provider",
        hint=f"to tear them down, set `provider: {state.provider}` back for this target "
             f"and run `scalable destroy -t {spec.name}`, then change the provider; or "
             f"give the {spec.provider} target a new name and keep these",
    )
