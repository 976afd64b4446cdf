"""Node pools through ``google.cloud.container_v1.ClusterManagerClient``.

Every change (create, resize, delete) is a long-running GKE operation: we start it, then
poll ``get_operation`` until it is DONE, failing with the operation's own error, or with a
timeout that says the operation goes on in Google Cloud. Before changing a pool we look
for an operation already running on it (or on the cluster): such a pool is reported, not
fought over. google.cloud is imported inside the functions that use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scalable.providers.base import ProviderError

# A pool whose operation we started is named in the error; these mean "someone is busy".
_RUNNING = ("PENDING", "RUNNING", "ABORTING")
PERMISSIONS_HINT = (
    "the account needs container.clusters.get and container.clusters.update on the cluster "
    "and container.operations.get/list (roles/container.clusterAdmin, or roles/container.admin)"
)


# GCE's words for "no capacity for this machine type here" in a failed operation's error
# (spot shortages read the same): after them the next of a group's machine_types is tried.
CAPACITY_SHORT = ("GCE_STOCKOUT", "ZONE_RESOURCE_POOL_EXHAUSTED")


class CapacityShort(ProviderError):
    """An operation GKE failed for lack of capacity; ``code`` is GCE's word for it."""

    def __init__(self, message: str, code: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.code = code


def capacity_code(message: str) -> str | None:
    """The capacity-shortage code a GKE error message carries, if any."""
    return next((c for c in CAPACITY_SHORT if c in message), None)


@dataclass
class ClusterInfo:
    name: str
    location: str
    status: str
    zones: list[str]
    endpoint: str
    ca_certificate: str  # base64 PEM, as GKE returns it
    version: str = ""


@dataclass
class PoolInfo:
    """What we read back about a node pool."""

    name: str
    status: str
    status_message: str
    machine_type: str
    spot: bool
    initial_node_count: int
    zones: list[str]
    resource_labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # the nodes' Kubernetes labels


def _enum_name(value: Any) -> str:
    return getattr(value, "name", str(value))


def _pool_info(pool: Any) -> PoolInfo:
    cfg = pool.config
    return PoolInfo(
        name=pool.name,
        status=_enum_name(pool.status),
        status_message=pool.status_message,
        machine_type=cfg.machine_type,
        spot=bool(cfg.spot or cfg.preemptible),
        initial_node_count=int(pool.initial_node_count),
        zones=list(pool.locations),
        resource_labels=dict(cfg.resource_labels),
        metadata=dict(cfg.metadata),
        labels=dict(cfg.labels),
    )


def _op_text(op: Any) -> str:
    started = f", started {op.start_time}" if op.start_time else ""
    return f"{_enum_name(op.operation_type)} {op.name}, {_enum_name(op.status)}{started}"


class Pools:
    """Node pools of one existing cluster."""

    def __init__(
        self,
        client: Any,
        *,
        project: str,
        location: str,
        cluster: str,
        timeout: float = 1800.0,
        poll: float = 5.0,
        retry: Any = "default",
        rpc_timeout: float = 60.0,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.project = project
        self.location = location
        self.cluster_name = cluster
        self.timeout = timeout
        self.poll = poll
        self.rpc_timeout = rpc_timeout
        self.notify = notify or (lambda _m: None)
        # ``retry``: "default" is google.api_core's retry policy; tests pass None.
        self._retry = retry

    # -- paths ------------------------------------------------------------------------
    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def cluster_path(self) -> str:
        return f"{self.location_path}/clusters/{self.cluster_name}"

    def pool_path(self, name: str) -> str:
        return f"{self.cluster_path}/nodePools/{name}"

    def _kw(self) -> dict[str, Any]:
        from google.api_core import gapic_v1

        retry = gapic_v1.method.DEFAULT if self._retry == "default" else self._retry
        return {"retry": retry, "timeout": self.rpc_timeout}

    # -- calls with errors a user can act on ----------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return fn(request=kwargs, **self._kw())
        except gexc.NotFound:
            raise
        except gexc.PermissionDenied as exc:
            raise ProviderError(
                f"GKE refused to {what}: permission denied ({exc.message})",
                hint=PERMISSIONS_HINT,
            ) from None
        except gexc.Unauthenticated as exc:
            raise ProviderError(
                f"GKE refused to {what}: not authenticated ({exc.message})",
                hint="run `gcloud auth application-default login`",
            ) from None
        except (gexc.FailedPrecondition, gexc.Aborted, gexc.Conflict) as exc:
            if "operation" in str(exc.message).lower():
                raise ProviderError(
                    f"cannot {what}: another operation is running on the cluster "
                    f"({exc.message})",
                    hint="scalable does not fight over a pool someone else is changing: "
                    "wait for that operation, then run apply again",
                ) from None
            raise ProviderError(f"GKE refused to {what}: {exc.message}") from None
        except gexc.ServiceUnavailable as exc:
            raise ProviderError(
                f"cannot reach the GKE API to {what}: {exc.message}",
                hint="check the network; GKE API calls go to container.googleapis.com",
            ) from None
        except gexc.GoogleAPICallError as exc:
            raise ProviderError(f"GKE refused to {what}: {exc.message}") from None

    # -- reads --------------------------------------------------------------------------
    def cluster(self) -> ClusterInfo:
        from google.api_core import exceptions as gexc

        try:
            c = self._call(f"read cluster {self.cluster_name}", self.client.get_cluster,
                           name=self.cluster_path)
        except gexc.NotFound:
            raise ProviderError(
                f"GKE cluster {self.cluster_name!r} not found in project {self.project!r}, "
                f"location {self.location!r}",
                hint="scalable adds node pools to an existing cluster: check `cluster`, "
                "`location` and `project` (gcloud container clusters list)",
            ) from None
        return ClusterInfo(
            name=c.name,
            location=c.location or self.location,
            status=_enum_name(c.status),
            zones=list(c.locations) or [self.location],
            endpoint=c.endpoint,
            ca_certificate=c.master_auth.cluster_ca_certificate,
            version=c.current_master_version,
        )

    def get(self, name: str) -> PoolInfo | None:
        from google.api_core import exceptions as gexc

        try:
            pool = self._call(f"read node pool {name}", self.client.get_node_pool,
                              name=self.pool_path(name))
        except gexc.NotFound:
            return None
        return _pool_info(pool)

    def all(self) -> list[PoolInfo]:
        resp = self._call("list node pools", self.client.list_node_pools,
                          parent=self.cluster_path)
        return [_pool_info(p) for p in resp.node_pools]

    def running(self, name: str) -> list[Any]:
        """Operations not yet done on this pool, or on the cluster as a whole."""
        resp = self._call("list operations", self.client.list_operations,
                          parent=self.location_path)
        pool_suffix = f"/clusters/{self.cluster_name}/nodePools/{name}"
        cluster_suffix = f"/clusters/{self.cluster_name}"
        out = []
        for op in resp.operations:
            if _enum_name(op.status) not in _RUNNING:
                continue
            link = op.target_link.rstrip("/")
            if link.endswith(pool_suffix) or link.endswith(cluster_suffix):
                out.append(op)
        return out

    def _refuse_if_busy(self, name: str, verb: str) -> None:
        ops = self.running(name)
        if ops:
            raise ProviderError(
                f"node pool {name} is already being changed by another operation "
                f"({_op_text(ops[0])}); not going to {verb} it",
                hint=f"scalable does not fight over it: wait for it (gcloud container "
                f"operations wait {ops[0].name} --location {self.location}), then run "
                "apply again",
            )

    # -- changes ------------------------------------------------------------------------
    def create(self, pool: Any, *, lineage: str) -> PoolInfo:
        """Create ``pool`` (a container_v1.NodePool) and wait; idempotent by name.

        A pool of that name carrying our lineage is ours (a retry or an interrupted
        apply): we wait for its creation instead of creating another.
        """
        from google.api_core import exceptions as gexc

        name = pool.name
        existing = self.get(name)
        if existing is None:
            self._refuse_if_busy(name, "create")
            try:
                op = self._call(f"create node pool {name}", self.client.create_node_pool,
                                parent=self.cluster_path, node_pool=pool)
            except gexc.NotFound:
                raise ProviderError(f"GKE cluster {self.cluster_name!r} not found") from None
            except gexc.AlreadyExists:
                existing = self.get(name)
            else:
                self.notify(f"node pool {name}: creating ({op.name})")
                self.wait(op, f"create node pool {name}")
        if existing is not None:
            if existing.resource_labels.get("scalable-lineage") != lineage:
                owner = existing.resource_labels.get("scalable-lineage")
                raise ProviderError(
                    f"a node pool named {name} already exists in cluster {self.cluster_name} "
                    f"and is not this state's "
                    f"({'lineage ' + owner if owner else 'not made by scalable'})",
                    hint="set node_pool: to another name in the manifest",
                )
            for op in self.running(name):
                if _enum_name(op.operation_type) == "CREATE_NODE_POOL":
                    self.wait(op, f"create node pool {name}")
        info = self.get(name)
        if info is None:
            raise ProviderError(f"node pool {name} vanished right after its creation")
        return info

    def resize(self, name: str, node_count: int) -> PoolInfo:
        from google.api_core import exceptions as gexc

        self._refuse_if_busy(name, "resize")
        try:
            op = self._call(f"resize node pool {name}", self.client.set_node_pool_size,
                            name=self.pool_path(name), node_count=node_count)
        except gexc.NotFound:
            raise ProviderError(
                f"node pool {name} no longer exists", hint="run apply again to re-create it"
            ) from None
        self.notify(f"node pool {name}: resizing to {node_count} node(s) per zone ({op.name})")
        self.wait(op, f"resize node pool {name} to {node_count}")
        info = self.get(name)
        if info is None:
            raise ProviderError(f"node pool {name} vanished during its resize")
        return info

    def delete(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        if self.get(name) is None:
            return
        self._refuse_if_busy(name, "delete")
        try:
            op = self._call(f"delete node pool {name}", self.client.delete_node_pool,
                            name=self.pool_path(name))
        except gexc.NotFound:
            return
        self.notify(f"node pool {name}: deleting ({op.name})")
        self.wait(op, f"delete node pool {name}")

    def wait(self, op: Any, what: str) -> Any:
        """Poll an operation until DONE; its error, or a timeout, is a ProviderError."""
        from google.api_core import exceptions as gexc

        path = f"{self.location_path}/operations/{op.name}"
        deadline = time.monotonic() + self.timeout
        delay = 0.2  # quick first looks, then every ``poll`` seconds
        while _enum_name(op.status) != "DONE":
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"timed out after {self.timeout:g}s waiting to {what}: operation "
                    f"{op.name} is still {_enum_name(op.status)} and goes on in Google Cloud",
                    hint="the next `scalable plan` picks the pool up from its labels; raise "
                    "operation_timeout if pools are slow to come up here",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll)
            try:
                op = self._call(f"read operation {op.name}", self.client.get_operation,
                                name=path)
            except gexc.NotFound:
                raise ProviderError(f"operation {op.name} ({what}) disappeared") from None
        message = op.error.message if op.error and op.error.code else op.status_message
        if message:
            text = f"GKE could not {what}: {message}"
            hint = f"gcloud container operations describe {op.name} --location {self.location}"
            code = capacity_code(message)
            if code:
                raise CapacityShort(text, code, hint=hint)
            raise ProviderError(text, hint=hint)
        return op


def make_client(*, channel: Any = None, credentials: Any = None,
                endpoint: str | None = None) -> Any:
    """A ClusterManagerClient: over ``channel`` (tests), an insecure ``endpoint``
    (an emulator), or the real API with ``credentials``."""
    from google.cloud import container_v1
    from google.cloud.container_v1.services.cluster_manager.transports import (
        ClusterManagerGrpcTransport,
    )

    if channel is None and endpoint:
        import grpc

        channel = grpc.insecure_channel(endpoint)
    if channel is not None:
        return container_v1.ClusterManagerClient(
            transport=ClusterManagerGrpcTransport(channel=channel)
        )
    return container_v1.ClusterManagerClient(credentials=credentials)
