"""Option values as the commands receive them, and bad values as users see them: click's
own conversion (issue 15 moved the CLI from typer to plain click), usage errors exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from scalable.cli import app, load_command, main


def _params(command: str, argv: list[str]) -> dict[str, Any]:
    cmd = load_command(command)
    with cmd.make_context(command, argv) as ctx:
        return ctx.params


def test_plan_options_convert_to_their_types() -> None:
    got = _params("plan", [
        "-f", "m.yaml", "-t", "gpu", "-o", "plan.json", "--json", "--budget-usd", "2.5",
        "--deadline-hours", "1", "--tasks", "3", "--replace", "a", "--replace", "b",
        "--only", "c", "--detailed-exitcode",
    ])
    assert got["file"] == "m.yaml" and got["target"] == "gpu"
    assert got["out"] == Path("plan.json") and isinstance(got["out"], Path)
    assert got["budget_usd"] == 2.5 and got["deadline_hours"] == 1.0
    assert isinstance(got["deadline_hours"], float)
    assert got["tasks"] == 3 and got["replace"] == ("a", "b") and got["only"] == ("c",)
    assert got["json_"] is True and got["detailed_exitcode"] is True
    assert got["destroy"] is False and got["refresh_only"] is False


def test_unset_options_take_their_defaults() -> None:
    got = _params("apply", [])
    assert got["planfile"] is None and got["file"] is None and got["budget_usd"] is None
    assert got["replace"] == () and got["only"] == () and got["auto_approve"] is False
    assert got["lock_timeout"] == "0s"
    assert _params("report", [])["limit"] == 20
    assert _params("init", [])["provider"] == "local"
    dash = _params("dashboard", [])
    assert (dash["interval"], dash["size"], dash["run"]) == ("1s", "80x24", None)
    state = load_command("state")
    assert isinstance(state, click.Group)
    assert list(state.commands) == [
        "list", "show", "rm", "mv", "force-unlock", "pull", "push", "migrate"]


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "--budget-usd", "x"], "Invalid value for '--budget-usd': 'x' is not a valid float."),
    (["plan", "--tasks", "1.5"], "Invalid value for '--tasks': '1.5' is not a valid integer."),
    (["report", "--limit", "many"],
     "Invalid value for '--limit': 'many' is not a valid integer."),
    (["plan", "--replace"], "Option '--replace' requires an argument."),
    (["import", "workers.default[0]"], "Missing argument 'ID'."),
], ids=lambda v: str(v))
def test_bad_values_are_usage_errors_exiting_1(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output


def test_a_bad_lock_timeout_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scalable.yaml").write_text("targets:\n  local: {provider: local}\n")
    result = CliRunner().invoke(app, ["state", "rm", "x", "--lock-timeout", "soon"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: --lock-timeout: ")
    assert "  hint: e.g. --lock-timeout 30s" in result.output


def test_version_and_interrupt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scalable._version import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"scalable {__version__}\n"

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    # click turns Ctrl-C inside a command into its Abort: still exit 130, not 1
    monkeypatch.setattr("scalable.cli.manifest.manifest_model", interrupted)
    assert main(["schema"]) == 130
    assert "Interrupted." in capsys.readouterr().err


def test_shell_completion_is_clicks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/reference/cli.rst: ``eval "$(_SCALABLE_COMPLETE=bash_source scalable)"``."""
    monkeypatch.setenv("_SCALABLE_COMPLETE", "bash_source")
    assert main([]) == 0
    script = capsys.readouterr().out
    assert "_scalable_completion()" in script and "_SCALABLE_COMPLETE=bash_complete" in script
    monkeypatch.setenv("_SCALABLE_COMPLETE", "bash_complete")
    for words, cword, expected in [
        ("scalable pl", "1", "plain,plan"),
        ("scalable state m", "2", "plain,mv\nplain,migrate"),  # as listed
        ("scalable plan --budg", "2", "plain,--budget-usd"),
    ]:
        monkeypatch.setenv("COMP_WORDS", words)
        monkeypatch.setenv("COMP_CWORD", cword)
        assert main([]) == 0
        assert capsys.readouterr().out.strip() == expected, words
