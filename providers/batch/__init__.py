"""Batch systems beyond Slurm over one shared base: SGE, PBS/Torque, LSF, HTCondor."""
