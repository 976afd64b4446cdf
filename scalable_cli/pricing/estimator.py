"""Prices of resources: an hourly figure, or an explicit ``unknown`` — never a silent $0."""

from __future__ import annotations

from dataclasses import dataclass

from scalable.manifest.schema import Pricing


@dataclass(frozen=True)
class Price:
    """Hourly price of one resource. ``hourly is None`` means unknown (with a reason)."""

    hourly: float | None
    source: str = ""
    note: str = ""
    # Core-hours per hour of this resource (Slurm accounting), when that is the unit.
    cores: float = 0.0
    estimate: bool = False
    # Whole nodes this resource holds (a multi-node Slurm allocation): node-hours.
    nodes: float = 0.0
    # Alternatives the provider may fall back to, in order (EC2 ``instance_types``):
    # (name, hourly price or None). ``hourly`` is the first's; the plan shows the range.
    choices: tuple[tuple[str, float | None], ...] = ()

    @property
    def hourly_max(self) -> float | None:
        """The worst case across ``choices`` (None: one of them has no known price)."""
        if not self.choices:
            return self.hourly
        prices = [h for _, h in self.choices]
        if self.hourly is None or any(h is None for h in prices):
            return None
        return max([self.hourly, *(h for h in prices if h is not None)])

    @property
    def hourly_min(self) -> float | None:
        """The best case across ``choices`` (None: one of them has no known price)."""
        if not self.choices:
            return self.hourly
        prices = [h for _, h in self.choices]
        if self.hourly is None or any(h is None for h in prices):
            return None
        return min([self.hourly, *(h for h in prices if h is not None)])

    @classmethod
    def unknown(cls, reason: str) -> Price:
        return cls(hourly=None, note=reason)

    @classmethod
    def free(cls, source: str) -> Price:
        return cls(hourly=0.0, source=source)

    @property
    def known(self) -> bool:
        return self.hourly is not None


def apply_overrides(price: Price, pricing: Pricing, cores: float = 0.0) -> Price:
    """A target's ``pricing:`` block wins over catalogs; a discount applies to both."""
    if pricing.hourly_usd is not None:
        price = Price(hourly=pricing.hourly_usd, source="manifest pricing.hourly_usd")
    elif pricing.core_hour_usd is not None and cores:
        price = Price(
            hourly=pricing.core_hour_usd * cores,
            source="manifest pricing.core_hour_usd",
            cores=cores,
        )
    if price.hourly is not None and pricing.discount:
        price = Price(
            hourly=price.hourly * (1 - pricing.discount),
            source=f"{price.source}, {pricing.discount:.0%} discount",
            note=price.note,
            cores=price.cores,
            estimate=price.estimate,
        )
    return price


def format_usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    if value == 0:
        return "$0.00"
    if abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"
