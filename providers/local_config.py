"""The local provider's manifest keys."""

from __future__ import annotations

from typing import ClassVar

from pydantic import StrictBool
from scalable.manifest.schema import GroupConfig, StrictModel, TargetConfig


class LocalKeys(StrictModel):
    # Processes on one machine: more than this many is a typo.
    MAX_WORKERS: ClassVar[int] = 512

    processes: StrictBool = True


class LocalGroup(LocalKeys, GroupConfig):
    pass


class LocalTarget(LocalKeys, TargetConfig):
    pass
