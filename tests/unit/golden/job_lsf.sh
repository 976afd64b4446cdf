#!/usr/bin/env bash

#BSUB -J scalable-0123abcd-default-0
#BSUB -e /home/u/.scalable/hpc/logs/scalable-0123abcd-default-0-%J.err
#BSUB -o /home/u/.scalable/hpc/logs/scalable-0123abcd-default-0-%J.out
#BSUB -q normal
#BSUB -P "proj1"
#BSUB -n 4
#BSUB -R "span[hosts=1]"
#BSUB -M 8590
#BSUB -W 01:30
#BSUB -Jd "scalable;lineage=0123abcd-0000-4000-8000-000000000000;address=workers.default[0];key=0123abcd-k-1"
export ODD='a b;$(x)'
export SCALABLE_TARGET=hpc
export SCALABLE_JOB_ID="${LSB_JOBID}"
export SCALABLE_LOCAL_DIR="${TMPDIR:-/tmp}/scalable-${SCALABLE_JOB_ID}"
mkdir -p "$SCALABLE_LOCAL_DIR" && trap 'rm -rf "$SCALABLE_LOCAL_DIR"' EXIT
/opt/py/bin/python3 -m distributed.cli.dask_worker tls://10.0.0.1:8786 --name 'workers.default[0]' --nthreads 4
