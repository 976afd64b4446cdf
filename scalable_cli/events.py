"""Where the engine's and the controller's events go.

Telemetry (``scalable.telemetry``) records them into the run when it is installed; the
fallback appends JSON lines to ``.scalable/<target>/logs/events.jsonl`` so nothing is lost.
"""

from __future__ import annotations

import json
import time
from typing import Any

from scalable.engine import EventSink
from scalable.spec import TargetSpec


def event_sink(spec: TargetSpec) -> EventSink:
    path = spec.workdir / "logs" / "events.jsonl"

    def sink(kind: str, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps({"ts": time.time(), "kind": kind, **data}, default=str) + "\n")

    return sink
