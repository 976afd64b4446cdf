"""``scalable dashboard``: a terminal UI of live capacity, work and scaling decisions."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from scalable.cli.common import Ctx, echo, file_option, target_option
from scalable.errors import ScalableError
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.units import parse_duration

if TYPE_CHECKING:
    from scalable.tui.source import LiveSource, ReplaySource

# Loggers that would write over the screen while the UI runs (comms retrying a gone
# scheduler, asyncio complaining about closed sockets).
_NOISY = ("distributed", "tornado", "asyncio", "scalable")


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise ScalableError(f"--size: {value!r} is not WIDTHxHEIGHT",
                            hint="e.g. --size 80x24") from None
    if w < 40 or h < 12:
        raise ScalableError(f"--size {value}: too small", hint="at least 40x12")
    return w, h


def _moment(value: str, source: ReplaySource) -> float:
    """``--at``: seconds from the run's start (``90``, ``1m30s`` style) or ``NN%``."""
    v = value.strip()
    try:
        if v.endswith("%"):
            return source.start + float(v[:-1]) / 100 * source.duration
        return source.start + parse_duration(v)
    except ValueError:
        raise ScalableError(f"--at: {value!r} is neither a duration nor a percentage",
                            hint="e.g. --at 90s or --at 50%") from None


def _replay_source(file: str | None, run_id: str, target: str | None) -> ReplaySource:
    from scalable.cli.report import _db, _select
    from scalable.tui.source import ReplaySource

    db = _db(file)
    run = _select(db, run_id, target)
    groups: tuple[str, ...] = ()
    with contextlib.suppress(ScalableError):
        from scalable.workspace import Workspace

        ws = Workspace.open(file, run.target)
        groups = tuple(g.name for g in ws.spec.groups)
    return ReplaySource(db, run, groups=groups)


def _live_source(file: str | None, target: str | None) -> LiveSource:
    from scalable.tui.source import LiveSource
    from scalable.workspace import Workspace

    ws = Workspace.open(file, target)
    state = ws.store.read()
    if state is None or SCHEDULER_ADDRESS not in state.outputs:
        raise ScalableError(
            f"target {ws.spec.name!r} has no scheduler: nothing to watch",
            hint=f"run `scalable apply -t {ws.spec.name}` first, or replay a recorded run "
                 "with `scalable dashboard --run ID` (`scalable report --list` shows runs)",
        )
    return LiveSource(ws)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in _NOISY}
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@click.command()
@file_option
@target_option
@click.option("--run", metavar="ID",
              help="Replay a recorded run (a unique start of its id is enough).")
@click.option("--interval", default="1s", show_default=True,
              help="Time between updates of a live target.")
@click.option("--at", help="Replay: the moment shown first, e.g. 90s or 50% (default: the end).")
@click.option("--screenshot", metavar="FILE.svg",
              help="Draw one picture into an SVG file and exit (no terminal needed).")
@click.option("--size", default="80x24", show_default=True,
              help="Screen size for --screenshot, WIDTHxHEIGHT.")
def dashboard(
    file: str | None, target: str | None, run: str | None, interval: str, at: str | None,
    screenshot: str | None, size: str,
) -> None:
    """Watch a target live (workers, work per tag, scaling decisions, cost), or replay a run.

    Keys: q quit, p pause, + / - scale the selected adaptive group, / filter, ? help.
    """
    try:
        import textual  # noqa: F401
    except ModuleNotFoundError:
        raise ScalableError("the dashboard needs Textual, which is not installed",
                            hint="pip install 'scalable[tui]'") from None
    try:
        period = parse_duration(interval)
    except ValueError as exc:
        raise ScalableError(f"--interval: {exc}", hint="e.g. --interval 1s") from None
    if period < 0.2:
        raise ScalableError("--interval must be at least 0.2s",
                            hint="the dashboard polls the scheduler once per interval")
    dims = _size(size)
    if at is not None and run is None:
        raise ScalableError("--at is for replays", hint="add --run ID")
    if Ctx.no_color:
        os.environ["NO_COLOR"] = "1"  # Textual reads it when the app is created

    source: LiveSource | ReplaySource
    if run is not None:
        source = _replay_source(file, run, target)
        if at is not None:
            source.seek(_moment(at, source))
    else:
        source = _live_source(file, target)  # connects at the first update, not here
    if screenshot is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ScalableError("the dashboard needs a terminal",
                            hint="use --screenshot FILE.svg to draw one picture without one")

    from scalable.tui.app import DashboardApp

    app = DashboardApp(source, interval=period,
                       screenshot=Path(screenshot) if screenshot else None)
    try:
        with _quiet_logs():
            if screenshot:
                app.run(headless=True, size=dims)
            else:
                app.run()
    finally:
        source.close()
    if screenshot:
        if not Path(screenshot).exists():
            raise ScalableError(f"no picture was drawn into {screenshot}",
                                hint=app.failure or "rerun with --debug")
        echo(f"Saved {screenshot}")
    code: Any = app.return_code
    if code:
        raise click.exceptions.Exit(int(code))
