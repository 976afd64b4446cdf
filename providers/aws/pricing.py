"""Hourly prices of AWS capacity from the bundled, dated catalogs (never the Pricing API).

EC2: on-demand per instance type and region; spot is the catalog's median spot price
across zones on the day it was taken, shown as an *estimate* (spot prices move, and a
spot instance may be interrupted). Fargate: vCPU-hours plus GB-hours, and the same for
Fargate Spot (an estimate too). Anything the catalogs lack is ``unknown``, never $0.
A target's ``pricing:`` block overrides the catalog (``hourly_usd`` per instance or task,
``discount`` on either).
"""

from __future__ import annotations

import dataclasses

from scalable.manifest.schema import Pricing
from scalable.pricing.catalog import fargate_rates, machine_catalog
from scalable.pricing.estimator import Price, apply_overrides, format_usd

FREE_NOTE = "no hourly charge"


def ec2_price(instance_type: str, region: str | None, spot: bool | str, pricing: Pricing) -> Price:
    """One EC2 instance's hourly price; ``spot`` is False, True or ``"fallback"``."""
    if not region:
        return apply_overrides(Price.unknown("no region to price in"), pricing)
    catalog = machine_catalog("aws_ec2")
    entry = catalog.lookup(instance_type, region)
    if entry is None:
        price = Price.unknown(f"{instance_type} in {region} is not in the EC2 catalog")
        return apply_overrides(price, pricing)
    cores = entry.vcpus
    catalog = dataclasses.replace(catalog, source=entry.source or catalog.source)
    if not spot:
        if entry.on_demand is None:
            return apply_overrides(
                Price.unknown(f"no on-demand price for {instance_type} in {region}"), pricing,
                cores)
        return apply_overrides(
            Price(hourly=entry.on_demand, source=catalog.source, cores=cores), pricing, cores)
    if entry.spot is None:
        if spot == "fallback" and entry.on_demand is not None:
            return apply_overrides(
                Price(hourly=entry.on_demand, source=catalog.source, cores=cores, estimate=True,
                      note=f"{instance_type} has no spot estimate in {region}: on-demand "
                      "price shown (spot: fallback pays at most this)"),
                pricing, cores)
        return apply_overrides(
            Price.unknown(f"no spot estimate for {instance_type} in {region}"), pricing, cores)
    note = "spot prices are estimates (catalog median across zones), not quotes"
    if spot == "fallback" and entry.on_demand is not None:
        note += (f"; spot: fallback pays on-demand (e.g. {instance_type} "
                 f"{format_usd(entry.on_demand)}/h) when spot capacity is short")
    return apply_overrides(
        Price(hourly=entry.spot, source=catalog.source, cores=cores, estimate=True, note=note),
        pricing, cores)


def fargate_price(
    vcpu: float, memory_mib: int, region: str | None, spot: bool | str, pricing: Pricing
) -> Price:
    """One Fargate task's hourly price: vCPU-hours plus GB-hours (Linux/x86)."""
    if not region:
        return apply_overrides(Price.unknown("no region to price in"), pricing)
    rates = fargate_rates(region)
    if rates is None:
        return apply_overrides(
            Price.unknown(f"no Fargate rates for {region} in the catalog"), pricing, vcpu)
    gb = memory_mib / 1024
    source = f"AWS Fargate list prices for {region} (bundled catalog, 2026-11)"
    on_demand = vcpu * rates["vcpu_hour"] + gb * rates["gb_hour"]
    if not spot:
        return apply_overrides(Price(hourly=on_demand, source=source, cores=vcpu), pricing, vcpu)
    hourly = vcpu * rates["spot_vcpu_hour"] + gb * rates["spot_gb_hour"]
    note = "Fargate Spot prices are estimates (they move), not quotes"
    if spot == "fallback":
        note += f"; fallback runs on regular Fargate ({format_usd(on_demand)}/h per task)"
    return apply_overrides(
        Price(hourly=hourly, source=source, cores=vcpu, estimate=True, note=note), pricing, vcpu)


def free(what: str) -> Price:
    """Resources AWS does not bill by the hour (security groups, clusters, definitions)."""
    return Price(hourly=0.0, source=f"{what}: {FREE_NOTE}")
