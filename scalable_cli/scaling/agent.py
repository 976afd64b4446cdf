"""The detached controller process for CLI-applied adaptive targets.

Started by ``apply`` as the ``controller`` resource; stopped by ``destroy``; exits on its
own when the target has no scheduler any more.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from scalable.hooks import LogHook
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.scaling.controller import Controller
from scalable.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scalable-controller")
    p.add_argument("--file", required=True)
    p.add_argument("--target", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    ws = Workspace.open(args.file, args.target)
    engine = ws.engine(hooks=LogHook(logging.getLogger("scalable.engine")), owner="controller")
    from scalable.scaling.bounds import bounds_from_telemetry

    maxima = {g.name: g.adaptive.maximum for g in ws.spec.groups if g.adaptive}
    # Objectives given to `apply` reach this process through the run's telemetry.
    controller = Controller(engine, bounds_source=lambda: bounds_from_telemetry(ws, maxima))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    state = ws.store.read()
    if state is None or SCHEDULER_ADDRESS not in state.outputs:
        return 0
    client = engine.connect(state.outputs, timeout=30)
    watchdog = threading.Thread(target=_watch, args=(client, stop), daemon=True)
    watchdog.start()
    try:
        controller.run(client, stop)
    finally:
        client.close()
    return 0


def _watch(client: object, stop: threading.Event) -> None:
    """Stop when the scheduler is gone for good (destroyed, or died)."""
    misses = 0
    while not stop.wait(5):
        status = getattr(client, "status", "running")
        misses = misses + 1 if status not in ("running", "connecting") else 0
        if misses >= 6:
            stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
