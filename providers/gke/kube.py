"""The Kubernetes side, through the official ``kubernetes`` Python client.

Why this library: it is the Kubernetes project's own client (kubernetes-client/python),
generated from the API's OpenAPI spec and released in step with Kubernetes, so every
object and verb we use is there; it reads kubeconfig files and in-cluster config, speaks
TLS with a cluster CA and bearer tokens (GKE's model), and is the one most operators
already have installed. lightkube and kr8s are lighter and nicer to type, but younger and
kept by few hands; we need five object kinds and plain verbs, which the official client
covers without surprises. It is heavy to import (~0.3 s), so it is imported here only.

Bodies go in as plain dicts (see ``manifests.py``) and responses come back as plain
dicts (``_preload_content=False``): the provider reads a handful of fields and never
needs the generated model classes.
"""

from __future__ import annotations

import base64
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

# kind → (api group attribute, method suffix, namespaced)
_KINDS: dict[str, tuple[str, str, bool]] = {
    "secret": ("core", "namespaced_secret", True),
    "service": ("core", "namespaced_service", True),
    "pod": ("core", "namespaced_pod", True),
    "namespace": ("core", "namespace", False),
    "node": ("core", "node", False),
    "deployment": ("apps", "namespaced_deployment", True),
    "statefulset": ("apps", "namespaced_stateful_set", True),
}


class Kube:
    """One namespace of one cluster."""

    def __init__(self, api_client: Any, namespace: str, *, timeout: float = 30.0) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.timeout = timeout
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.host = str(api_client.configuration.host)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_kubeconfig(cls, path: str | Path, namespace: str,
                        context: str | None = None) -> Kube:
        from kubernetes import config

        try:
            api = config.new_client_from_config(config_file=str(path), context=context,
                                                persist_config=False)
        except Exception as exc:  # the loader raises several types for a bad file
            raise ProviderError(f"cannot use kubeconfig {path}: {exc}") from None
        return cls(api, namespace)

    @classmethod
    def from_cluster(cls, endpoint: str, ca_certificate_b64: str, namespace: str, *,
                     folder: Path, token: Callable[[], str | None] | None = None) -> Kube:
        """Talk to a GKE control plane: its endpoint and CA from ``get_cluster``, a bearer
        token from Application Default Credentials (refreshed before it expires)."""
        from kubernetes import client

        cfg = client.Configuration()
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
        return cls(client.ApiClient(cfg), namespace)

    # -- calls ----------------------------------------------------------------------------
    def _method(self, verb: str, kind: str) -> Callable[..., Any]:
        group, suffix, _ = _KINDS[kind]
        api = self.core if group == "core" else self.apps
        method: Callable[..., Any] = getattr(api, f"{verb}_{suffix}")
        return method

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            raise _api_error(what, exc) from None
        except Exception as exc:  # urllib3 connection/SSL errors
            if type(exc).__module__.startswith(("urllib3", "ssl", "socket")) or isinstance(
                exc, OSError
            ):
                raise ProviderError(
                    f"cannot reach the Kubernetes API at {self.host} to {what}: "
                    f"{_short(exc)}",
                    hint="is the cluster's control plane reachable from here (a private "
                    "cluster needs its authorized networks or a VPN)?",
                ) from None
            raise
        data = resp.data
        return json.loads(data) if data else {}

    def _ns_args(self, kind: str) -> tuple[Any, ...]:
        return (self.namespace,) if _KINDS[kind][2] else ()

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self._call(f"read {kind} {name}", self._method("read", kind),
                                             name, *self._ns_args(kind))
        except NotFound:
            return None
        return obj

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        obj: dict[str, Any] = self._call(f"create {kind} {name}",
                                         self._method("create", kind),
                                         *self._ns_args(kind), body)
        return obj

    def patch(self, kind: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self._call(f"update {kind} {name}", self._method("patch", kind),
                                         name, *self._ns_args(kind), body,
                                         _content_type=MERGE_PATCH)
        return obj

    def delete(self, kind: str, name: str) -> bool:
        """Delete (dependents in the background); False if it was already gone."""
        try:
            self._call(f"delete {kind} {name}", self._method("delete", kind), name,
                       *self._ns_args(kind), body={"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    def select(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        """Objects of ``kind`` matching a label selector (``k=v,k2=v2``)."""
        obj = self._call(f"list {kind}s", self._method("list", kind), *self._ns_args(kind),
                         label_selector=selector or None)
        return list(obj.get("items") or [])


class NotFound(ProviderError):
    """A 404 from the API server (callers that expect it catch it)."""


class AlreadyExists(ProviderError):
    """A 409 on create: an object of that name is there already."""


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"


def _api_error(what: str, exc: Any) -> ProviderError:
    message = exc.reason or ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message") or message
    except ValueError:
        pass
    if exc.status == 404:
        return NotFound(f"{what}: not found")
    if exc.status == 409:
        return AlreadyExists(f"cannot {what}: {message}")
    if exc.status in (401, 403):
        hint = (RBAC_HINT if exc.status == 403 else
                "run `gcloud auth application-default login`")
        return ProviderError(f"Kubernetes refused to {what}: {message}", hint=hint)
    return ProviderError(f"Kubernetes refused to {what}: {message} (HTTP {exc.status})")
