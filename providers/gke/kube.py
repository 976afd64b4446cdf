"""The Kubernetes side, through the official ``kubernetes`` Python client.

Why this library: it is the Kubernetes project's own client (kubernetes-client/python),
generated from the API's OpenAPI spec and released in step with Kubernetes, so every
object and verb we use is there; it reads kubeconfig files and in-cluster config, speaks
TLS with a cluster CA and bearer tokens (GKE's model), and is the one most operators
already have installed. lightkube and kr8s are lighter and nicer to type, but younger and
kept by few hands; we need seven object kinds and plain verbs, which the official client
covers without surprises. It is imported here only.

Bodies go in as plain dicts (see ``manifests.py``) and responses come back as plain
dicts: the provider reads a handful of fields and never needs the generated models.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scalable.providers.base import ProviderError

RBAC_HINT = (
    "the account needs to manage Deployments, StatefulSets, Services and Secrets and read "
    "Pods and Nodes in the namespace (roles/container.developer on the project, or an "
    "equivalent Kubernetes Role)"
)
MERGE_PATCH = "application/merge-patch+json"

# kind → (API prefix, plural, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
    "secret": ("/api/v1", "secrets", True),
    "service": ("/api/v1", "services", True),
    "pod": ("/api/v1", "pods", True),
    "namespace": ("/api/v1", "namespaces", False),
    "node": ("/api/v1", "nodes", False),
    "deployment": ("/apis/apps/v1", "deployments", True),
    "statefulset": ("/apis/apps/v1", "statefulsets", True),
}


class Kube:
    """One namespace of one cluster, through the client's ``ApiClient``.

    We call the REST paths through ``ApiClient`` (configuration, TLS, bearer-token
    refresh, connection pool, retries are the library's) rather than the generated
    ``CoreV1Api``/``AppsV1Api`` classes: in kubernetes 37 importing those two builds
    hundreds of pydantic models and costs 0.5–2 s per command, for methods that would
    only wrap the same seven paths. (``param_serialize``/``call_api`` are the API of the
    client generated since release 36; the ``gke`` extra asks for 37, which is tested.)
    """

    def __init__(self, api_client: Any, namespace: str, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.timeout = timeout
        self.host = str(api_client.configuration.host)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, path: str | Path, namespace: str,
                        context: str | None = None) -> Kube:
        from kubernetes.config import new_client_from_config

        try:
            api = new_client_from_config(config_file=str(path), context=context,
                                         persist_config=False)
        except Exception as exc:  # the loader raises several types for a bad file
            raise ProviderError(f"cannot use kubeconfig {path}: {exc}") from None
        return cls(api, namespace)

    @classmethod
    def from_cluster(cls, endpoint: str, ca_certificate_b64: str, namespace: str, *,
                     folder: Path, token: Callable[[], str | None] | None = None) -> Kube:
        """Talk to a GKE control plane: its endpoint and CA from ``get_cluster``, a bearer
        token from Application Default Credentials (refreshed before it expires)."""
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.configuration import Configuration

        cfg = Configuration()
        cfg.host = endpoint if "://" in endpoint else f"https://{endpoint}"
        if ca_certificate_b64:
            folder.mkdir(parents=True, exist_ok=True)
            ca = folder / "cluster-ca.pem"
            ca.write_bytes(base64.b64decode(ca_certificate_b64))
            cfg.ssl_ca_cert = str(ca)
        if token is not None:
            def refresh(conf: Any) -> None:
                value = token()
                if value:
                    conf.api_key["BearerToken"] = value
                    conf.api_key_prefix["BearerToken"] = "Bearer"

            setattr(cfg, "refresh_api_key_hook", refresh)  # noqa: B010 - typed as None
            refresh(cfg)
        return cls(ApiClient(cfg), namespace)

    # -- calls ----------------------------------------------------------------------------
    def _path(self, kind: str, name: str | None = None) -> str:
        prefix, plural, namespaced = _KINDS[kind]
        path = f"{prefix}/namespaces/{self.namespace}/{plural}" if namespaced \
            else f"{prefix}/{plural}"
        return f"{path}/{name}" if name else path

    def _request(self, what: str, method: str, path: str, *,
                 query: dict[str, str] | None = None, body: Any = None,
                 content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method, resource_path=path,
            query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.call_api(*request, _request_timeout=self.timeout)
            data = resp.read()
        except Exception as exc:  # urllib3 connection errors, ApiException(status=0) on SSL
            raise ProviderError(
                f"cannot reach the Kubernetes API at {self.host} to {what}: {_short(exc)}",
                hint="is the cluster's control plane reachable from here (a private "
                "cluster needs its authorized networks or a VPN)?",
            ) from None
        if not 200 <= resp.status <= 299:
            raise _api_error(what, resp.status, resp.reason, data)
        return json.loads(data) if data else {}

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._request(f"read {kind} {name}", "GET",
                                                self._path(kind, name))
        except NotFound:
            return None
        return obj

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        obj: dict[str, Any] = self._request(f"create {kind} {name}", "POST",
                                            self._path(kind), body=body)
        return obj

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self._request(f"update {kind} {name}", "PATCH",
                                            self._path(kind, name), body=body,
                                            content_type=MERGE_PATCH)
        return obj

    def delete(self, kind: str, name: str) -> bool:
        """Delete (dependents in the background); False if it was already gone."""
        try:
            self._request(f"delete {kind} {name}", "DELETE", self._path(kind, name),
                          body={"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    def select(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        """Objects of ``kind`` matching a label selector (``k=v,k2=v2``)."""
        obj = self._request(f"list {kind}s", "GET", self._path(kind),
                            query={"labelSelector": selector} if selector else None)
        return list(obj.get("items") or [])


class NotFound(ProviderError):
    """A 404 from the API server (callers that expect it catch it)."""


class AlreadyExists(ProviderError):
    """A 409 on create: an object of that name is there already."""


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _api_error(what: str, status: int, reason: str | None, data: bytes | None
               ) -> ProviderError:
    message = reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(data or b"{}").get("message") or message
    if status == 404:
        return NotFound(f"{what}: not found")
    if status == 409:
        return AlreadyExists(f"cannot {what}: {message}")
    if status in (401, 403):
        hint = (RBAC_HINT if status == 403 else
                "run `gcloud auth application-default login`")
        return ProviderError(f"Kubernetes refused to {what}: {message}", hint=hint)
    return ProviderError(f"Kubernetes refused to {what}: {message} (HTTP {status})")
