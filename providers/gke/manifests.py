"""Kubernetes objects for Dask on a node pool, as plain dicts (pure functions).

- The scheduler is a Deployment of one replica (strategy Recreate: never two schedulers)
  with a Service of type LoadBalancer limited to the declared CIDRs
  (``loadBalancerSourceRanges``; an internal load balancer when every CIDR is private),
  and a Secret holding the CA and node certificate for Dask TLS. The client key stays on
  the machine running scalable.
- Each worker group is a StatefulSet: its pods are named ``<name>-0 … <name>-N-1`` and
  each Dask worker takes its pod's name, so the names the engine waits for are known
  before the pods exist, scaling is a change of ``replicas`` (removing the highest
  ordinals first), and a pod lost with its node (a spot preemption) comes back under the
  same name.
- Every pod is pinned to its node pool (node selector on GKE's
  ``cloud.google.com/gke-nodepool`` label) and tolerates the pool's own taint (and GKE's
  spot taint on spot pools), so nothing else lands on capacity made for this run and our
  pods land nowhere else.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import Any

LABEL_LINEAGE = "scalable.dev/lineage"
LABEL_TARGET = "scalable.dev/target"
LABEL_ADDRESS = "scalable.dev/address"
LABEL_COMPONENT = "scalable.dev/component"
ANN_KEY = "scalable.dev/idempotency-key"
ANN_PROJECT = "scalable.dev/project"
POOL_LABEL = "cloud.google.com/gke-nodepool"
SPOT_LABEL = "cloud.google.com/gke-spot"
POOL_TAINT = "scalable.dev/pool"
INTERNAL_LB = "networking.gke.io/load-balancer-type"
TLS_MOUNT = "/etc/scalable/tls"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787


def ours(lineage: str, target: str, address: str, component: str) -> dict[str, str]:
    """Labels on everything we create (label values allow ``workers.default``)."""
    return {
        LABEL_LINEAGE: lineage,
        LABEL_TARGET: target,
        LABEL_ADDRESS: address,
        LABEL_COMPONENT: component,
        "app.kubernetes.io/name": "dask",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "scalable",
    }


def _meta(name: str, namespace: str, labels: dict[str, str], key: str, project: str,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {ANN_KEY: key, ANN_PROJECT: project, **(annotations or {})},
    }


GPU_RESOURCE = "nvidia.com/gpu"


def selector(lineage: str, address: str) -> dict[str, str]:
    return {LABEL_LINEAGE: lineage, LABEL_ADDRESS: address}


# RFC 1918 and IPv6 unique-local ranges: addresses inside a VPC (or reached over a VPN).
# (``ipaddress``'s is_private also counts documentation and loopback ranges.)
_VPC_RANGES = [ipaddress.ip_network(n) for n in
               ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]


def all_private(cidrs: Sequence[str]) -> bool:
    """Whether every CIDR lies in a private (VPC) range: then the load balancer is
    internal, reachable from the VPC and its VPNs only."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    return bool(nets) and all(
        any(n.version == r.version and n.subnet_of(r) for r in _VPC_RANGES)  # type: ignore[arg-type]
        for n in nets
    )


def pinning(pool: str, spot: bool) -> dict[str, Any]:
    """nodeSelector and tolerations that keep a pod on its pool."""
    tolerations = [{"key": POOL_TAINT, "operator": "Equal", "value": pool,
                    "effect": "NoSchedule"}]
    if spot:
        tolerations.append({"key": SPOT_LABEL, "operator": "Equal", "value": "true",
                            "effect": "NoSchedule"})
    return {"nodeSelector": {POOL_LABEL: pool}, "tolerations": tolerations}


def pool_taints(pool: str, spot: bool) -> list[tuple[str, str]]:
    """(key, value) NoSchedule taints on the pool's nodes, matching :func:`pinning`."""
    taints = [(POOL_TAINT, pool)]
    if spot:
        taints.append((SPOT_LABEL, "true"))
    return taints


# Kubernetes' default pod termination grace: what a worker has to retire in.
GRACE_SECONDS = 30


def literal(text: str) -> str:
    """``text`` as a container argument Kubernetes passes unchanged: it expands
    ``$(VAR)`` and reduces ``$$`` to ``$``, so every ``$`` is doubled."""
    return text.replace("$", "$$")


def _env(extra: dict[str, str]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAMESPACE",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(extra.items())]
    return env


def _pod_spec(*, pool: str, spot: bool, container: dict[str, Any], tls_secret: str | None
              ) -> dict[str, Any]:
    spec: dict[str, Any] = {
        **pinning(pool, spot),
        "containers": [container],
        # Dask needs nothing from the Kubernetes API: no token in its pods.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": GRACE_SECONDS,
        "restartPolicy": "Always",
    }
    if tls_secret:
        spec["volumes"] = [{"name": "tls", "secret": {"secretName": tls_secret,
                                                      "defaultMode": 0o400}}]
        container["volumeMounts"] = [{"name": "tls", "mountPath": TLS_MOUNT,
                                      "readOnly": True}]
    return spec


def _container(name: str, image: str, argv: list[str], *, env: dict[str, str],
               cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": argv[:3],  # python -m <module>
        "args": argv[3:],
        "env": _env(env),
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"memory": memory_limit}},
    }


def tls_secret(*, name: str, namespace: str, labels: dict[str, str], key: str, project: str,
               files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, labels, key, project),
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in files.items()},
    }


def scheduler_service(*, name: str, namespace: str, labels: dict[str, str], key: str,
                      project: str, select: dict[str, str], allowed_cidrs: Sequence[str]
                      ) -> dict[str, Any]:
    annotations = {INTERNAL_LB: "Internal"} if all_private(allowed_cidrs) else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels, key, project, annotations),
        "spec": {
            "type": "LoadBalancer",
            "selector": select,
            "ports": [{"name": "dask", "port": SCHEDULER_PORT, "targetPort": SCHEDULER_PORT,
                       "protocol": "TCP"}],
            "loadBalancerSourceRanges": list(allowed_cidrs),
        },
    }


def scheduler_deployment(*, name: str, namespace: str, labels: dict[str, str], key: str,
                         project: str, select: dict[str, str], image: str, argv: list[str],
                         env: dict[str, str], pool: str, spot: bool, cpu: str, memory: str,
                         memory_limit: str, tls_secret: str | None) -> dict[str, Any]:
    container = _container("scheduler", image, argv, env=env, cpu=cpu, memory=memory,
                           memory_limit=memory_limit)
    container["ports"] = [{"name": "dask", "containerPort": SCHEDULER_PORT},
                          {"name": "dashboard", "containerPort": DASHBOARD_PORT}]
    container["readinessProbe"] = {"tcpSocket": {"port": SCHEDULER_PORT},
                                   "periodSeconds": 2, "failureThreshold": 3}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, labels, key, project),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": select},
            "template": {
                "metadata": {"labels": labels},
                "spec": _pod_spec(pool=pool, spot=spot, container=container,
                                  tls_secret=tls_secret),
            },
        },
    }


def worker_statefulset(*, name: str, namespace: str, labels: dict[str, str], key: str,
                       project: str, select: dict[str, str], image: str, argv: list[str],
                       env: dict[str, str], pool: str, spot: bool, replicas: int, cpu: str,
                       memory: str, tls_secret: str | None,
                       binds: dict[str, str] | None = None, gpus: int = 0
                       ) -> dict[str, Any]:
    # A drained (spot) node's SIGTERM is reported as "gke-sigterm", the pod's grace as
    # the notice, by workers whose nannies load scalable.preemption.
    env = {"SCALABLE_PLATFORM": "gke", "SCALABLE_TERMINATION_GRACE": str(GRACE_SECONDS), **env}
    container = _container("worker", image, argv, env=env, cpu=cpu, memory=memory,
                           memory_limit=memory)
    if gpus:
        # Extended resources are requested as limits; GKE taints GPU nodes
        # nvidia.com/gpu=present:NoSchedule, which the pod tolerates.
        container["resources"]["limits"][GPU_RESOURCE] = str(gpus)
    spec = _pod_spec(pool=pool, spot=spot, container=container, tls_secret=tls_secret)
    if gpus:
        spec["tolerations"].append({"key": GPU_RESOURCE, "operator": "Exists",
                                    "effect": "NoSchedule"})
    # A group's binds: the node's folder (hostPath, which must exist: type Directory)
    # mounted at the container path.
    for i, (src, dst) in enumerate((binds or {}).items()):
        spec.setdefault("volumes", []).append(
            {"name": f"bind-{i}", "hostPath": {"path": src, "type": "Directory"}})
        container.setdefault("volumeMounts", []).append(
            {"name": f"bind-{i}", "mountPath": dst})
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(name, namespace, labels, key, project),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": select},
            "template": {
                "metadata": {"labels": labels},
                "spec": spec,
            },
        },
    }


# -- reading pods back ----------------------------------------------------------------------

# Waiting reasons that will not fix themselves by waiting a little longer.
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff",
                 "RunContainerError"}


def pod_problem(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of a pod that is not ready, in Kubernetes' own words; None if ready.

    Reasons: Unschedulable (with the scheduler's message), ImagePullBackOff / ErrImagePull,
    OOMKilled (from the last termination), CrashLoopBackOff, Evicted, ContainerCreating…
    """
    status = pod.get("status") or {}
    phase = status.get("phase", "Pending")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return ("Terminating", "being deleted")
    if phase in ("Failed", "Succeeded"):
        return (status.get("reason") or phase, status.get("message", ""))
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    sched = conditions.get("PodScheduled")
    if sched and sched.get("status") == "False":
        return (sched.get("reason") or "Unschedulable", sched.get("message", ""))
    for cs in status.get("containerStatuses") or []:
        last = (cs.get("lastState") or {}).get("terminated") or {}
        waiting = (cs.get("state") or {}).get("waiting")
        if last.get("reason") == "OOMKilled" and not cs.get("ready"):
            restarts = cs.get("restartCount", 0)
            return ("OOMKilled", f"container {cs.get('name')} was killed for exceeding its "
                    f"memory limit (restarted {restarts} time(s))")
        if waiting:
            return (waiting.get("reason") or "Waiting", waiting.get("message", ""))
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return (term.get("reason") or "Terminated", term.get("message", ""))
    ready = conditions.get("Ready")
    if ready and ready.get("status") == "True":
        return None
    if phase == "Running":
        return ("NotReady", "running, not ready yet")
    if not status.get("containerStatuses") and sched is None:
        return ("Pending", "not scheduled yet")
    return ("ContainerCreating", "starting")


def summarize(pods: list[dict[str, Any]], want: int) -> tuple[int, list[str]]:
    """Ready pods and one line per distinct problem: ``2 pod(s) Unschedulable: …``."""
    ready = 0
    problems: dict[tuple[str, str], list[str]] = {}
    for pod in pods:
        p = pod_problem(pod)
        if p is None:
            ready += 1
        else:
            problems.setdefault(p, []).append(pod["metadata"]["name"])
    lines = []
    for (reason, message), names in sorted(problems.items(), key=lambda kv: -len(kv[1])):
        detail = f": {message}" if message else ""
        lines.append(f"{len(names)} pod(s) {reason}{detail} ({', '.join(sorted(names)[:3])}"
                     f"{', …' if len(names) > 3 else ''})")
    missing = want - len(pods)
    if missing > 0:
        lines.append(f"{missing} pod(s) not created yet")
    return ready, lines
