"""The GKE provider: a node pool per worker group on an existing cluster, Dask on it.

Resources (addresses → types):

- ``node_pool.<group>`` → ``gke.node_pool``: created, resized in place (``node_count``)
  and deleted through the ClusterManager API; its size follows from the group's workers,
  the worker size and the machine type (``sizing.py``). The first on-demand group's pool
  also hosts the scheduler.
- ``scheduler`` → ``k8s.deployment``: one scheduler pod, a LoadBalancer Service limited
  to ``allowed_cidrs``, and a Secret with the TLS material the pods need.
- ``workers.<group>`` → ``k8s.statefulset``: ``replicas`` pods, each running
  ``processes`` Dask workers named after the pod (``<name>-0`` …), so the engine knows
  the names to wait for; resizing a group is an in-place update of ``replicas``.

Creation goes node pool → scheduler → workers; deletion the other way round. Everything
carries the state's lineage, the target and its address (GCE resource labels and VM
metadata on pools, Kubernetes labels and annotations on objects), which is how
``discover`` finds what an interrupted apply never recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalable import addrs
from scalable.addrs import SCHEDULER
from scalable.outputs import DASHBOARD_COMMAND, SCHEDULER_ADDRESS, SCHEDULER_CLUSTER_ADDRESS
from scalable.pricing.estimator import Price
from scalable.providers import containers
from scalable.providers.base import (
    CreateContext,
    Created,
    Discovered,
    Observation,
    Provider,
    ProviderError,
    ResourceSpec,
)
from scalable.providers.gke import accelerators, auth, manifests, sizing
from scalable.providers.gke.config import GkeGroup, GkeTarget
from scalable.providers.gke.pricing import pool_price
from scalable.providers.retire import retire_workers
from scalable.spec import GroupSpec, TargetSpec
from scalable.state.model import ResourceRecord, now_iso
from scalable.tls import tls_files

POOL = "gke.node_pool"
DEPLOYMENT = "k8s.deployment"
STATEFULSET = "k8s.statefulset"
UPDATABLE = {"node_count", "replicas", "allowed_cidrs"}
DEFAULT_IMAGE = "ghcr.io/dask/dask"
_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_name(text: str, limit: int) -> str:
    """A DNS-1123 label (what GKE pool and Kubernetes object names must be), at most
    ``limit`` long; a hash keeps truncated names distinct."""
    name = _INVALID.sub("-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "s-" + name
    if len(name) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:4]
        name = name[: limit - 5].rstrip("-") + "-" + digest
    return name


def gce_label(value: str) -> str:
    """A GCE label value: lower-case letters, digits, '-' and '_', at most 63."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def default_image() -> str:
    """The official Dask image of the Dask and Python versions installed here (clients and
    the cluster must match: scalable.versions); the same rule as AWS's default."""
    from scalable.providers.commands import dask_image

    return dask_image()


def _keys(g: GroupSpec) -> GkeGroup:
    return g.settings_as(GkeGroup)


class GkeProvider(Provider):
    name = "gke"
    target_model = GkeTarget
    group_model = GkeGroup
    # How long a scheduler pod may take to become ready (image pull included).
    pod_timeout = 900.0
    # How long a scheduler pod may stay Unschedulable with its pool at rest.
    unschedulable_grace = 120.0
    # Longest pause between polls of GKE operations and of pods (they start at 0.2 s).
    op_poll = 5.0
    kube_poll = 2.0

    def __init__(
        self,
        target: Any,
        workdir: Path,
        *,
        channel: Any = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        retry: Any = "default",
    ) -> None:
        """``channel`` (a grpc channel) and ``kubeconfig`` are for tests and emulators;
        ``retry=None`` turns google.api_core's retries off."""
        super().__init__(target, workdir)
        self._channel = channel
        self._kubeconfig = str(kubeconfig) if kubeconfig else os.environ.get(
            auth.KUBECONFIG_ENV)
        self._retry = retry
        self._credentials: Any = None
        self._project: str | None = None
        self._pools: Any = None
        self._kube: Any = None
        self._cluster: Any = None

    # -- configuration ----------------------------------------------------------------------
    @property
    def cfg(self) -> GkeTarget:
        return self.target.config_as(GkeTarget)

    @property
    def emulated(self) -> bool:
        return self._channel is not None or auth.emulator_endpoint() is not None

    def _credentials_and_project(self) -> tuple[Any, str]:
        if self._project is not None:
            return self._credentials, self._project
        creds, adc_project = (None, None) if self.emulated else auth.application_default()
        project = (self.cfg.project or adc_project or os.environ.get("GOOGLE_CLOUD_PROJECT")
                   or os.environ.get("CLOUDSDK_CORE_PROJECT"))
        if not project:
            raise ProviderError(
                f"target {self.target.name!r}: no Google Cloud project",
                hint="set `project:` in the target, or `gcloud config set project ID`",
            )
        self._credentials, self._project = creds, project
        return creds, project

    def _required(self) -> None:
        missing = [k for k in ("cluster", "location") if not getattr(self.cfg, k)]
        if missing:
            raise ProviderError(
                f"target {self.target.name!r} needs {' and '.join(missing)}: scalable adds "
                "node pools to an existing GKE cluster",
                hint="e.g. cluster: my-cluster, location: us-central1 (gcloud container "
                "clusters list)",
            )

    @property
    def pools(self) -> Any:
        if self._pools is None:
            from scalable.providers.gke.pools import Pools, make_client

            self._required()
            creds, project = self._credentials_and_project()
            client = make_client(channel=self._channel, credentials=creds,
                                 endpoint=auth.emulator_endpoint())
            self._pools = Pools(
                client, project=project, location=str(self.cfg.location),
                cluster=str(self.cfg.cluster), timeout=self.cfg.operation_timeout,
                poll=self.op_poll, retry=self._retry,
            )
        return self._pools

    def cluster(self) -> Any:
        if self._cluster is None:
            self._cluster = self.pools.cluster()
        return self._cluster

    @property
    def kube(self) -> Any:
        if self._kube is None:
            from scalable.providers.gke.kube import Kube

            if self._kubeconfig:
                self._kube = Kube.from_kubeconfig(self._kubeconfig, self.cfg.namespace,
                                                  os.environ.get(auth.KUBE_CONTEXT_ENV))
            else:
                cluster = self.cluster()
                creds, _ = self._credentials_and_project()
                self._kube = Kube.from_cluster(
                    cluster.endpoint, cluster.ca_certificate, self.cfg.namespace,
                    folder=self.workdir / "gke",
                    token=None if creds is None else (lambda: auth.bearer_token(creds)),
                )
        return self._kube

    def kube_in(self, record: ResourceRecord) -> Any:
        """The Kubernetes client for the namespace a record's objects live in (the
        manifest's namespace may have changed since)."""
        from scalable.providers.gke.kube import Kube

        namespace = str(record.meta.get("namespace") or self.cfg.namespace)
        kube = self.kube
        return kube if namespace == kube.namespace else Kube(kube.api_client, namespace)

    def _same_cluster(self, record: ResourceRecord) -> None:
        """Refuse to act on a pool of another cluster than the manifest's: looking for it
        in the wrong one would find nothing and forget it."""
        cluster, location = record.meta.get("cluster"), record.meta.get("location")
        if (cluster and cluster != self.cfg.cluster) or (location and
                                                         location != self.cfg.location):
            raise ProviderError(
                f"{record.address} is a node pool of cluster {cluster} ({location}); the "
                f"manifest now names cluster {self.cfg.cluster} ({self.cfg.location})",
                hint="destroy with the old cluster/location first (or put them back), then "
                "change the manifest",
            )

    # -- names --------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return dns_name(self.cfg.node_pool or
                        f"scalable-{self.target.project}-{self.target.name}", 40)

    def pool_name(self, group: str) -> str:
        first = self.target.groups[0].name if self.target.groups else "default"
        return self.base if group == first else dns_name(f"{self.base}-{group}", 40)

    @property
    def scheduler_name(self) -> str:
        return dns_name(f"{self.base}-scheduler", 52)

    @property
    def secret_name(self) -> str:
        return dns_name(f"{self.base}-tls", 52)

    def workers_name(self, group: str) -> str:
        return dns_name(f"{self.base}-{group}", 52)

    # -- planning -----------------------------------------------------------------------------
    @staticmethod
    def machine_choices(group: Any) -> list[str]:
        """A group's machine types in order: ``machine_types`` if given (the first is
        what is planned and priced), else ``machine_type``."""
        k = _keys(group)
        return [str(t) for t in k.machine_types] if k.machine_types else [k.machine_type]

    @staticmethod
    def _shape(group: Any, mt: str) -> sizing.Shape:
        shape = sizing.machine_shape(mt)
        if shape is None:
            raise ProviderError(
                f"group {group.name}: machine type {mt!r} is unknown here (its vCPUs and "
                "memory are needed to size the node pool)",
                hint="use a predefined type such as e2-standard-4 or n2-highmem-8, or "
                "custom-<vCPUs>-<MiB>",
            )
        return shape

    def _group_shape(self, group: Any) -> tuple[sizing.Shape, int, int]:
        """(machine shape of the first choice, memory per worker, pods) of a group."""
        shape = self._shape(group, self.machine_choices(group)[0])
        memory = group.memory_per_worker or sizing.default_worker_memory(
            shape, group.threads_per_worker)
        processes = int(_keys(group).processes)
        return shape, memory, math.ceil(group.count / processes)

    def _nodes(self, g: Any, shape: sizing.Shape, memory: int, pods: int) -> int:
        """Nodes of ``shape`` the group's pods (and the scheduler, on its host) need.
        The pods' size is the first choice's on every alternative."""
        pod = sizing.worker_pod(g.threads_per_worker, int(_keys(g).processes), memory)
        host = g.name == self.scheduler_group().name
        nodes = sizing.nodes_for(([sizing.SCHEDULER_POD] if host else []) + [pod] * pods,
                                 shape)
        # A GPU group: one worker pod per GPU node (the node's accelerators are the pod's).
        return max(nodes, pods) if g.gpus else nodes

    def scheduler_group(self) -> Any:
        """The group whose pool hosts the scheduler: the first on-demand one (a spot
        preemption would take the whole run's state with it), else the first."""
        groups = self.target.groups
        return next((g for g in groups if not _keys(g).spot), groups[0])

    @staticmethod
    def group_image(g: GroupSpec, default: str) -> str:
        """A group's image: its container's, else the target's."""
        c = g.container
        return str(c.image) if c is not None and c.image else default

    def desired(self, target: TargetSpec | None = None) -> list[ResourceSpec]:
        target = target or self.target
        # With `zones:` the pool lives in one zone at a time (the next on a shortage).
        zones = 1 if self.cfg.zones else len(self.cluster().zones)
        host = self.scheduler_group()
        image = self.cfg.image or default_image()
        pools: list[ResourceSpec] = []
        workers: list[ResourceSpec] = []
        for g in target.groups:
            shape, memory, pods = self._group_shape(g)
            processes = int(_keys(g).processes)
            spot = bool(_keys(g).spot)
            pool = self.pool_name(g.name)
            pool_attrs: dict[str, Any] = {
                "name": pool, "machine_type": shape.name, "spot": spot,
                "disk_size_gb": self.cfg.disk_size_gb,
                "node_count": sizing.node_count(self._nodes(g, shape, memory, pods), zones),
                "zones": zones, "location": self.cfg.location,
            }
            if self.cfg.zones:
                pool_attrs["locations"] = list(self.cfg.zones)
            choices = self.machine_choices(g)
            if len(choices) > 1:
                # Tried in order when GCE has no capacity for one; each has its own size
                # (the same pods on other machines). What was obtained is in the meta.
                pool_attrs.update(machine_types=choices, node_counts=[
                    sizing.node_count(self._nodes(g, self._shape(g, t), memory, pods), zones)
                    for t in choices])
            if g.gpus:
                pool_attrs.update(
                    accelerator_type=accelerators.resolve(g.gpu_type, g.name),
                    accelerator_count=g.gpus * processes)
            pools.append(ResourceSpec(
                address=addrs.node_pool(g.name), type=POOL, attributes=pool_attrs))
            sts = self.workers_name(g.name)
            names = tuple(n for i in range(pods)
                          for n in _worker_names(f"{sts}-{i}", processes))
            workers.append(ResourceSpec(
                address=addrs.worker(g.name), type=STATEFULSET, group=g.name,
                attributes={
                    "name": sts, "image": self.group_image(g, image), "pool": pool,
                    "spot": spot, "replicas": pods, "processes": processes,
                    "threads_per_worker": g.threads_per_worker,
                    "memory_per_worker": memory, "tags": list(g.tags),
                    **({"gpus": g.gpus * processes} if g.gpus else {}),
                    **({"container": containers.describe(g.container)}
                       if g.container is not None else {}),
                },
                worker_names=names,
                depends_on=(SCHEDULER, addrs.node_pool(g.name)),
            ))
        scheduler = ResourceSpec(
            address=SCHEDULER, type=DEPLOYMENT,
            attributes={
                "name": self.scheduler_name, "image": image,
                "pool": self.pool_name(host.name),
                "spot": bool(_keys(host).spot),
                "namespace": self.cfg.namespace, "tls": target.tls,
                "allowed_cidrs": list(self.cfg.allowed_cidrs),
                "idle_timeout": self.target.idle_timeout,
            },
            depends_on=(addrs.node_pool(host.name),),
        )
        return [scheduler, *pools, *workers]

    def check_config(self) -> None:
        self._required()
        if not self.cfg.allowed_cidrs:
            raise ProviderError(
                f"target {self.target.name!r} needs allowed_cidrs: the client networks "
                "allowed to reach the scheduler (never 0.0.0.0/0 by default)",
                hint="e.g. allowed_cidrs: [\"203.0.113.7/32\"] for your public IP; private "
                "ranges only (10.0.0.0/8 …) give an internal load balancer",
            )
        for cidr in self.cfg.allowed_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ProviderError(f"allowed_cidrs: {cidr!r} is not a CIDR",
                                    hint="e.g. 203.0.113.7/32") from None
        for g in self.target.groups:
            c = g.container
            if c is not None and c.runtime not in containers.OCI:
                raise ProviderError(f"group {g.name}: GKE runs OCI images, not {c.runtime}",
                                    hint="use runtime: docker with an image reference")
            if c is not None and c.options:
                raise ProviderError(f"group {g.name}: GKE pods take no container runtime "
                                    "options", hint="remove options:")
        for g in self.target.groups:  # machine types known, pods fit on every choice
            _, memory, _ = self._group_shape(g)
            for mt in self.machine_choices(g):
                shape = self._shape(g, mt)
                self._nodes(g, shape, memory, 1)
                if g.gpus:
                    accelerators.check_machine(accelerators.resolve(g.gpu_type, g.name),
                                               shape.name, g.name)

    def validate(self) -> None:
        self.check_config()
        cluster = self.cluster()
        if cluster.status not in ("RUNNING", "RECONCILING"):
            raise ProviderError(f"GKE cluster {cluster.name} is {cluster.status}",
                                hint="wait until it is RUNNING")
        self.desired()  # sizing: every pod must fit on its machine type
        zones = list(cluster.zones) or [str(self.cfg.location)]
        outside = [z for z in self.cfg.zones or () if z not in zones]
        if outside:
            raise ProviderError(
                f"target {self.target.name!r}: zones {', '.join(outside)} are not zones of "
                f"cluster {cluster.name} ({', '.join(zones)})",
                hint="a node pool can only use its cluster's zones (gcloud container "
                "clusters update --node-locations adds some)",
            )
        zones = list(self.cfg.zones or zones)
        for g in self.target.groups:
            if g.gpus:
                accelerators.check_zones(accelerators.resolve(g.gpu_type, g.name), zones,
                                         g.name)
        if self.kube.read("namespace", self.cfg.namespace) is None:
            raise ProviderError(
                f"namespace {self.cfg.namespace!r} does not exist in cluster {cluster.name}",
                hint=f"kubectl create namespace {self.cfg.namespace}",
            )

    def updatable(self, before: dict[str, Any], after: dict[str, Any]) -> bool:
        """In place: a pool's node_count, a StatefulSet's replicas, the scheduler's
        allowed_cidrs (unless the load balancer turns internal or external: GKE cannot
        change that on a live Service)."""
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if "allowed_cidrs" in changed and manifests.all_private(
                before.get("allowed_cidrs") or []) != manifests.all_private(
                after.get("allowed_cidrs") or []):
            return False
        return bool(changed) and changed <= UPDATABLE

    def price(self, resource: ResourceSpec) -> Price:
        if resource.type == POOL:
            a = resource.attributes
            first = pool_price(a, self.target.pricing)
            types = list(a.get("machine_types") or ())
            if len(types) < 2:
                return first
            # `plan` prices the first choice and shows the range the failover may cost.
            choices = tuple(
                (str(t), pool_price({**a, "machine_type": t, "node_count": n},
                                    self.target.pricing).hourly)
                for t, n in zip(types, a.get("node_counts") or (), strict=True))
            return dataclasses.replace(first, choices=choices)
        pool = resource.attributes.get("pool", "")
        return Price(hourly=0.0, source=f"runs on node pool {pool}")

    def startup_seconds(self) -> float:
        """Create to registered worker, for objective planning: an estimate (a new GKE
        node pool typically takes a few minutes, then the Dask image is pulled)."""
        return 240.0

    def horizon_hours(self) -> float | None:
        obj = self.target.objectives
        return obj.deadline_hours if obj and obj.deadline_hours else None

    # -- refresh ------------------------------------------------------------------------------
    def observe(self, records: Sequence[ResourceRecord]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        for rec in records:
            if rec.type == POOL:
                out[rec.address] = self._observe_pool(rec)
            elif rec.type in (DEPLOYMENT, STATEFULSET):
                out[rec.address] = self._observe_workload(rec)
        return out

    def _observe_pool(self, rec: ResourceRecord) -> Observation:
        self._same_cluster(rec)
        name = str(rec.meta.get("name") or rec.attributes.get("name"))
        info = self.pools.get(name)
        if info is None:
            return Observation("gone", f"node pool {name} no longer exists")
        if info.status in ("STOPPING",):
            return Observation("gone", f"node pool {name} is being deleted")
        if info.status == "ERROR":
            return Observation("gone", f"node pool {name} is in ERROR: {info.status_message}")
        running = self.pools.running(name)
        if info.status == "PROVISIONING" or running:
            what = (f"{running[0].operation_type.name} {running[0].name}" if running
                    else "provisioning")
            return Observation("pending", f"node pool {name}: {what} in progress")
        zones = max(len(info.zones), 1)
        nodes = self.kube.select("node", f"{manifests.POOL_LABEL}={name}")
        details = {"nodes": len(nodes), "status": info.status}
        if info.status == "RUNNING_WITH_ERROR":
            details["message"] = info.status_message
        # GKE's API has no current size (initialNodeCount is the first one): the nodes
        # registered in Kubernetes are the size.
        count = len(nodes) // zones
        if rec.meta.get("machine_type") and count == rec.meta.get("node_count"):
            # A failover's pool has the obtained type's size, which is what was planned.
            details["machine_type"] = rec.meta["machine_type"]
            count = int(rec.attributes.get("node_count", count))
        return Observation("alive", details=details, attributes={"node_count": count})

    def _observe_workload(self, rec: ResourceRecord) -> Observation:
        kind = "deployment" if rec.type == DEPLOYMENT else "statefulset"
        name = str(rec.meta.get("name") or rec.attributes.get("name"))
        kube = self.kube_in(rec)
        obj = kube.read(kind, name)
        if obj is None:
            return Observation("gone", f"{kind} {name} no longer exists")
        if rec.type == DEPLOYMENT:
            svc = kube.read("service", str(rec.meta.get("service", name)))
            if svc is None:
                return Observation("gone", f"service {rec.meta.get('service', name)} "
                                           "no longer exists")
        want = int(obj.get("spec", {}).get("replicas", 1))
        pods = kube.select("pod", _selector_text(manifests.selector(
            _lineage_of(obj), rec.address)))
        ready, problems = manifests.summarize(pods, want)
        attributes = {"replicas": want} if rec.type == STATEFULSET else {}
        details = {"ready": ready, "replicas": want}
        if problems and ready < want:
            return Observation("pending", f"{ready}/{want} pod(s) ready; " +
                               "; ".join(problems), details=details, attributes=attributes)
        return Observation("alive", details=details, attributes=attributes)

    def discover(self, lineage: str) -> list[Discovered]:
        return self._find(lineage)

    def discover_all(self) -> list[Discovered]:
        """Node pools and workloads scalable made for this project and target in this
        cluster (and namespace), of any lineage (``import``, ``sweep``)."""
        return self._find(None)

    def _find(self, lineage: str | None) -> list[Discovered]:
        out: list[Discovered] = []
        target, project = self.target.name, self.target.project
        for info in self.pools.all():
            rl = info.resource_labels
            if lineage is not None:
                if rl.get("scalable-lineage") != gce_label(lineage):
                    continue
            elif (rl.get("scalable-target") != gce_label(target)
                  or rl.get("scalable-project") != gce_label(project)
                  or "scalable-lineage" not in rl):
                continue
            status = ("pending" if info.status in ("PROVISIONING", "RECONCILING")
                      else "gone" if info.status in ("STOPPING", "ERROR") else "alive")
            out.append(Discovered(
                address=info.metadata.get("scalable-address", addrs.node_pool(info.name)),
                type=POOL, id=self.pools.pool_path(info.name),
                idempotency_key=info.metadata.get("scalable-key", ""),
                meta={"name": info.name, "cluster": self.cfg.cluster,
                      "location": self.cfg.location},
                status=status,  # type: ignore[arg-type]
                lineage=info.labels.get(manifests.LABEL_LINEAGE, rl["scalable-lineage"]),
                created_at=info.metadata.get("scalable-created"),
            ))
        sel = (f"{manifests.LABEL_LINEAGE}={lineage}" if lineage is not None
               else f"{manifests.LABEL_LINEAGE},{manifests.LABEL_TARGET}={target}")
        seen: dict[str, Discovered] = {}
        for kind, rtype in (("deployment", DEPLOYMENT), ("statefulset", STATEFULSET),
                            ("service", DEPLOYMENT), ("secret", DEPLOYMENT)):
            for obj in self.kube.select(kind, sel):
                meta = obj["metadata"]
                notes = meta.get("annotations") or {}
                if lineage is None and notes.get(manifests.ANN_PROJECT, project) != project:
                    continue
                key = notes.get(manifests.ANN_KEY, "")
                address = (meta.get("labels") or {}).get(manifests.LABEL_ADDRESS, "?")
                found = seen.get(key)
                if found is None:
                    found = seen[key] = Discovered(
                        address=address, type=rtype,
                        id=f"{self.cfg.namespace}/{kind}s/{meta['name']}",
                        idempotency_key=key, meta={"name": meta["name"]},
                        lineage=_lineage_of(obj),
                        created_at=meta.get("creationTimestamp"),
                    )
                    out.append(found)
                if kind in ("service", "secret"):
                    found.meta[kind] = meta["name"]
                if kind in ("deployment", "statefulset") and found.type == rtype:
                    found.id = f"{self.cfg.namespace}/{kind}s/{meta['name']}"
                    found.meta["name"] = meta["name"]
                    found.created_at = meta.get("creationTimestamp") or found.created_at
        return out

    # -- changes ------------------------------------------------------------------------------
    def create(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        if resource.type == POOL:
            return self._create_pool(resource, ctx)
        if resource.is_scheduler:
            return self._create_scheduler(resource, ctx)
        return self._create_workers(resource, ctx)

    def _create_pool(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.gke.pools import CapacityShort, capacity_code

        a = resource.attributes
        types = [str(t) for t in a.get("machine_types") or [a["machine_type"]]]
        counts = [int(n) for n in a.get("node_counts") or [a["node_count"]]]
        zones: list[str | None] = list(a.get("locations") or [None])
        # The preferred type in every zone before the next type, as EC2's subnets: the
        # type is what the user chose by price and shape.
        choices = [(t, n, z) for t, n in zip(types, counts, strict=True) for z in zones]
        self.pools.notify = self._notify
        short: list[str] = []
        for mt, count, zone in choices:
            try:
                info = self.pools.create(self._node_pool(resource, ctx, mt, count, zone),
                                         lineage=gce_label(ctx.lineage))
                code = capacity_code(info.status_message) if info.status == "ERROR" else None
                if code:  # an earlier attempt's refused pool, adopted
                    raise CapacityShort(info.status_message, code)
            except CapacityShort as exc:
                if len(choices) == 1:
                    raise
                short.append(f"{mt}{'' if len(zones) == 1 else f' in {zone}'}: {exc.code}")
                # GKE keeps a refused pool in ERROR under its name: it must go before the
                # next choice can take that name (the workers' pods select it by name).
                self.pools.delete(str(a["name"]))
                continue
            meta: dict[str, Any] = {"name": info.name, "cluster": self.cfg.cluster,
                                    "location": self.cfg.location}
            if short or info.machine_type != types[0]:
                meta.update(machine_type=info.machine_type, node_count=count)
            if zone is not None:
                meta["zone"] = zone
            if short:
                meta["failover"] = short  # what was obtained instead, and why (report)
            return Created(id=self.pools.pool_path(info.name), meta=meta)
        where = "zones" if len(types) == 1 else (
            "machine_types" if len(zones) == 1 else "machine_types and zones")
        raise ProviderError(
            f"no capacity for {resource.address} in any of its {where} "
            f"({'; '.join(short)})",
            hint="add more machine_types or zones (or spot: false); what was created is "
            "kept",
        )

    def _node_pool(self, resource: ResourceSpec, ctx: CreateContext, machine_type: str,
                   node_count: int, zone: str | None = None) -> Any:
        """The container_v1.NodePool of one choice (in ``zone`` only, if given)."""
        from google.cloud import container_v1 as c

        a = resource.attributes
        name = str(a["name"])
        spot = bool(a.get("spot"))
        return c.NodePool(
            name=name,
            initial_node_count=node_count,
            locations=[zone] if zone else [],
            config=c.NodeConfig(
                machine_type=machine_type,
                disk_size_gb=int(a["disk_size_gb"]),
                spot=spot,
                labels={manifests.LABEL_LINEAGE: ctx.lineage,
                        manifests.LABEL_TARGET: ctx.target},
                resource_labels={
                    "scalable-lineage": gce_label(ctx.lineage),
                    "scalable-target": gce_label(ctx.target),
                    "scalable-project": gce_label(ctx.project),
                    "scalable-address": gce_label(resource.address.replace(".", "-")),
                },
                # Label values cannot hold the address or key as they are: VM metadata can.
                metadata={"scalable-address": resource.address,
                          "scalable-key": ctx.idempotency_key,
                          # When it was asked for (GKE keeps no creation time on a pool):
                          # sweep shows its age and its cost so far.
                          "scalable-created": now_iso(),
                          "disable-legacy-endpoints": "true"},
                taints=[c.NodeTaint(key=k, value=v, effect=c.NodeTaint.Effect.NO_SCHEDULE)
                        for k, v in manifests.pool_taints(name, spot)],
                accelerators=accelerators.node_config_accelerators(
                    str(a["accelerator_type"]), int(a["accelerator_count"]))
                if a.get("accelerator_type") else [],
            ),
        )

    def _notify(self, message: str) -> None:
        self.hooks.progress(message)

    def _labels(self, ctx: CreateContext, address: str, component: str) -> dict[str, str]:
        return manifests.ours(ctx.lineage, ctx.target, address, component)

    def _ensure(self, kind: str, body: dict[str, Any], key: str) -> dict[str, Any]:
        """Create ``body``, or take the one a retry of this very create made before."""
        from scalable.providers.gke.kube import AlreadyExists

        try:
            obj: dict[str, Any] = self.kube.create(kind, body)
            return obj
        except AlreadyExists:
            existing = self.kube.read(kind, body["metadata"]["name"])
            if existing is None:
                raise
            have = (existing["metadata"].get("annotations") or {}).get(manifests.ANN_KEY)
            if have != key:
                raise ProviderError(
                    f"a {kind} named {body['metadata']['name']} already exists in namespace "
                    f"{self.cfg.namespace} and was not made by this apply",
                    hint="run `scalable plan` (an orphan of an interrupted apply is deleted "
                    "first), or set node_pool: to another name",
                ) from None
            return existing

    def _pod_env(self) -> dict[str, str]:
        return {**self.target.env, "SCALABLE_TARGET": self.target.name,
                "SCALABLE_PROJECT": self.target.project}

    def _tls_args(self) -> list[str]:
        from scalable.tls import tls_files

        return tls_files(Path(manifests.TLS_MOUNT)).node_args() if self.target.tls else []

    def _create_scheduler(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.commands import scheduler_argv
        from scalable.tls import ensure_tls

        a = resource.attributes
        key = ctx.idempotency_key
        labels = self._labels(ctx, SCHEDULER, "scheduler")
        select = manifests.selector(ctx.lineage, SCHEDULER)
        common: dict[str, Any] = {"namespace": self.cfg.namespace, "labels": labels, "key": key,
                  "project": ctx.project}
        # The dashboard is not behind the Service (only the scheduler port is): reach it
        # with `kubectl port-forward`.
        argv = scheduler_argv(host="0.0.0.0", port=manifests.SCHEDULER_PORT,
                              dashboard_port=manifests.DASHBOARD_PORT, dashboard_host="0.0.0.0",
                              tls_args=self._tls_args(), python="python",
                              idle_timeout=a.get("idle_timeout"))
        bodies: list[tuple[str, dict[str, Any]]] = []
        if self.target.tls:
            files = ensure_tls(self.workdir / "tls")
            bodies.append(("secret", manifests.tls_secret(
                name=self.secret_name, **common,
                files={files.ca_file.name: files.ca_file.read_bytes(),
                       files.node_cert.name: files.node_cert.read_bytes(),
                       files.node_key.name: files.node_key.read_bytes()})))
        bodies.append(("service", manifests.scheduler_service(
            name=self.scheduler_name, **common, select=select,
            allowed_cidrs=list(a.get("allowed_cidrs") or []))))
        bodies.append(("deployment", manifests.scheduler_deployment(
            name=self.scheduler_name, **common, select=select, image=str(a["image"]),
            argv=argv, env=self._pod_env(), pool=str(a["pool"]), spot=bool(a.get("spot")),
            cpu=sizing.quantity_cpu(sizing.SCHEDULER_CPU_M),
            memory=sizing.quantity_memory(sizing.SCHEDULER_MEMORY),
            memory_limit=sizing.quantity_memory(sizing.SCHEDULER_MEMORY_LIMIT),
            tls_secret=self.secret_name if self.target.tls else None)))
        made: list[tuple[str, str]] = []
        try:
            for kind, body in bodies:
                self._ensure(kind, body, key)
                made.append((kind, body["metadata"]["name"]))
            self._wait_scheduler_pod(select, str(a["pool"]))
            svc = self._wait_ingress(self.scheduler_name)
        except BaseException:
            for kind, name in reversed(made):  # leave nothing unrecorded behind
                with contextlib.suppress(ProviderError):
                    self.kube.delete(kind, name)
            raise
        return Created(
            id=f"{self.cfg.namespace}/deployments/{self.scheduler_name}",
            meta={"name": self.scheduler_name, "service": self.scheduler_name,
                  "secret": self.secret_name if self.target.tls else None,
                  "namespace": self.cfg.namespace},
            outputs=self._scheduler_outputs(svc),
        )

    def _scheduler_outputs(self, svc: dict[str, Any]) -> dict[str, str]:
        from scalable.tls import ensure_tls

        proto = "tls" if self.target.tls else "tcp"
        ingress = svc["status"]["loadBalancer"]["ingress"][0]
        host = ingress.get("ip") or ingress.get("hostname")
        port = manifests.SCHEDULER_PORT
        outputs = {
            SCHEDULER_ADDRESS: f"{proto}://{host}:{port}",
            SCHEDULER_CLUSTER_ADDRESS: f"{proto}://{svc['spec']['clusterIP']}:{port}",
            DASHBOARD_COMMAND: f"kubectl -n {svc['metadata']['namespace']} port-forward "
                                 f"deployment/{svc['metadata']['name']} "
                                 f"{manifests.DASHBOARD_PORT}:{manifests.DASHBOARD_PORT}",
        }
        if self.target.tls:
            outputs.update(ensure_tls(self.workdir / "tls").outputs())
        return outputs

    def recover_outputs(self, record: ResourceRecord) -> dict[str, str]:
        """The address of a scheduler an interrupted apply created but never recorded the
        outputs of: wait for its pod and load balancer as create would, and read them."""
        if record.type != DEPLOYMENT:
            return {}
        name = str(record.meta.get("service") or record.attributes.get("name"))
        try:
            svc = self.kube.read("service", name)
            if svc is None:
                return {}
            lineage = _lineage_of(svc)
            self._wait_scheduler_pod(manifests.selector(lineage, SCHEDULER),
                                     str(record.attributes.get("pool", "")))
            return self._scheduler_outputs(self._wait_ingress(name))
        except ProviderError as exc:
            self._notify(f"scheduler: adopted, but its address could not be read: {exc}")
            return {}

    def _wait_scheduler_pod(self, select: dict[str, str], pool: str) -> None:
        """Until the scheduler pod is ready; Kubernetes' reason if it cannot start.

        Unschedulable is waited out while the pool is still being changed (an adopted
        create), and is an error once it has lasted ``unschedulable_grace`` without.
        """
        start = time.monotonic()
        deadline = start + self.pod_timeout
        last = "no pod yet"
        unschedulable_since: float | None = None
        delay = 0.2
        while True:
            pods = self.kube.select("pod", _selector_text(select))
            for pod in pods:
                problem = manifests.pod_problem(pod)
                if problem is None:
                    return
                reason, message = problem
                last = f"{reason}: {message}" if message else reason
                hint = f"kubectl -n {self.cfg.namespace} describe pod {pod['metadata']['name']}"
                if reason in manifests.FATAL_WAITING or reason == "OOMKilled":
                    raise ProviderError(f"the scheduler pod cannot start: {last}", hint=hint)
                if reason != "Unschedulable" or self.pools.running(pool):
                    unschedulable_since = None
                elif unschedulable_since is None:
                    unschedulable_since = time.monotonic()
                elif time.monotonic() - unschedulable_since > self.unschedulable_grace:
                    raise ProviderError(
                        f"the scheduler pod cannot be scheduled on node pool {pool}: "
                        f"{message}", hint=hint)
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the scheduler pod was not ready after {self.pod_timeout:g}s ({last})",
                    hint=f"kubectl -n {self.cfg.namespace} get pods -l "
                         f"{_selector_text(select)}",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self.kube_poll)

    def _wait_ingress(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.pod_timeout
        delay = 0.2
        while True:
            svc = self.kube.read("service", name)
            if svc is None:
                raise ProviderError(f"service {name} vanished while waiting for its address")
            ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            if ingress and (ingress[0].get("ip") or ingress[0].get("hostname")):
                return svc
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the scheduler's load balancer got no address in {self.pod_timeout:g}s",
                    hint=f"kubectl -n {self.cfg.namespace} describe service {name}",
                )
            time.sleep(delay)
            delay = min(delay * 1.5, self.kube_poll)

    def _create_workers(self, resource: ResourceSpec, ctx: CreateContext) -> Created:
        from scalable.providers.commands import worker_argv

        address = ctx.outputs.get(SCHEDULER_CLUSTER_ADDRESS)
        if not address:
            raise ProviderError("no scheduler address to join")
        a = resource.attributes
        group = self.target.group(resource.group or "default")
        group = dataclasses.replace(group, memory_per_worker=int(a["memory_per_worker"]))
        processes = int(a["processes"])
        argv = worker_argv(group, address, name="$(POD_NAME)", nworkers=processes,
                           tls_args=self._tls_args(), host="$(POD_IP)", python="python")
        pod = sizing.worker_pod(int(a["threads_per_worker"]), processes,
                                int(a["memory_per_worker"]))
        name = str(a["name"])
        body = manifests.worker_statefulset(
            name=name, namespace=self.cfg.namespace,
            labels=self._labels(ctx, resource.address, "worker"), key=ctx.idempotency_key,
            project=ctx.project, select=manifests.selector(ctx.lineage, resource.address),
            image=str(a["image"]), argv=argv,
            env={**self._pod_env(), **(group.container.env if group.container else {})},
            pool=str(a["pool"]),
            spot=bool(a.get("spot")), replicas=int(a["replicas"]),
            cpu=sizing.quantity_cpu(pod.cpu_m), memory=sizing.quantity_memory(pod.memory),
            tls_secret=self.secret_name if self.target.tls else None,
            gpus=int(a.get("gpus") or 0),
            binds=dict(group.container.binds) if group.container else None,
        )
        self._ensure("statefulset", body, ctx.idempotency_key)
        return Created(
            id=f"{self.cfg.namespace}/statefulsets/{name}",
            meta={"name": name, "namespace": self.cfg.namespace,
                  SCHEDULER_ADDRESS: ctx.outputs.get(SCHEDULER_ADDRESS, "")},
        )

    def update(self, record: ResourceRecord, resource: ResourceSpec) -> Created:
        a = resource.attributes
        if record.type == POOL:
            self._same_cluster(record)
            name = str(record.meta.get("name") or a["name"])
            self.pools.notify = self._notify
            count = int(a["node_count"])
            meta: dict[str, Any] = {"name": name}
            obtained = record.meta.get("machine_type")
            types = list(a.get("machine_types") or [])
            if obtained and obtained in types:  # a failover's pool: its type's size
                count = int(a["node_counts"][types.index(obtained)])
                meta["node_count"] = count
            self.pools.resize(name, count)
            return Created(id=record.id or "", meta=meta)
        if record.type == STATEFULSET:
            name = str(record.meta.get("name") or a["name"])
            want = int(a["replicas"])
            have = int(record.attributes.get("replicas", want))
            if want < have:
                self._retire(record, [n for n in record.worker_names
                                      if n not in set(resource.worker_names)])
            self.kube_in(record).patch("statefulset", name, {"spec": {"replicas": want}})
            return Created(id=record.id or "", meta={"name": name})
        if record.type == DEPLOYMENT:
            name = str(record.meta.get("service") or a["name"])
            self.kube_in(record).patch("service", name, {"spec": {
                "loadBalancerSourceRanges": list(a.get("allowed_cidrs") or [])}})
            return Created(id=record.id or "", meta={})
        raise ProviderError(f"gke cannot update {record.address} in place")

    def _retire(self, record: ResourceRecord, names: list[str]) -> None:
        """Move data off workers a scale-down removes (best effort, like the engine's)."""
        address = record.meta.get(SCHEDULER_ADDRESS)
        if not names or not address:
            return
        security = tls_files(self.workdir / "tls").client_security() if self.target.tls else None
        retire_workers(str(address), security, names, progress=self._notify, timeout=10,
                       then="scaling down anyway")

    def delete(self, record: ResourceRecord) -> None:
        name = str(record.meta.get("name") or record.attributes.get("name") or "")
        if record.type == POOL:
            self._same_cluster(record)
            if not name and record.id:
                name = record.id.rsplit("/", 1)[-1]
            self.pools.notify = self._notify
            self.pools.delete(name)
            return
        kube = self.kube_in(record)
        if record.type == STATEFULSET:
            kube.delete("statefulset", name)
            return
        if record.type == DEPLOYMENT:
            kube.delete("deployment", name)
            kube.delete("service", str(record.meta.get("service") or name))
            secret = record.meta.get("secret")
            if secret:
                kube.delete("secret", str(secret))
            return
        raise ProviderError(f"gke does not know how to delete a {record.type}")


def _worker_names(base: str, nworkers: int) -> tuple[str, ...]:
    from scalable.providers.commands import worker_names

    return worker_names(base, nworkers)


def _selector_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _lineage_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata", {}).get("labels") or {}).get(manifests.LABEL_LINEAGE, ""))
