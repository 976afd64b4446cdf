"""The dashboard on a live adaptive target: a burst of tagged work makes it scale up.

    python examples/dashboard_demo.py                       # watch it: see the printed command
    python examples/dashboard_demo.py --screenshot out.svg  # the app draws one picture

Runs in a temporary project folder (its own scalable.yaml and .scalable/), so it leaves
nothing behind. A ScalableSession brings up one worker with an adaptive range of 1-3,
submits 60 two-second tasks in two tags, and keeps them running for about half a
minute. Meanwhile ``scalable dashboard`` (in another terminal, with the printed
``-f``) shows the workers coming, the work per tag, and the controller's scale-up
decision with its reason. With ``--screenshot``, the dashboard itself exports an SVG
of the screen once the scale-up has happened (this is how docs/guides/dashboard.svg
is made).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scalable import ScalableSession
from scalable.telemetry.store import TelemetryDB

MANIFEST = """\
project: {name: dashboard-demo}
targets:
  local:
    provider: local
    threads_per_worker: 2
    adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 60s}
"""


def simulate(i: int) -> int:
    time.sleep(2.0)
    return i


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--screenshot", metavar="FILE.svg",
                   help="let the dashboard draw the screen into this SVG file")
    p.add_argument("--size", default="100x30", help="screen size for the screenshot")
    args = p.parse_args()
    out = Path(args.screenshot).resolve() if args.screenshot else None

    root = Path(tempfile.mkdtemp(prefix="scalable-dashboard-demo-"))
    manifest = root / "scalable.yaml"
    manifest.write_text(MANIFEST)
    with ScalableSession.from_yaml(manifest) as session:
        client = session.start()
        print(f"watch it live:  scalable dashboard -f {manifest}", flush=True)
        futures = client.map(simulate, range(40), tag="analysis", pure=False)
        futures += client.map(simulate, range(20), tag="io", pure=False)
        run = TelemetryDB.for_root(root).open_run("local")
        # Wait for the controller's scale-up to land (a decision, then workers).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(client.scheduler_info(n_workers=-1)["workers"]) >= 3:
                break
            time.sleep(0.5)
        if out is not None:
            subprocess.run(
                [sys.executable, "-m", "scalable", "dashboard", "-f", str(manifest),
                 "--screenshot", str(out), "--size", args.size],
                check=True)
        done = client.gather(futures)
        print(f"{len(done)} tasks done; run {run.id if run else '?'}")
        if run is not None:
            print(f"replay it:      scalable dashboard -f {manifest} --run {run.id}")


if __name__ == "__main__":
    main()
