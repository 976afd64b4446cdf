"""How many nodes a node pool needs: machine shapes, GKE's allocatable, pod packing.

A node's *allocatable* capacity is its machine's vCPUs and memory minus what GKE reserves
for the kubelet and the OS (the published formula, see ``docs/guides/gke.rst``) and minus
an allowance for GKE's own DaemonSets (kube-proxy, logging and metrics agents, CSI
drivers), which run on every node. Pods are packed first-fit in the order the scheduler
and the workers are created; the pool gets as many nodes as that packing opens, rounded
up to a multiple of the pool's zones (a regional pool's ``node_count`` is per zone).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from scalable.providers.base import ProviderError

GIB = 2**30
MIB = 2**20
# An allowance for the requests of GKE's system DaemonSets on every node (kube-proxy,
# fluentbit, gke-metrics-agent, pdcsi-node, netd …). An estimate, not measured here: their
# requests vary with the GKE version and the cluster's add-ons.
DAEMONSET_CPU_M = 400
DAEMONSET_MEMORY = 512 * MIB
EVICTION_THRESHOLD = 100 * MIB
# The scheduler pod: it shares the first pool with that pool's workers.
SCHEDULER_CPU_M = 500
SCHEDULER_MEMORY = 1 * GIB
SCHEDULER_MEMORY_LIMIT = 2 * GIB

# GiB of memory per vCPU for the predefined shapes of each family.
_RATIOS = {"standard": 4.0, "highmem": 8.0, "highcpu": 1.0}
_N1_RATIOS = {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9}
_SHARED_CORE = {"e2-medium": (2.0, 4.0), "e2-small": (2.0, 2.0), "e2-micro": (2.0, 1.0)}
_PREDEFINED = re.compile(
    r"^(?P<family>[a-z][a-z0-9]*)-(?P<kind>standard|highmem|highcpu)-(?P<n>\d+)"
)
_CUSTOM = re.compile(r"^(?:(?P<family>[a-z][a-z0-9]*)-)?custom-(?P<n>\d+)-(?P<mb>\d+)(?:-ext)?$")


@dataclass(frozen=True)
class Shape:
    """A machine type's vCPUs and memory (GiB)."""

    name: str
    vcpus: float
    memory_gib: float


def machine_shape(machine_type: str) -> Shape | None:
    """vCPUs and memory of a machine type: from the price catalog, else from its name."""
    from scalable.pricing.catalog import machine_catalog

    for (name, _region), entry in machine_catalog("gcp_gce").entries.items():
        if name == machine_type:
            return Shape(name, entry.vcpus, entry.memory_gib)
    if machine_type in _SHARED_CORE:
        cpus, mem = _SHARED_CORE[machine_type]
        return Shape(machine_type, cpus, mem)
    m = _PREDEFINED.match(machine_type)
    if m:
        ratios = _N1_RATIOS if m["family"] == "n1" else _RATIOS
        n = int(m["n"])
        return Shape(machine_type, float(n), n * ratios[m["kind"]])
    m = _CUSTOM.match(machine_type)
    if m:
        return Shape(machine_type, float(m["n"]), int(m["mb"]) / 1024)
    return None


@dataclass(frozen=True)
class Allocatable:
    """What pods can request on one node: millicores and bytes."""

    cpu_m: int
    memory: int


def _tiered(total: float, tiers: list[tuple[float, float]], rest: float) -> float:
    """Sum of ``rate × amount`` over consecutive tiers of ``(size, rate)``, then ``rest``."""
    reserved = 0.0
    left = total
    for size, rate in tiers:
        take = min(left, size)
        reserved += take * rate
        left -= take
        if left <= 0:
            return reserved
    return reserved + left * rest


def allocatable(shape: Shape) -> Allocatable:
    """GKE's node allocatable (kubelet + OS reservations), minus system DaemonSets."""
    cores = shape.vcpus
    cpu_reserved = _tiered(cores, [(1, 0.06), (1, 0.01), (2, 0.005)], 0.0025)
    mem_gib = shape.memory_gib
    if mem_gib < 1:
        mem_reserved = 255 / 1024
    else:
        mem_reserved = _tiered(mem_gib, [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06)], 0.02)
    cpu_m = int(cores * 1000 - math.ceil(cpu_reserved * 1000)) - DAEMONSET_CPU_M
    memory = int((mem_gib - mem_reserved) * GIB) - EVICTION_THRESHOLD - DAEMONSET_MEMORY
    return Allocatable(cpu_m=max(cpu_m, 0), memory=max(memory, 0))


@dataclass(frozen=True)
class PodSize:
    """Requests of one pod: millicores and bytes."""

    cpu_m: int
    memory: int


def default_worker_memory(shape: Shape, threads: int) -> int:
    """A worker's memory when the manifest gives none: the node's memory per allocatable
    core times its threads, rounded down to 256 MiB."""
    alloc = allocatable(shape)
    per_core = alloc.memory / max(alloc.cpu_m / 1000, 1e-9)
    step = 256 * MIB
    return max(step, int(per_core * threads) // step * step)


def worker_pod(threads: int, processes: int, memory_per_worker: int) -> PodSize:
    return PodSize(cpu_m=1000 * threads * processes, memory=memory_per_worker * processes)


SCHEDULER_POD = PodSize(cpu_m=SCHEDULER_CPU_M, memory=SCHEDULER_MEMORY)


def nodes_for(pods: list[PodSize], shape: Shape) -> int:
    """Nodes a first-fit packing of ``pods`` (in order) opens on ``shape`` nodes."""
    alloc = allocatable(shape)
    free: list[list[int]] = []
    for pod in pods:
        if pod.cpu_m > alloc.cpu_m or pod.memory > alloc.memory:
            raise ProviderError(
                f"a pod needing {pod.cpu_m / 1000:g} CPU and {pod.memory / GIB:.2f} GiB does "
                f"not fit on {shape.name} (about {alloc.cpu_m / 1000:g} CPU and "
                f"{alloc.memory / GIB:.2f} GiB allocatable after GKE's reservations)",
                hint="choose a larger machine_type, or fewer threads_per_worker / "
                "processes / memory_per_worker",
            )
        for slot in free:
            if slot[0] >= pod.cpu_m and slot[1] >= pod.memory:
                slot[0] -= pod.cpu_m
                slot[1] -= pod.memory
                break
        else:
            free.append([alloc.cpu_m - pod.cpu_m, alloc.memory - pod.memory])
    return len(free)


def node_count(nodes: int, zones: int) -> int:
    """A pool's ``node_count`` (per zone) giving at least ``nodes`` nodes in total."""
    return math.ceil(nodes / max(zones, 1))


def quantity_cpu(millicores: int) -> str:
    return f"{millicores}m"


def quantity_memory(nbytes: int) -> str:
    return f"{nbytes // MIB}Mi"
