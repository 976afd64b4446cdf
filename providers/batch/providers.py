"""One small provider per batch system: the shared base with that system plugged in."""

from __future__ import annotations

from scalable.providers.batch.htcondor import HtcondorSystem
from scalable.providers.batch.lsf import LsfSystem
from scalable.providers.batch.pbs import PbsSystem
from scalable.providers.batch.provider import BatchProvider
from scalable.providers.batch.sge import SgeSystem


class SgeProvider(BatchProvider):
    name = "sge"
    system_class = SgeSystem


class PbsProvider(BatchProvider):
    """PBS Professional / OpenPBS: not run against a real PBS here (see docs/guides/pbs)."""

    name = "pbs"
    system_class = PbsSystem


class LsfProvider(BatchProvider):
    """IBM Spectrum LSF: not run against a real LSF here (see docs/guides/lsf)."""

    name = "lsf"
    system_class = LsfSystem


class HtcondorProvider(BatchProvider):
    """HTCondor: not run against a real HTCondor here (see docs/guides/htcondor)."""

    name = "htcondor"
    system_class = HtcondorSystem
