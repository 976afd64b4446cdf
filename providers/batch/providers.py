"""One small provider per batch system: the shared base with that system plugged in."""

from __future__ import annotations

from scalable.providers.batch.provider import BatchProvider
from scalable.providers.batch.sge import SgeSystem


class SgeProvider(BatchProvider):
    name = "sge"
    system_class = SgeSystem
