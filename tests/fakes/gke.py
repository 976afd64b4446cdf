"""An in-process fake of ``google.container.v1.ClusterManager`` over real gRPC.

google-cloud-container ships no servicer classes, so each RPC we use is registered with
``grpc.unary_unary_rpc_method_handler`` built from the proto-plus request/response types'
``deserialize``/``serialize``. The real ``ClusterManagerClient`` talks to it through its
own gRPC transport.

What it models, as GKE does it: one existing cluster; node pools whose every change is a
long-running operation (RUNNING, then DONE after ``op_seconds``, or DONE with an
``error``); a pool with an operation running on it refuses another change with
FAILED_PRECONDITION "Cluster is running incompatible operation …"; a regional pool's
``node_count`` is per zone; resizing does not change ``initial_node_count`` (the current
size is what the nodes say). Time advances lazily: operations settle whenever the fake is
read. Tests play "someone else" through :meth:`FakeGke.foreign_operation` and
:meth:`FakeGke.resize_outside`, inject failures with :attr:`FakeGke.fail_next`, and run
GCE out of a machine type in a zone with :attr:`FakeGke.stockout` (the pool's create
operation then ends in GCE's capacity error, as GKE reports it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import container_v1 as c

SERVICE = "google.container.v1.ClusterManager"


@dataclass
class _Op:
    proto: c.Operation
    due: float
    pool_path: str
    effect: Callable[[], None]
    fail: str | None = None
    hold: bool = False  # never finishes (a stuck operation)


@dataclass
class FakeNode:
    name: str
    pool: str
    zone: str
    machine_type: str
    spot: bool
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


class FakeGke:
    def __init__(
        self,
        *,
        project: str = "demo-project",
        location: str = "us-central1-a",
        cluster: str = "dev",
        zones: list[str] | None = None,
        op_seconds: float = 0.3,
        endpoint: str = "",
        ca_certificate: str = "",
    ) -> None:
        self.project = project
        self.location = location
        self.cluster_name = cluster
        self.zones = zones or [location]
        self.op_seconds = op_seconds
        self.lock = threading.RLock()
        self.cluster = c.Cluster(
            name=cluster,
            location=location,
            locations=self.zones,
            status=c.Cluster.Status.RUNNING,
            endpoint=endpoint,
            master_auth=c.MasterAuth(cluster_ca_certificate=ca_certificate),
            current_master_version="1.33.5-gke.1000",
        )
        self.pools: dict[str, c.NodePool] = {}
        self.sizes: dict[str, int] = {}  # actual node_count per zone, by pool name
        self.ops: dict[str, _Op] = {}
        # Operation type name → error message: the next such operation fails with it.
        self.fail_next: dict[str, str] = {}
        # (machine_type, zone) → GCE's capacity code ("GCE_STOCKOUT",
        # "ZONE_RESOURCE_POOL_EXHAUSTED"): creating a pool of that type there fails with it.
        self.stockout: dict[tuple[str, str], str] = {}
        # Operation type names whose next operation never completes.
        self.hold_next: set[str] = set()
        self.calls: list[str] = []
        # RPC method names that answer PERMISSION_DENIED (an account without the role).
        self.deny: set[str] = set()
        self._server: grpc.Server | None = None
        self.address = ""

    # -- paths --------------------------------------------------------------------------
    @property
    def cluster_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.cluster_name}"

    def _link(self, pool: str | None = None) -> str:
        base = (f"https://container.googleapis.com/v1/projects/{self.project}/zones/"
                f"{self.location}/clusters/{self.cluster_name}")
        return f"{base}/nodePools/{pool}" if pool else base

    # -- time ---------------------------------------------------------------------------
    def tick(self) -> None:
        """Settle every operation whose time has come."""
        with self.lock:
            now = time.monotonic()
            for op in self.ops.values():
                if op.proto.status != c.Operation.Status.RUNNING or op.hold or op.due > now:
                    continue
                if op.fail:
                    op.proto.error = {"code": 9, "message": op.fail}
                    op.proto.status_message = op.fail
                    pool = self.pools.get(op.pool_path.rsplit("/", 1)[-1])
                    if pool is not None:
                        if op.proto.operation_type == c.Operation.Type.CREATE_NODE_POOL:
                            pool.status = c.NodePool.Status.ERROR
                            pool.status_message = op.fail
                        else:
                            pool.status = c.NodePool.Status.RUNNING
                else:
                    op.effect()
                op.proto.status = c.Operation.Status.DONE
                op.proto.end_time = _now()

    def finish(self, name: str) -> None:
        """Let a held operation complete now."""
        with self.lock:
            self.ops[name].hold = False
            self.ops[name].due = 0
        self.tick()

    def _start(self, kind: str, pool: str, effect: Callable[[], None],
               seconds: float | None = None, fail: str | None = None) -> c.Operation:
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
        proto = c.Operation(
            name=name,
            zone=self.location,
            location=self.location,
            operation_type=c.Operation.Type[kind],
            status=c.Operation.Status.RUNNING,
            self_link=f"{self._link()}/operations/{name}".replace(
                f"/clusters/{self.cluster_name}", ""),
            target_link=self._link(pool or None),
            start_time=_now(),
        )
        op = _Op(
            proto=proto,
            due=time.monotonic() + (self.op_seconds if seconds is None else seconds),
            pool_path=f"{self.cluster_path}/nodePools/{pool}",
            effect=effect,
            fail=self.fail_next.pop(kind, None) or fail,
            hold=kind in self.hold_next,
        )
        self.hold_next.discard(kind)
        self.ops[name] = op
        return c.Operation(proto)

    def _busy(self, pool: str) -> _Op | None:
        for op in self.ops.values():
            if op.proto.status != c.Operation.Status.RUNNING:
                continue
            if op.proto.target_link in (self._link(pool), self._link()):
                return op
        return None

    # -- "someone else" ---------------------------------------------------------------------
    def foreign_operation(self, pool: str, kind: str = "UPGRADE_NODES",
                          seconds: float = 3600.0) -> str:
        """Another actor's operation on ``pool`` (``""``: the cluster), running for a while."""
        with self.lock:
            op = self._start(kind, pool, lambda: None, seconds=seconds)
            p = self.pools.get(pool)
            if p is not None:
                p.status = c.NodePool.Status.RECONCILING
            return op.name

    def resize_outside(self, pool: str, node_count: int) -> None:
        """Someone resized the pool with gcloud: done at once."""
        with self.lock:
            self.sizes[pool] = node_count

    # -- nodes, for the fake Kubernetes API -----------------------------------------------
    def nodes(self) -> list[FakeNode]:
        self.tick()
        out: list[FakeNode] = []
        with self.lock:
            for name, pool in self.pools.items():
                if pool.status not in (c.NodePool.Status.RUNNING,
                                       c.NodePool.Status.RECONCILING,
                                       c.NodePool.Status.RUNNING_WITH_ERROR):
                    continue
                cfg = pool.config
                for zone in pool.locations or self.zones:
                    for k in range(self.sizes.get(name, 0)):
                        labels = {
                            "cloud.google.com/gke-nodepool": name,
                            "topology.kubernetes.io/zone": zone,
                            "node.kubernetes.io/instance-type": cfg.machine_type,
                            **dict(cfg.labels),
                        }
                        if cfg.spot:
                            labels["cloud.google.com/gke-spot"] = "true"
                        out.append(FakeNode(
                            name=f"gke-{self.cluster_name}-{name}-{zone[-1]}{k:03d}",
                            pool=name, zone=zone, machine_type=cfg.machine_type,
                            spot=bool(cfg.spot), labels=labels,
                            taints=[{"key": t.key, "value": t.value,
                                     "effect": _effect(t.effect)} for t in cfg.taints],
                        ))
        return out

    # -- RPCs ---------------------------------------------------------------------------
    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls.append(method)
        if method in self.deny:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"Required 'container.clusters.update' permission for "
                          f"'{self.cluster_path}'.")

    def _pool_name(self, path: str, context: grpc.ServicerContext) -> str:
        prefix = f"{self.cluster_path}/nodePools/"
        if not path.startswith(prefix):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {path}.")
        return path[len(prefix):]

    def _check_cluster(self, path: str, context: grpc.ServicerContext) -> None:
        if path != self.cluster_path:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"Not found: {path}. Could not find cluster.")

    def get_cluster(self, req: c.GetClusterRequest, context: Any) -> c.Cluster:
        self._enter("GetCluster", context)
        self._check_cluster(req.name, context)
        return self.cluster

    def list_node_pools(self, req: c.ListNodePoolsRequest, context: Any
                        ) -> c.ListNodePoolsResponse:
        self._enter("ListNodePools", context)
        self._check_cluster(req.parent, context)
        self.tick()
        with self.lock:
            return c.ListNodePoolsResponse(node_pools=list(self.pools.values()))

    def get_node_pool(self, req: c.GetNodePoolRequest, context: Any) -> c.NodePool:
        self._enter("GetNodePool", context)
        name = self._pool_name(req.name, context)
        self.tick()
        with self.lock:
            pool = self.pools.get(name)
            if pool is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {req.name}.")
            return pool

    def create_node_pool(self, req: c.CreateNodePoolRequest, context: Any) -> c.Operation:
        self._enter("CreateNodePool", context)
        self._check_cluster(req.parent, context)
        self.tick()
        with self.lock:
            pool = c.NodePool(req.node_pool)
            if not pool.name or not pool.config.machine_type:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "node_pool.name and config.machine_type are required")
            if pool.name in self.pools:
                context.abort(grpc.StatusCode.ALREADY_EXISTS,
                              f"Already exists: {req.parent}/nodePools/{pool.name}.")
            busy = self._busy(pool.name)
            if busy is not None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"Cluster is running incompatible operation {busy.proto.name}.")
            pool.status = c.NodePool.Status.PROVISIONING
            pool.locations = list(pool.locations) or self.zones
            pool.self_link = f"{self._link(pool.name)}"
            self.pools[pool.name] = pool
            count = pool.initial_node_count

            def done() -> None:
                pool.status = c.NodePool.Status.RUNNING
                self.sizes[pool.name] = count

            return self._start("CREATE_NODE_POOL", pool.name, done,
                               fail=self._stockout(pool))

    def _stockout(self, pool: c.NodePool) -> str | None:
        """GCE's error for a pool whose machine type has run out in one of its zones
        (the wording of GKE's operation error for it)."""
        for zone in pool.locations:
            code = self.stockout.get((pool.config.machine_type, zone))
            if code:
                return (f"Google Compute Engine: Not enough resources are available to "
                        f"fulfill the request: zone {zone}, machine type "
                        f"{pool.config.machine_type}. Try a different location, or try "
                        f"again later. [{code}]")
        return None

    def _changeable(self, path: str, context: Any) -> tuple[str, c.NodePool]:
        """The pool at ``path`` (call with the lock held): NOT_FOUND if there is none,
        FAILED_PRECONDITION while an operation runs on it or on the cluster, as GKE."""
        name = self._pool_name(path, context)
        pool = self.pools.get(name)
        if pool is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {path}.")
        busy = self._busy(name)
        if busy is not None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"Cluster is running incompatible operation {busy.proto.name}.")
        assert pool is not None
        return name, pool

    def set_node_pool_size(self, req: c.SetNodePoolSizeRequest, context: Any) -> c.Operation:
        self._enter("SetNodePoolSize", context)
        self.tick()
        with self.lock:
            name, pool = self._changeable(req.name, context)
            pool.status = c.NodePool.Status.RECONCILING
            count = req.node_count

            def done() -> None:
                pool.status = c.NodePool.Status.RUNNING
                self.sizes[name] = count

            return self._start("SET_NODE_POOL_SIZE", name, done)

    def delete_node_pool(self, req: c.DeleteNodePoolRequest, context: Any) -> c.Operation:
        self._enter("DeleteNodePool", context)
        self.tick()
        with self.lock:
            name, pool = self._changeable(req.name, context)
            pool.status = c.NodePool.Status.STOPPING

            def done() -> None:
                self.pools.pop(name, None)
                self.sizes.pop(name, None)

            return self._start("DELETE_NODE_POOL", name, done)

    def get_operation(self, req: c.GetOperationRequest, context: Any) -> c.Operation:
        self._enter("GetOperation", context)
        self.tick()
        name = req.name.rsplit("/", 1)[-1]
        with self.lock:
            op = self.ops.get(name)
            if op is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: {req.name}.")
            return c.Operation(op.proto)

    def list_operations(self, req: c.ListOperationsRequest, context: Any
                        ) -> c.ListOperationsResponse:
        self._enter("ListOperations", context)
        self.tick()
        with self.lock:
            return c.ListOperationsResponse(
                operations=[c.Operation(o.proto) for o in self.ops.values()]
            )

    # -- server ---------------------------------------------------------------------------
    def handlers(self) -> grpc.GenericRpcHandler:
        table = {
            "GetCluster": (self.get_cluster, c.GetClusterRequest, c.Cluster),
            "ListNodePools": (self.list_node_pools, c.ListNodePoolsRequest,
                              c.ListNodePoolsResponse),
            "GetNodePool": (self.get_node_pool, c.GetNodePoolRequest, c.NodePool),
            "CreateNodePool": (self.create_node_pool, c.CreateNodePoolRequest, c.Operation),
            "SetNodePoolSize": (self.set_node_pool_size, c.SetNodePoolSizeRequest,
                                c.Operation),
            "DeleteNodePool": (self.delete_node_pool, c.DeleteNodePoolRequest, c.Operation),
            "GetOperation": (self.get_operation, c.GetOperationRequest, c.Operation),
            "ListOperations": (self.list_operations, c.ListOperationsRequest,
                               c.ListOperationsResponse),
        }
        return grpc.method_handlers_generic_handler(SERVICE, {
            name: grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.deserialize, response_serializer=resp.serialize
            )
            for name, (fn, req, resp) in table.items()
        })

    def start(self) -> FakeGke:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((self.handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.address = f"127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0.5).wait()
            self._server = None

    def client(self) -> Any:
        """The real ClusterManagerClient on its own channel to this fake."""
        from google.cloud.container_v1.services.cluster_manager.transports import (
            ClusterManagerGrpcTransport,
        )

        channel = grpc.insecure_channel(self.address)
        return c.ClusterManagerClient(transport=ClusterManagerGrpcTransport(channel=channel))


def _effect(effect: Any) -> str:
    return {
        c.NodeTaint.Effect.NO_SCHEDULE: "NoSchedule",
        c.NodeTaint.Effect.PREFER_NO_SCHEDULE: "PreferNoSchedule",
        c.NodeTaint.Effect.NO_EXECUTE: "NoExecute",
    }.get(effect, "NoSchedule")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
