"""Starter manifests for ``scalable init``: commented, valid, one per provider."""

from __future__ import annotations

HEADER = """\
# scalable.yaml: where Dask workers run, and how many.
# Reference: docs/reference/manifest.rst, or `scalable schema` for editors.
version: 1
project:
  name: {project}
default_target: {target}
targets:
"""

TARGETS = {
    "local": """\
  local:
    provider: local
    max_workers: 4            # a fixed count (or `adaptive: {minimum: 1, maximum: 8}`)
    threads_per_worker: 2
    processes: false          # false: one process hosts the threaded workers
    containers: none
""",
    "slurm": """\
  hpc:
    provider: slurm
    queue: batch              # partition
    account: ${SLURM_ACCOUNT:-myaccount}
    walltime: "04:00:00"
    cores: 4                  # per job
    memory: 16GiB             # per job
    processes: 2              # workers per job
    max_workers: 8
    interface: ib0            # the scheduler binds to this interface's address
    job_script_prologue:
      - module load python
    pricing:
      core_hour_usd: 0.0      # your allocation's charge rate, if any
""",
    "aws": """\
  cloud:
    provider: aws
    region: us-east-1
    launch_type: ec2          # or fargate (then cpu: 1, memory: 4GiB)
    instance_type: m6i.large
    spot: false               # true | false | fallback
    adaptive:
      minimum: 1
      maximum: 20
    allowed_cidrs: []         # who may reach the scheduler; never 0.0.0.0/0 unless written
""",
    "gke": """\
  gke:
    provider: gke
    project: my-gcp-project
    location: us-central1
    cluster: my-cluster
    machine_type: e2-standard-4
    max_workers: 4
    namespace: default
    allowed_cidrs: ["203.0.113.7/32"]  # who may reach the scheduler: your public IP
""",
}
NAMES = {"local": "local", "slurm": "hpc", "aws": "cloud", "gke": "gke"}


def starter(provider: str, project: str) -> str:
    return HEADER.format(project=project, target=NAMES[provider]) + TARGETS[provider]
