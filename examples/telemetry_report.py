"""Telemetry: run tagged work through a session, then read the run back three ways.

    python examples/telemetry_report.py

Runs in a temporary project folder (its own scalable.yaml and .scalable/), so it leaves
nothing in the repository. It prints the report ``scalable report --last`` would print,
the per-tag history the objective planner reads, and a plain SQL query.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path

from scalable import ScalableSession
from scalable.telemetry.report import build_report, render_report
from scalable.telemetry.store import TelemetryDB

MANIFEST = """\
project: {name: telemetry-example}
targets:
  local:
    provider: local
    max_workers: 2
    threads_per_worker: 2
    processes: false
"""


def simulate(i: int) -> int:
    time.sleep(0.05 * (1 + i % 3))
    return i


def analyse(x: int) -> int:
    if x == 7:
        raise ValueError("bad year")  # one failure, to show it counted
    return x * 2


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="scalable-telemetry-"))
    (root / "scalable.yaml").write_text(MANIFEST)
    os.chdir(root)

    with ScalableSession.from_yaml("scalable.yaml", target="local") as session:
        client = session.start()
        sims = client.map(simulate, range(24), tag="simulate")
        outs = [client.submit(analyse, s, tag="analysis") for s in sims]
        failed = [f for f in outs if f.exception() is not None]
        print(f"{len(outs) - len(failed)} analyses succeeded, {len(failed)} failed")
    # The session is closed: the scheduler is gone and the run has ended.

    db = TelemetryDB.for_root(root)
    run = db.last_run("local")
    assert run is not None
    print()
    print(render_report(build_report(db, run)))

    history = db.task_durations("local", tag="simulate")
    print(f"'simulate' history: {len(history)} tasks, "
          f"mean {sum(history) / len(history):.3f}s")

    with sqlite3.connect(root / ".scalable" / "telemetry.db") as conn:
        rows = conn.execute(
            "SELECT tag, status, COUNT(*) FROM tasks WHERE run_id = ? "
            "GROUP BY tag, status ORDER BY tag, status", (run.id,)).fetchall()
    for tag, status, n in rows:
        print(f"  sql: tag={tag} status={status} count={n}")


if __name__ == "__main__":
    main()
