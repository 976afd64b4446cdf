"""Providers by name: the built-ins, and third parties' ``scalable.providers`` entry points.

Here, below the manifest and the providers alike, so that the manifest can ask a provider
for its schema without importing any provider module before a target names it. Modules
are named as strings and imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scalable.errors import ScalableError

if TYPE_CHECKING:
    from scalable.providers.base import Provider

# Built-ins resolve without installed entry points (a source checkout on sys.path).
BUILTIN: dict[str, str] = {
    "local": "scalable.providers.local:LocalProvider",
    "slurm": "scalable.providers.slurm:SlurmProvider",
    "aws": "scalable.providers.aws:AwsProvider",
    "gke": "scalable.providers.gke:GkeProvider",
    "sge": "scalable.providers.batch.providers:SgeProvider",
    "pbs": "scalable.providers.batch.providers:PbsProvider",
    "lsf": "scalable.providers.batch.providers:LsfProvider",
    "htcondor": "scalable.providers.batch.providers:HtcondorProvider",
}
# Where each built-in declares its manifest keys (its ``target_model`` and ``group_model``):
# a manifest validates every target it holds, but a command runs one, so the others'
# schemas are imported without their providers (clients, job scripts, price catalogs:
# about 12% of a ``plan`` of one target in a manifest with three providers). A unit test
# keeps each pair the provider's own.
BUILTIN_MODELS: dict[str, str] = {
    "local": "scalable.providers.local_config:LocalTarget:LocalGroup",
    "slurm": "scalable.providers.slurm.config:SlurmTarget:SlurmGroup",
    "aws": "scalable.providers.aws.config:AwsTarget:AwsGroup",
    "gke": "scalable.providers.gke.config:GkeTarget:GkeGroup",
    "sge": "scalable.providers.batch.config:BatchTarget:BatchGroup",
    "pbs": "scalable.providers.batch.config:BatchTarget:BatchGroup",
    "lsf": "scalable.providers.batch.config:BatchTarget:BatchGroup",
    "htcondor": "scalable.providers.batch.config:BatchTarget:BatchGroup",
}
GROUP = "scalable.providers"


class UnknownProvider(ScalableError):
    """No provider is registered under a name (or it cannot be imported here)."""


def _builtin(name: str, ref: str) -> list[Any]:
    """The attributes a built-in's ``module:attr[:attr…]`` reference names (imported now);
    a missing optional dependency is an UnknownProvider that names the extra."""
    module, *attrs = ref.split(":")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise UnknownProvider(
            f"provider {name!r} is not available here: {exc}",
            hint=f"pip install 'scalable[{name}]'",
        ) from exc
    return [getattr(found, attr) for attr in attrs]


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name`` (entry point group scalable.providers)."""
    if name in BUILTIN:
        (builtin,) = _builtin(name, BUILTIN[name])
        found: type[Provider] = builtin
        return found
    from importlib.metadata import entry_points  # third-party providers only: ~25 ms

    for ep in entry_points(group=GROUP):
        if ep.name == name:
            try:
                cls: type[Provider] = ep.load()
            except Exception as exc:
                raise UnknownProvider(
                    f"provider {name!r} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}",
                    hint=f"check the package that registers the {name!r} provider",
                ) from None
            return cls
    raise UnknownProvider(
        f"unknown provider {name!r}",
        hint="provider must be one of: " + ", ".join(provider_names()),
    )


def provider_models(name: str) -> tuple[type[Any], type[Any]]:
    """The target and group models of the provider registered under ``name``: for a
    built-in from its config module alone, for a third party from its class."""
    if name not in BUILTIN_MODELS:
        cls = provider_class(name)
        return cls.target_model, cls.group_model
    target, group = _builtin(name, BUILTIN_MODELS[name])
    return target, group


def provider_names() -> list[str]:
    """Every registered name: the built-ins first, then installed third parties."""
    from importlib.metadata import entry_points

    names = list(BUILTIN)
    names += sorted({ep.name for ep in entry_points(group=GROUP)} - set(BUILTIN))
    return names
