"""GPU groups on GKE against the fake cluster: the node pool the real
google-cloud-container client creates carries the accelerator (type, count, GKE-managed
driver installation), the worker pods ask for ``nvidia.com/gpu``, the plan prices the
machine plus its GPUs, and an accelerator the zone lacks is refused naming those it has."""

from __future__ import annotations

import pytest
from google.cloud import container_v1 as c
from scalable.pricing.catalog import gcp_accelerators, machine_catalog
from scalable.providers.base import ProviderError

from tests.fakes.cluster import gke_manifest
from tests.integration.test_gke_provider import Cloud, apply, by_address, cloud

pytestmark = pytest.mark.gke
_ = cloud  # the fixture, imported for the tests below

GROUPS = """
groups:
  cpu: {{max_workers: 1, tags: [cpu]}}
  gpu: {{max_workers: 2, tags: [gpu], gpus: 1, gpu_type: {gpu}, machine_type: {machine}}}
"""


def manifest(cloud: Cloud, gpu: str = "t4", machine: str = "n1-standard-4") -> str:
    return gke_manifest(cloud.gke, GROUPS.format(gpu=gpu, machine=machine)).replace(
        "    max_workers: 2\n", "")


def test_gpu_pool_has_its_accelerator_and_pods_ask_for_gpus(cloud: Cloud) -> None:
    provider, engine, _ = cloud.open(manifest(cloud))
    provider.validate()
    plan = engine.plan()
    pool = by_address(plan)["node_pool.gpu"]
    assert pool.after["accelerator_type"] == "nvidia-tesla-t4"
    assert pool.after["accelerator_count"] == 1
    assert pool.after["node_count"] == 2  # one GPU worker pod per node
    n1 = machine_catalog("gcp_gce").lookup("n1-standard-4", "us-central1")
    t4 = next(a for a in gcp_accelerators()[1]
              if a.name == "nvidia-tesla-t4" and a.region == "us-central1")
    assert n1 is not None
    assert pool.hourly_after == pytest.approx(2 * (n1.on_demand + t4.usd_hour))
    cpu_pool = by_address(plan)["node_pool.cpu"]
    assert "accelerator_type" not in cpu_pool.after

    result = apply(engine, plan, wait=False)
    assert result.errors == []
    created = cloud.gke.pools[provider.pool_name("gpu")]
    [acc] = created.config.accelerators
    assert acc.accelerator_type == "nvidia-tesla-t4" and acc.accelerator_count == 1
    assert (acc.gpu_driver_installation_config.gpu_driver_version
            == c.GPUDriverInstallationConfig.GPUDriverVersion.DEFAULT)
    assert list(cloud.gke.pools[provider.pool_name("cpu")].config.accelerators) == []
    sts = {o["metadata"]["name"]: o for o in cloud.ours("statefulsets")}
    gpu_pod = sts[provider.workers_name("gpu")]["spec"]["template"]["spec"]
    cpu_pod = sts[provider.workers_name("cpu")]["spec"]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        gpu_pod["tolerations"])
    args = gpu_pod["containers"][0]["args"]
    assert args[args.index("--resources") + 1] == "tag-gpu=1 GPU=1"
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]
    assert apply(engine, engine.plan(destroy=True), wait=False).errors == []


def test_accelerator_not_in_the_zone_or_on_the_wrong_machine_is_refused(cloud: Cloud) -> None:
    provider, _, _ = cloud.open(manifest(cloud, gpu="nvidia-tesla-v100"))
    provider.validate()  # us-central1-a has V100s
    cloud.gke.cluster.locations = ["us-central1-d"]
    provider, _, _ = cloud.open(manifest(cloud, gpu="l4", machine="g2-standard-4"))
    with pytest.raises(ProviderError) as err:
        provider.validate()
    assert err.value.message == (
        "group gpu: accelerator nvidia-l4 is not offered in zone us-central1-d "
        "(offered there: no GPUs)")
    cloud.gke.cluster.locations = ["us-central1-f"]
    provider, _, _ = cloud.open(manifest(cloud, gpu="l4", machine="g2-standard-4"))
    with pytest.raises(ProviderError, match=r"nvidia-l4 is not offered in zone us-central1-f "
                                            r"\(offered there: nvidia-tesla-a100, "
                                            r"nvidia-tesla-t4, nvidia-tesla-v100\)"):
        provider.validate()
    provider, _, _ = cloud.open(manifest(cloud, gpu="l4", machine="e2-standard-4"))
    with pytest.raises(ProviderError, match="nvidia-l4 attaches to g2-\\* machine types, "
                                            "not e2-standard-4"):
        provider.check_config()
    provider, _, _ = cloud.open(manifest(cloud, gpu="h100"))
    with pytest.raises(ProviderError, match="'h100' is not a GKE accelerator"):
        provider.check_config()
