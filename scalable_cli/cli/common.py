"""What every command shares: options, output, confirmation, error reporting."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from scalable.errors import ScalableError
from scalable.units import parse_duration

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
