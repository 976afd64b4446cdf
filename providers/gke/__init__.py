"""GKE provider: node pools through google-cloud-container, Dask on them via Kubernetes.

Importing this package stays light: google.cloud and kubernetes are imported inside the
functions that call them.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalable.providers.gke.provider import GkeProvider

__all__ = ["GkeProvider"]


def __getattr__(name: str) -> Any:
    # The provider is imported when asked for: the manifest imports this package's
    # config module alone (registry.BUILTIN_MODELS) for a target no command runs.
    if name == "GkeProvider":
        from scalable.providers.gke.provider import GkeProvider

        return GkeProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
