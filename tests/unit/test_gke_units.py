"""Pure parts of the GKE provider: sizing, prices, names, pod reasons."""

from __future__ import annotations

import pytest
from scalable.manifest.schema import Pricing
from scalable.providers.base import ProviderError
from scalable.providers.gke import manifests, sizing
from scalable.providers.gke.pricing import NOT_COUNTED, node_price, pool_price, region_of
from scalable.providers.gke.provider import GkeProvider, dns_name, gce_label

GIB = 2**30


def test_machine_shapes_from_catalog_and_names() -> None:
    assert sizing.machine_shape("e2-standard-4") == sizing.Shape("e2-standard-4", 4, 16)
    assert sizing.machine_shape("n1-highmem-8") == sizing.Shape("n1-highmem-8", 8, 52)
    assert sizing.machine_shape("c2d-highcpu-16") == sizing.Shape("c2d-highcpu-16", 16, 16)
    assert sizing.machine_shape("n2-custom-6-24576") == sizing.Shape("n2-custom-6-24576", 6, 24)
    assert sizing.machine_shape("e2-medium") == sizing.Shape("e2-medium", 2, 4)
    assert sizing.machine_shape("quantum-9000") is None


def test_allocatable_follows_gke_reservations() -> None:
    # e2-standard-4: 4 vCPU − 80m (6% + 1% + 2×0.5%) − 400m DaemonSets;
    # 16 GiB − 2.6 GiB (25% of 4, 20% of 4, 10% of 8) − 100 MiB eviction − 512 MiB.
    alloc = sizing.allocatable(sizing.Shape("e2-standard-4", 4, 16))
    assert alloc.cpu_m == 4000 - 80 - 400
    assert alloc.memory == int((16 - 2.6) * GIB) - 100 * 2**20 - 512 * 2**20


def test_node_count_packs_scheduler_and_workers_first_fit() -> None:
    shape = sizing.Shape("e2-standard-4", 4, 16)
    worker = sizing.worker_pod(threads=1, processes=1, memory_per_worker=3 * GIB)
    # 3.52 CPU per node: the scheduler (0.5) and three 1-CPU workers fill the first node.
    assert sizing.nodes_for([sizing.SCHEDULER_POD] + [worker] * 3, shape) == 1
    assert sizing.nodes_for([sizing.SCHEDULER_POD] + [worker] * 4, shape) == 2
    assert sizing.nodes_for([worker] * 7, shape) == 3
    assert sizing.nodes_for([], shape) == 0
    assert sizing.node_count(4, zones=3) == 2  # per zone in a regional pool: 6 nodes
    with pytest.raises(ProviderError, match="does not fit on e2-standard-4") as err:
        sizing.nodes_for([sizing.worker_pod(4, 1, GIB)], shape)
    assert err.value.hint and "larger machine_type" in err.value.hint


def test_default_worker_memory_is_the_node_s_memory_per_core() -> None:
    shape = sizing.Shape("e2-standard-4", 4, 16)
    mem = sizing.default_worker_memory(shape, threads=1)
    assert mem % (256 * 2**20) == 0
    alloc = sizing.allocatable(shape)
    # Three one-thread workers fill the node's CPU and fit its memory.
    assert 3 * mem <= alloc.memory < 4 * mem + sizing.SCHEDULER_MEMORY


def test_prices_on_demand_spot_regional_and_overrides() -> None:
    none = Pricing()
    on_demand = node_price("e2-standard-4", "us-central1-a", False, none)
    assert on_demand.hourly == pytest.approx(0.13402)
    assert on_demand.note == NOT_COUNTED and "management fee" in on_demand.note
    assert node_price("e2-standard-4", "us-central1", True, none).hourly == \
        pytest.approx(0.05358)
    pool = pool_price({"machine_type": "e2-standard-4", "location": "us-central1",
                       "spot": False, "node_count": 2, "zones": 3}, none)
    assert pool.hourly == pytest.approx(0.13402 * 6)
    unknown = node_price("e2-standard-4", "antarctica-south1", False, none)
    assert unknown.hourly is None and "not in the GCE catalog" in unknown.note
    discounted = node_price("e2-standard-4", "us-central1", False, Pricing(discount=0.5))
    assert discounted.hourly == pytest.approx(0.06701)
    fixed = node_price("e2-standard-4", "us-central1", False, Pricing(hourly_usd=0.2))
    assert fixed.hourly == 0.2
    assert region_of("europe-west4-b") == "europe-west4" and region_of("us-east1") == "us-east1"


def test_names_fit_gke_and_kubernetes_rules() -> None:
    assert dns_name("scalable-My_Project.x-gke", 40) == "scalable-my-project-x-gke"
    long = dns_name("scalable-" + "a" * 60, 40)
    assert len(long) == 40 and long != dns_name("scalable-" + "a" * 61, 40)
    assert dns_name("9lives", 40) == "s-9lives"
    assert gce_label("Demo.Project") == "demo-project"


def test_updatable_is_only_the_counts_and_cidrs() -> None:
    up = GkeProvider.updatable
    pool = {"name": "p", "machine_type": "e2-standard-4", "node_count": 2}
    assert up(None, pool, {**pool, "node_count": 5})  # type: ignore[arg-type]
    assert not up(None, pool, {**pool, "machine_type": "e2-standard-8"})  # type: ignore[arg-type]
    assert not up(None, pool, {**pool, "node_count": 5,  # type: ignore[arg-type]
                               "machine_type": "e2-standard-8"})
    sched = {"allowed_cidrs": ["203.0.113.7/32"], "tls": True}
    assert up(None, sched, {**sched, "allowed_cidrs": ["198.51.100.0/24"]})  # type: ignore[arg-type]
    # Public → private turns the load balancer internal: that is a new Service.
    assert not up(None, sched, {**sched, "allowed_cidrs": ["10.0.0.0/8"]})  # type: ignore[arg-type]
    sts = {"replicas": 2, "threads_per_worker": 1}
    assert up(None, sts, {**sts, "replicas": 0})  # type: ignore[arg-type]
    assert not up(None, sts, sts)  # type: ignore[arg-type]


def test_only_private_cidrs_make_an_internal_load_balancer() -> None:
    assert manifests.all_private(["10.0.0.0/8", "192.168.1.0/24"])
    assert not manifests.all_private(["10.0.0.0/8", "203.0.113.7/32"])
    assert not manifests.all_private(["127.0.0.1/32"])
    svc = manifests.scheduler_service(name="s", namespace="n", labels={}, key="k",
                                      project="p", select={}, allowed_cidrs=["10.0.0.0/8"])
    assert svc["metadata"]["annotations"][manifests.INTERNAL_LB] == "Internal"
    assert svc["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]


def test_pods_are_pinned_to_their_pool_and_tolerate_spot() -> None:
    spec = manifests.pinning("pool-a", spot=True)
    assert spec["nodeSelector"] == {manifests.POOL_LABEL: "pool-a"}
    keys = {(t["key"], t["value"]) for t in spec["tolerations"]}
    assert keys == {(manifests.POOL_TAINT, "pool-a"), (manifests.SPOT_LABEL, "true")}
    assert set(manifests.pool_taints("pool-a", True)) == keys


def _pod(name: str, **status: object) -> dict[str, object]:
    return {"metadata": {"name": name}, "status": status}


def test_pod_reasons_in_kubernetes_words() -> None:
    unschedulable = _pod("a", phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    assert manifests.pod_problem(unschedulable) == (
        "Unschedulable", "0/3 nodes are available: 3 Insufficient cpu.")
    pull = _pod("b", phase="Pending", containerStatuses=[{
        "name": "worker", "ready": False,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}])
    assert manifests.pod_problem(pull) == ("ImagePullBackOff", "Back-off")
    oom = _pod("c", phase="Running", containerStatuses=[{
        "name": "worker", "ready": False, "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
    assert manifests.pod_problem(oom)[0] == "OOMKilled"  # type: ignore[index]
    ready = _pod("d", phase="Running", conditions=[{"type": "Ready", "status": "True"}],
                 containerStatuses=[{"name": "worker", "ready": True,
                                     "state": {"running": {}}}])
    assert manifests.pod_problem(ready) is None
    evicted = _pod("e", phase="Failed", reason="Evicted", message="The node was low on memory")
    assert manifests.pod_problem(evicted) == ("Evicted", "The node was low on memory")

    count, lines = manifests.summarize([unschedulable, pull, ready, oom], want=5)
    assert count == 1
    assert lines[0].startswith("1 pod(s) ")
    assert "1 pod(s) not created yet" in lines
