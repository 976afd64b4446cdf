"""Slurm provider (issue: Slurm provider against a real Slurm)."""
