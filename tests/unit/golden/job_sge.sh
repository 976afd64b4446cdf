#!/usr/bin/env bash

#$ -N scalable-0123abcd-default-0
#$ -q normal
#$ -P proj1
#$ -l h_vmem=8G
#$ -l h_rt=1:30:00
#$ -e /home/u/.scalable/hpc/logs/
#$ -o /home/u/.scalable/hpc/logs/
#$ -cwd
#$ -j y
#$ -S /bin/bash
#$ -ac scalable_lineage=0123abcd-0000-4000-8000-000000000000,scalable_address=workers.default[0],scalable_key=0123abcd-k-1
#$ -pe smp 4
export ODD='a b;$(x)'
export SCALABLE_TARGET=hpc
export SCALABLE_JOB_ID="${JOB_ID}"
export SCALABLE_LOCAL_DIR="${TMPDIR:-/tmp}/scalable-${SCALABLE_JOB_ID}"
mkdir -p "$SCALABLE_LOCAL_DIR" && trap 'rm -rf "$SCALABLE_LOCAL_DIR"' EXIT
/opt/py/bin/python3 -m distributed.cli.dask_worker tls://10.0.0.1:8786 --name 'workers.default[0]' --nthreads 4
