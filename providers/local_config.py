"""The local provider's manifest keys."""


import ipaddress
from typing import ClassVar

from pydantic import Field, StrictBool, model_validator
from scalable.manifest.schema import GroupConfig, StrictModel, TargetConfig


class LocalKeys(StrictModel):
    # Processes on one machine: more than this many is a typo.
    MAX_WORKERS: ClassVar[int] = 512

    processes: StrictBool = True


class LocalGroup(LocalKeys, GroupConfig):
    pass


class LocalTarget(LocalKeys, TargetConfig):
    host: str = Field(
        default="127.0.0.1",
        max_length=255,
        pattern=r"^[A-Za-z0-9.:\[\]_-]+$",
        description="address every listener (scheduler, workers, nannies, dashboards) binds",
    )
    allow_insecure_listen: StrictBool = Field(
        default=False,
        description="accept a non-loopback host without TLS (anyone who can reach it can "
        "run code as you)",
    )
    dashboard: StrictBool = Field(
        default=True,
        description="serve the scheduler's dashboard (off: the scheduler does not import "
        "bokeh, about a second of CPU less at apply)",
    )
    worker_dashboard: StrictBool = Field(
        default=False, description="serve each worker's dashboard (off: faster start)"
    )

    @model_validator(mode="after")
    def _exposure(self) -> "LocalTarget":
        if is_loopback(self.host) or self.tls or self.allow_insecure_listen:
            return self
        raise ValueError(
            f"host {self.host!r} is not a loopback address and tls is off: anyone who can "
            "reach it could run code as you (set tls: true, or allow_insecure_listen: true "
            "to accept that)"
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
