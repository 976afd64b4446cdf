"""What every command shares: options, output, confirmation, error reporting."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn

import typer
from scalable.errors import ScalableError
from scalable.units import parse_duration
from typer.core import TyperGroup

FileOpt = Annotated[
    str | None,
    typer.Option("-f", "--file", help="Manifest (default ./scalable.yaml; env SCALABLE_FILE)."),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "-t", "--target", help="Target name (default: default_target; env SCALABLE_TARGET)."
    ),
]
LockTimeoutOpt = Annotated[
    str,
    typer.Option("--lock-timeout", help="How long to wait for the state lock, e.g. 30s."),
]
AutoApproveOpt = Annotated[
    bool, typer.Option("--auto-approve", help="Skip the interactive approval.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


class Ctx:
    """Global flags, set by the app callback."""

    debug = False
    no_color = False


def use_color() -> bool:
    return not Ctx.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def echo(text: str = "") -> None:
    typer.echo(text)


def info(text: str) -> None:
    """Progress lines; on stderr so --json output stays clean."""
    typer.echo(text, err=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def lock_seconds(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ScalableError(f"--lock-timeout: {exc}", hint="e.g. --lock-timeout 30s") from None


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    raise ScalableError(message, hint=hint) if code == 1 else typer.Exit(code)


def in_automation() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdin.isatty()


def confirm(question: str, detail: str) -> None:
    """Terraform's approval: only 'yes' goes on; no TTY (or CI) means no approval."""
    if in_automation():
        raise ScalableError(
            "approval needed but there is no terminal to ask (or CI is set)",
            hint="pass --auto-approve, or apply a saved plan (`scalable plan -o FILE`)",
        )
    echo(question)
    echo(f"  {detail}")
    echo("  Only 'yes' will be accepted to approve.")
    echo()
    answer = typer.prompt("  Enter a value", default="", show_default=False)
    echo()
    if answer.strip() != "yes":
        raise ScalableError("Apply cancelled.", hint=None)


def _click_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(ClickException types, Abort types) of every click this typer may raise.

    typer >= 0.29 vendors click as ``typer._click`` and no longer raises the separate
    ``click`` package's classes; older typers raise ``click``'s. Checking only one of
    them turned every usage error into "this is a bug" (issue 11, item 10).
    """
    errors: list[type[BaseException]] = []
    aborts: list[type[BaseException]] = [typer.Abort]
    for name in ("typer._click", "click"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(mod.ClickException)
        abort = getattr(getattr(mod, "exceptions", mod), "Abort", None)
        if isinstance(abort, type):
            aborts.append(abort)
    return tuple(errors), tuple(aborts)


def guarded(call: Callable[[], Any]) -> int:
    """Run the command line; every outcome becomes an exit code, never a traceback.

    Usage errors (unknown option or command, a group without its subcommand) print
    click's own usage message and exit 1, as Terraform does: 2 is reserved for
    ``plan --detailed-exitcode`` ("changes present"), so a typo in a pipeline must not
    read as a plan with changes.
    """
    try:
        rc = call()
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
        click_errors, aborts = _click_exceptions()
        if isinstance(exc, aborts):
            typer.echo("Aborted.", err=True)
            return 1
        if isinstance(exc, click_errors):
            exc.show()  # type: ignore[attr-defined]
            return 1
        return report_error(exc)
    return rc if isinstance(rc, int) else 0


class ScalableGroup(TyperGroup):
    """The command group: errors handled the same way under CliRunner and the real CLI."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        def call() -> Any:
            return super(ScalableGroup, self).main(
                args, prog_name, complete_var, standalone_mode=False, **extra
            )

        rc = guarded(call)
        if standalone_mode:
            sys.exit(rc)
        return rc


def report_error(exc: BaseException) -> int:
    """Print one ``Error:`` line and a hint; return the exit code."""
    if isinstance(exc, ScalableError):
        typer.echo(f"Error: {exc.message}", err=True)
        if exc.hint:
            typer.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_code
    typer.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
    typer.echo("  hint: this is a bug in scalable; rerun with --debug for a traceback", err=True)
    return 1
