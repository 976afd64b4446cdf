"""scalable's own overhead on the GKE path, against the fake cluster (no Google latency).

Runs the real CLI (subprocesses) against tests/fakes: plan, apply of N workers (until
they have registered with the scheduler), a no-change plan, a scale-up in place and
destroy; prints wall times. GKE's operations take ``--op-seconds`` here (minutes on real
GKE, and image pulls add more): the figures are what scalable adds on top.

    python benchmarks/gke_fake.py --workers 2 --scale-to 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.cluster import fake_cluster, gke_manifest  # noqa: E402


def run(root: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scalable", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise SystemExit(f"scalable {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


def import_ms(module: str) -> float:
    """Milliseconds to import ``module`` on top of what the CLI has loaded anyway."""
    code = ("import time, scalable.manifest.schema, scalable.providers.base; "
            f"t = time.perf_counter(); import {module}; "
            "print((time.perf_counter() - t) * 1000)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scale-to", type=int, default=4)
    ap.add_argument("--op-seconds", type=float, default=0.3)
    args = ap.parse_args()

    print("import cost on top of the CLI's own modules, fresh interpreter (best of 3, ms):")
    for label, module in (
        ("scalable.providers.gke", "scalable.providers.gke"),
        ("google.cloud.container_v1", "google.cloud.container_v1"),
        ("kubernetes ApiClient (used)", "kubernetes.client.api_client"),
        ("kubernetes Core/AppsV1Api (avoided)",
         "kubernetes.client.api.core_v1_api, kubernetes.client.api.apps_v1_api"),
    ):
        print(f"  {label:38s} {import_ms(module):7.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        with fake_cluster(Path(tmp) / "cluster", op_seconds=args.op_seconds) as (gke, _kube):
            env = {**os.environ, "CI": "1", "NO_COLOR": "1",
                   "SCALABLE_GKE_ENDPOINT": gke.address}
            (root / "scalable.yaml").write_text(gke_manifest(gke, workers=args.workers))
            figures = [
                ("plan (empty state)", run(root, env, "plan")),
                (f"apply {args.workers} workers (to registered)",
                 run(root, env, "apply", "--auto-approve")),
                ("plan (no changes, full refresh)", run(root, env, "plan")),
            ]
            (root / "scalable.yaml").write_text(gke_manifest(gke, workers=args.scale_to))
            figures.append((f"apply scale {args.workers} → {args.scale_to} in place",
                            run(root, env, "apply", "--auto-approve")))
            figures.append(("destroy", run(root, env, "destroy", "--auto-approve")))
            print(f"CLI wall time against the fake cluster (GKE operations "
                  f"{args.op_seconds:g} s each):")
            for label, seconds in figures:
                print(f"  {label:40s} {seconds:6.2f} s")
            print(f"  GKE RPCs made: {len(gke.calls)} "
                  f"({gke.calls.count('GetOperation')} GetOperation polls)")


if __name__ == "__main__":
    main()
