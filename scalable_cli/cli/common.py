"""What every command shares: options, output, confirmation, error reporting."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
from scalable.errors import ScalableError
from scalable.units import parse_duration

# The options every command shares, one decorator each (click keeps the order they are
# written in, top to bottom, for --help).
file_option = click.option(
    "-f", "--file", help="Manifest (default ./scalable.yaml; env SCALABLE_FILE)."
)
target_option = click.option(
    "-t", "--target", help="Target name (default: default_target; env SCALABLE_TARGET)."
)
lock_timeout_option = click.option(
    "--lock-timeout", default="0s", show_default=True,
    help="How long to wait for the state lock, e.g. 30s.",
)
auto_approve_option = click.option(
    "--auto-approve", is_flag=True, help="Skip the interactive approval."
)
json_option = click.option("--json", "json_", is_flag=True, help="Machine-readable output.")


class OrderedGroup(click.Group):
    """A subcommand group (``state``) whose help lists its commands as written, not sorted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


class Ctx:
    """Global flags, set by the app callback."""

    debug = False
    no_color = False


def use_color() -> bool:
    return not Ctx.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()


def echo(text: str = "") -> None:
    click.echo(text)


def info(text: str) -> None:
    """Progress lines; on stderr so --json output stays clean."""
    click.echo(text, err=True)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def lock_seconds(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ScalableError(f"--lock-timeout: {exc}", hint="e.g. --lock-timeout 30s") from None


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    raise ScalableError(message, hint=hint) if code == 1 else click.exceptions.Exit(code)


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
    answer = click.prompt("  Enter a value", default="", show_default=False)
    echo()
    if answer.strip() != "yes":
        raise ScalableError("Apply cancelled.", hint=None)


def guarded(call: Callable[[], Any]) -> int:
    """Run the command line; every outcome becomes an exit code, never a traceback.

    Usage errors (unknown option or command, a group without its subcommand) print
    click's own usage message and exit 1, as Terraform does: 2 is reserved for
    ``plan --detailed-exitcode`` ("changes present"), so a typo in a pipeline must not
    read as a plan with changes.
    """
    try:
        rc = call()
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except click.Abort as exc:
        # click turns Ctrl-C inside a command into Abort: still the shell's 130
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("Interrupted.", err=True)
            return 130
        if Ctx.debug:
            raise
        click.echo("Aborted.", err=True)
        return 1
    except Exception as exc:
        if Ctx.debug:
            raise
        if isinstance(exc, click.ClickException):
            exc.show()
            return 1
        return report_error(exc)
    return rc if isinstance(rc, int) else 0


class ScalableGroup(click.Group):
    """The command group: errors handled the same way under CliRunner and the real CLI."""

    def main(
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
        click.echo(f"Error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"  hint: {exc.hint}", err=True)
        return exc.exit_code
    click.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
    click.echo("  hint: this is a bug in scalable; rerun with --debug for a traceback", err=True)
    return 1
