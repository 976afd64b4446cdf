"""Deferred option conversion (issue 15): a command's values, errors and exit codes are
typer's own, whether typer's pydantic converter is built up front or on first need."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from scalable.cli import ScalableCommand
from typer.testing import CliRunner


def _app(deferred: bool) -> typer.Typer:
    app = typer.Typer(rich_markup_mode=None, add_completion=False)

    @app.command(cls=ScalableCommand if deferred else None)
    def cmd(
        name: Annotated[str | None, typer.Option("--name")] = None,
        timeout: Annotated[str, typer.Option("--timeout")] = "0s",
        count: Annotated[int | None, typer.Option("--count")] = None,
        ratio: Annotated[float | None, typer.Option("--ratio")] = None,
        out: Annotated[Path | None, typer.Option("-o", "--out")] = None,
        only: Annotated[list[str] | None, typer.Option("--only")] = None,
        flag: Annotated[bool, typer.Option("--flag")] = False,
    ) -> None:
        typer.echo(repr((name, timeout, count, ratio, out, only, flag)))

    return app


CASES = [
    [],
    ["--name", "x", "--timeout", "5s"],
    ["--count", "3", "--ratio", "0.5", "-o", "plan.json", "--only", "a", "--only", "b"],
    ["--flag", "--name", ""],
    ["--count", "three"],  # typer's own error message
    ["--ratio", "nan?"],
    ["--count"],  # missing value
]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a) or "none")
def test_deferred_conversion_matches_typers(argv: list[str]) -> None:
    eager = CliRunner().invoke(_app(deferred=False), argv)
    lazy = CliRunner().invoke(_app(deferred=True), argv)
    assert (lazy.exit_code, lazy.output) == (eager.exit_code, eager.output)
    if argv == CASES[2]:
        assert "(None, '0s', 3, 0.5, PosixPath('plan.json'), ['a', 'b'], False)" in lazy.output


def test_no_value_builds_no_converter() -> None:
    app = _app(deferred=True)
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("cmd", ["--timeout", "5s"])
    with ctx:
        cmd.invoke(ctx)
    built = [p.name for p in cmd.get_params(ctx)
             if type(getattr(p, "_runtime_param", None)).__name__ != "_Deferred"]
    # a plain string passes through; nothing else had a value to convert
    assert built == [], built
