"""GKE provider: node pools through google-cloud-container, Dask on them via Kubernetes.

Importing this package stays light: google.cloud and kubernetes are imported inside the
functions that call them.
"""

from scalable.providers.gke.provider import GkeProvider

__all__ = ["GkeProvider"]
