"""Output names: the keys of a state's ``outputs`` (``scalable output NAME``).

Providers set them on create, the engine and clients read them. Plain strings in the
state file; these constants are how code names them.
"""

from __future__ import annotations

from typing import Final

# What any Dask client connects to (``tls://`` or ``tcp://``).
SCHEDULER_ADDRESS: Final = "scheduler_address"
# AWS: the VPC-internal address workers use (the public one is SCHEDULER_ADDRESS).
SCHEDULER_PRIVATE_ADDRESS: Final = "scheduler_private_address"
# GKE: the in-cluster Service address workers use.
SCHEDULER_CLUSTER_ADDRESS: Final = "scheduler_cluster_address"
DASHBOARD_URL: Final = "dashboard_url"
# GKE: the ``kubectl port-forward`` that reaches the dashboard.
DASHBOARD_COMMAND: Final = "dashboard_command"
# TLS material for clients (paths only, never the keys themselves).
TLS_CA_FILE: Final = "tls_ca_file"
TLS_CLIENT_CERT: Final = "tls_client_cert"
TLS_CLIENT_KEY: Final = "tls_client_key"
TLS: Final = (TLS_CA_FILE, TLS_CLIENT_CERT, TLS_CLIENT_KEY)
