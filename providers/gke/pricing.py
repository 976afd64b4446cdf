"""Prices of GKE node pools from the bundled GCE machine-type catalog.

A node pool costs its nodes: ``node_count × zones × the machine type's hourly price``
(on-demand, or the catalog's spot median). What is *not* counted, said once in every
plan: boot disks, network egress, sustained-use or committed-use discounts, and the
cluster's own management fee — the cluster exists before and after scalable, so its fee
is the cluster's, not this plan's.
"""

from __future__ import annotations

import re
from typing import Any

from scalable.manifest.schema import Pricing
from scalable.pricing.estimator import Price, apply_overrides

NOT_COUNTED = (
    "GKE node prices are list prices; not counted: the cluster's management fee (the "
    "cluster is yours, not this plan's), boot disks, egress and sustained-use discounts"
)
_ZONE = re.compile(r"^(?P<region>[a-z]+-[a-z]+\d+)-[a-z]$")


def region_of(location: str) -> str:
    """``us-central1-a`` → ``us-central1``; a region stays itself."""
    m = _ZONE.match(location)
    return m["region"] if m else location


def node_price(machine_type: str, location: str, spot: bool, pricing: Pricing) -> Price:
    """Hourly price of one node; the manifest's ``pricing`` overrides apply per node."""
    from scalable.pricing.catalog import machine_catalog

    catalog = machine_catalog("gcp_gce")
    region = region_of(location)
    entry = catalog.lookup(machine_type, region)
    if entry is None:
        price = Price.unknown(f"{machine_type} in {region} is not in the GCE catalog")
    else:
        hourly = entry.spot if spot else entry.on_demand
        if hourly is None:
            kind = "spot" if spot else "on-demand"
            price = Price.unknown(f"no {kind} price for {machine_type} in {region}")
        else:
            price = Price(hourly=hourly, source=entry.source or catalog.source, note=NOT_COUNTED,
                          estimate=True)
    return apply_overrides(price, pricing, cores=entry.vcpus if entry else 0.0)


def pool_price(attributes: dict[str, Any], pricing: Pricing) -> Price:
    """A node pool's hourly price from its recorded or desired attributes."""
    nodes = int(attributes.get("node_count", 0)) * int(attributes.get("zones", 1))
    one = node_price(
        str(attributes.get("machine_type", "")),
        str(attributes.get("location", "")),
        bool(attributes.get("spot", False)),
        pricing,
    )
    if one.hourly is None:
        return one
    hourly, source = one.hourly, one.source
    accel = attributes.get("accelerator_type")
    if accel and pricing.hourly_usd is None:  # an override is the whole node's price
        from scalable.providers.gke.accelerators import row

        found = row(str(accel), str(attributes.get("location", "")))
        if found is None:
            return Price.unknown(f"no price for accelerator {accel} in "
                                 f"{region_of(str(attributes.get('location', '')))}")
        count = int(attributes.get("accelerator_count", 1))
        hourly += found.usd_hour * count * (1 - pricing.discount)
        source = f"{source}; GPUs: GCE accelerator list prices (bundled table, 2024)"
    return Price(
        hourly=hourly * nodes,
        source=source,
        note=one.note,
        cores=one.cores * nodes,
        estimate=one.estimate,
    )
