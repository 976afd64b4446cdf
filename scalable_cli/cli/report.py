"""``scalable report``: what a run did and what it cost (from .scalable/telemetry.db)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from scalable.addrs import SCHEDULER
from scalable.cli.common import (
    echo,
    file_option,
    json_option,
    print_json,
    target_option,
)
from scalable.errors import ScalableError
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.workspace import manifest_path

if TYPE_CHECKING:  # sqlite3 and the report code load only when `report` runs
    from scalable.telemetry.store import Run, TelemetryDB


def _db(file: str | None) -> TelemetryDB:
    from scalable.telemetry.store import TelemetryDB

    root = manifest_path(file).resolve().parent
    db = TelemetryDB.for_root(root)
    if not db.exists:
        raise ScalableError(
            f"no telemetry recorded yet ({db.path} does not exist)",
            hint="runs are recorded from the first `scalable apply` (or ScalableSession.start)",
        )
    return db


def _select(db: TelemetryDB, run_id: str | None, target: str | None) -> Run:
    if run_id is not None:
        run = db.run(run_id)
        if run is not None:
            return run
        found = db.find_runs(run_id)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ScalableError(f"no run {run_id!r}", hint="`scalable report --list` shows runs")
        raise ScalableError(
            f"{run_id!r} matches {len(found)} runs",
            hint="give more of the id: " + ", ".join(r.id for r in found[:3]),
        )
    run = db.last_run(target)
    if run is None:
        where = f" for target {target!r}" if target else ""
        raise ScalableError(f"no runs recorded{where}",
                            hint="runs are recorded from the first `scalable apply`")
    return run


def _refresh(db: TelemetryDB, run: Run, file: str | None) -> tuple[Run, float | None]:
    """For a run not ended: pull a remote scheduler's records; find a silent end.

    Returns the run (re-read) and, when its scheduler is no longer the target's, the
    time it was last heard of (the report's window ends there).
    """
    if run.ended_at is not None:
        return run, None
    try:
        from scalable.telemetry.recorder import current_run
        from scalable.workspace import Workspace

        ws = Workspace.open(file, run.target)
        state = ws.store.read()
        live_addr = state.outputs.get(SCHEDULER_ADDRESS) if state else None
        sched = state.get(SCHEDULER) if state else None
        if live_addr and live_addr == run.scheduler_address and sched is not None and (
                ws.provider.observe([sched])[SCHEDULER].status != "gone"):
            if run.source == "pulled":
                current_run(ws, state)
            return db.run(run.id) or run, None
    except ScalableError:
        pass  # no manifest or no such target: judge from the records alone
    from scalable.telemetry.report import last_activity

    return run, last_activity(db, run)


@click.command()
@click.option("--last", is_flag=True, help="The most recent run (default).")
@click.option("--run", metavar="ID", help="One run, by id (or its start).")
@click.option("--list", "list_", is_flag=True, help="List recorded runs.")
@click.option("--limit", type=int, default=20, show_default=True,
              help="How many runs --list shows.")
@file_option
@target_option
@json_option
def report(
    last: bool, run: str | None, list_: bool, limit: int, file: str | None,
    target: str | None, json_: bool,
) -> None:
    """Summarise a run: workers, tasks, efficiency, tags, scaling decisions and cost."""
    from scalable.telemetry.report import (
        build_report,
        render_report,
        render_run_list,
        report_to_dict,
        run_prediction_error,
    )

    if sum([last, run is not None, list_]) > 1:
        raise ScalableError("choose one of --last, --run ID and --list")
    db = _db(file)
    if list_:
        runs = db.runs(target, limit=limit)
        if json_:
            print_json({"format_version": 1, "runs": [
                {**r.to_dict(), "tasks": db.task_counts(r.id),
                 "prediction_error": run_prediction_error(db, r)} for r in runs]})
        else:
            echo(render_run_list(db, runs).rstrip("\n"))
        return
    chosen, silent_end = _refresh(db, _select(db, run, target), file)
    rep = build_report(db, chosen, end=silent_end)
    if json_:
        print_json(report_to_dict(rep))
    else:
        echo(render_report(rep).rstrip("\n"))
