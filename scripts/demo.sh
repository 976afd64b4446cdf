#!/usr/bin/env bash
# The tour on the embedded default (the `local` target in scalable.yaml):
# plan → apply → a plain Dask client computes → destroy; then the same from Python.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'scalable destroy --auto-approve >/dev/null 2>&1 || true' EXIT
echo "== scalable plan"
scalable plan
echo "== scalable apply"
scalable apply --auto-approve
echo "== a bare distributed.Client() via scalable env"
eval "$(scalable env)"
python - <<'PY'
from distributed import Client
with Client() as c:
    total = sum(c.gather(c.map(lambda x: x * x, range(1000))))
    print(f"sum of squares 0..999 = {total} on {len(c.scheduler_info(n_workers=-1)['workers'])} workers")
PY
echo "== scalable destroy"
scalable destroy --auto-approve
trap - EXIT
echo "== the same from Python (examples/quickstart.py)"
python examples/quickstart.py
