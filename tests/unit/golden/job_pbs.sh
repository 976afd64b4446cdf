#!/usr/bin/env bash

#PBS -N scalable-0123abcd-default-0
#PBS -q normal
#PBS -A proj1
#PBS -l h_vmem=8G
#PBS -l walltime=1:30:00
#PBS -e /home/u/.scalable/hpc/logs/
#PBS -o /home/u/.scalable/hpc/logs/
#PBS -v SCALABLE_LINEAGE=0123abcd-0000-4000-8000-000000000000,SCALABLE_ADDRESS=workers.default[0],SCALABLE_KEY=0123abcd-k-1
export ODD='a b;$(x)'
export SCALABLE_TARGET=hpc
export SCALABLE_JOB_ID="${PBS_JOBID}"
export SCALABLE_LOCAL_DIR="${TMPDIR:-/tmp}/scalable-${SCALABLE_JOB_ID}"
mkdir -p "$SCALABLE_LOCAL_DIR" && trap 'rm -rf "$SCALABLE_LOCAL_DIR"' EXIT
/opt/py/bin/python3 -m distributed.cli.dask_worker tls://10.0.0.1:8786 --name 'workers.default[0]' --nthreads 4
