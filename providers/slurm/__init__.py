"""Slurm provider: a Dask scheduler on the submitting host, workers in Slurm batch jobs."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalable.providers.slurm.provider import SlurmProvider

__all__ = ["SlurmProvider"]


def __getattr__(name: str) -> Any:
    # The provider is imported when asked for: the manifest imports this package's
    # config module alone (registry.BUILTIN_MODELS) for a target no command runs.
    if name == "SlurmProvider":
        from scalable.providers.slurm.provider import SlurmProvider

        return SlurmProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
