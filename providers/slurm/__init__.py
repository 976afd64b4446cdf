"""Slurm provider: a Dask scheduler on the submitting host, workers in Slurm batch jobs."""

from scalable.providers.slurm.provider import SlurmProvider

__all__ = ["SlurmProvider"]
