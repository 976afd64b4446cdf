"""Google credentials: Application Default Credentials, or an emulator with none.

``SCALABLE_GKE_ENDPOINT=host:port`` points the GKE API at an emulator over plaintext gRPC
with no credentials at all (what the test suite's fake ClusterManager is);
``SCALABLE_GKE_KUBECONFIG=PATH`` (with ``SCALABLE_GKE_KUBE_CONTEXT``) makes the
Kubernetes side use a kubeconfig instead of the cluster's endpoint and an ADC token (for
a private cluster reached through a proxy or Connect gateway).
"""

from __future__ import annotations

import os
from typing import Any

from scalable.providers.base import ProviderError

ENDPOINT_ENV = "SCALABLE_GKE_ENDPOINT"
KUBECONFIG_ENV = "SCALABLE_GKE_KUBECONFIG"
KUBE_CONTEXT_ENV = "SCALABLE_GKE_KUBE_CONTEXT"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
ADC_HINT = ("run `gcloud auth application-default login` (or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)")


def emulator_endpoint() -> str | None:
    return os.environ.get(ENDPOINT_ENV) or None


def application_default() -> tuple[Any, str | None]:
    """(credentials, project) from Application Default Credentials, or one clear error."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    try:
        credentials, project = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError:
        raise ProviderError(
            "no Google Cloud credentials: Application Default Credentials are not set up",
            hint=ADC_HINT,
        ) from None
    except GoogleAuthError as exc:
        raise ProviderError(f"Google Cloud credentials are unusable: {exc}",
                            hint=ADC_HINT) from None
    return credentials, project


def bearer_token(credentials: Any) -> str | None:
    """A fresh access token for the Kubernetes API (GKE accepts Google OAuth tokens)."""
    if credentials is None:
        return None
    from google.auth.exceptions import RefreshError
    from google.auth.transport.requests import Request

    if not credentials.valid:
        try:
            credentials.refresh(Request())
        except RefreshError as exc:
            raise ProviderError(f"cannot refresh Google credentials: {exc}",
                                hint=ADC_HINT) from None
    token: str | None = credentials.token
    return token
