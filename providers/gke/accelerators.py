"""GKE node-pool accelerators (GPUs): which one a group asks for, where it is offered,
what it costs, and the API fields GKE expects.

``gpu_type`` is GKE's accelerator type (``nvidia-l4``) or its short name (``l4``). The
zones offering each accelerator come from the bundled table
(``pricing/data/gcp_accelerators.csv``): GKE's ClusterManager API lists none, and a pool
asked for in a zone without the GPU fails minutes later inside the create operation.
"""

from __future__ import annotations

from typing import Any

from scalable.pricing.catalog import Accelerator, gcp_accelerators
from scalable.providers.base import ProviderError
from scalable.providers.gke.pricing import region_of


def resolve(gpu_type: str | None, group: str) -> str:
    """GKE's accelerator type for a group's ``gpu_type`` (short names accepted)."""
    _, rows = gcp_accelerators()
    names = sorted({a.name for a in rows})
    if not gpu_type:
        raise ProviderError(
            f"group {group}: gpus: on GKE needs a gpu_type (the node pool's accelerator)",
            hint=f"e.g. gpu_type: nvidia-l4 (known: {', '.join(names)})")
    for a in rows:
        if gpu_type.lower() in (a.name, a.gpu):
            return a.name
    raise ProviderError(f"group {group}: gpu_type {gpu_type!r} is not a GKE accelerator "
                        "scalable knows", hint=f"known: {', '.join(names)}")


def offered(zone: str) -> list[str]:
    """Accelerator types offered in a zone (or anywhere in a region)."""
    _, rows = gcp_accelerators()
    return sorted({a.name for a in rows if zone in a.zones or a.region == zone})


def row(name: str, location: str) -> Accelerator | None:
    _, rows = gcp_accelerators()
    region = region_of(location)
    return next((a for a in rows if a.name == name and a.region == region), None)


def check_zones(name: str, zones: list[str], group: str) -> None:
    """Refuse an accelerator some of the cluster's zones lack, naming what they offer."""
    for zone in zones:
        here = offered(zone)
        if name not in here:
            raise ProviderError(
                f"group {group}: accelerator {name} is not offered in zone {zone} "
                f"(offered there: {', '.join(here) or 'no GPUs'})",
                hint="set gpu_type: to one of those, or use a cluster in a zone that has "
                     f"{name}")


def check_machine(name: str, machine_type: str, group: str) -> None:
    """A GPU attaches to one machine series only (T4/V100: n1, L4: g2, A100: a2)."""
    _, rows = gcp_accelerators()
    series = next(a.machine_series for a in rows if a.name == name)
    if not machine_type.startswith(series + "-"):
        raise ProviderError(
            f"group {group}: accelerator {name} attaches to {series}-* machine types, "
            f"not {machine_type}",
            hint=f"set the group's machine_type: to a {series} type "
                 f"(e.g. {series}-standard-4)" if series != "a2" else
                 "set the group's machine_type: to an a2-highgpu-* type")


def node_config_accelerators(name: str, count: int) -> list[Any]:
    """``NodeConfig.accelerators`` as GKE's API expects: the type, the count per node and
    GKE-managed driver installation (``gpu_driver_version: DEFAULT``), so no driver
    DaemonSet has to be applied by hand."""
    from google.cloud import container_v1 as c

    return [c.AcceleratorConfig(
        accelerator_count=count, accelerator_type=name,
        gpu_driver_installation_config=c.GPUDriverInstallationConfig(
            gpu_driver_version=c.GPUDriverInstallationConfig.GPUDriverVersion.DEFAULT))]
