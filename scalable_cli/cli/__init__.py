"""The ``scalable`` command: a thin face over the engine (see scalable.session)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from scalable._version import __version__
from scalable.cli import adopt as adopt_cmds
from scalable.cli import apply as apply_cmds
from scalable.cli import dashboard as dashboard_cmds
from scalable.cli import manifest as manifest_cmds
from scalable.cli import outputs as output_cmds
from scalable.cli import report as report_cmds
from scalable.cli import state as state_cmds
from scalable.cli import sweep as sweep_cmds
from scalable.cli.common import Ctx, report_error

app = typer.Typer(
    name="scalable",
    help="Plan, apply and destroy Dask capacity: local, Slurm, AWS, GKE.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"scalable {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No ANSI colours.")] = False,
) -> None:
    Ctx.debug = debug or bool(os.environ.get("SCALABLE_DEBUG"))
    Ctx.no_color = no_color


app.command()(apply_cmds.plan)
app.command()(apply_cmds.apply)
app.command()(apply_cmds.destroy)
app.command()(output_cmds.output)
app.command()(output_cmds.env)
app.command()(output_cmds.status)
app.command()(report_cmds.report)
app.command()(dashboard_cmds.dashboard)
app.command()(manifest_cmds.validate)
app.command()(manifest_cmds.schema)
app.command()(manifest_cmds.init)
app.command("import")(adopt_cmds.import_)
app.command()(sweep_cmds.sweep)
app.add_typer(state_cmds.app, name="state")


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors become one ``Error:`` line and a hint, never a traceback."""
    try:
        # With standalone_mode=False click returns an Exit's code instead of raising it.
        rc = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:
        if Ctx.debug:
            raise
        import click

        if isinstance(exc, click.exceptions.Abort):
            typer.echo("Aborted.", err=True)
            return 1
        if isinstance(exc, click.ClickException):
            exc.show()
            return 1
        return report_error(exc)
    return rc if isinstance(rc, int) else 0


def run() -> None:
    sys.exit(main())
