"""Usage errors: click's own message and exit 1, never "this is a bug", never exit 2.

Exit 2 means "changes present" under ``plan --detailed-exitcode``: a typo in a pipeline
must not read as a plan with changes (issue 11, item 10).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from scalable.cli import app, main

ROOT = Path(__file__).resolve().parents[2]
USAGE_ERRORS = [
    (["plan", "--bogus"], "No such option '--bogus'"),
    (["nosuchcmd"], "No such command 'nosuchcmd'"),
    (["state"], "scalable state [OPTIONS] COMMAND"),
    (["state", "nosuch"], "No such command 'nosuch'"),
    (["plan", "--lock-timeout", "5m"], "No such option '--lock-timeout'"),
    (["apply", "a", "b"], "Got unexpected extra argument"),
    (["output", "--json", "--raw", "x", "y"], "unexpected extra argument"),
    ([], "Usage: scalable"),
]


def _check(rc: int, out: str) -> None:
    assert rc == 1, out
    assert "this is a bug" not in out
    assert "Traceback" not in out


@pytest.mark.parametrize(("argv", "needle"), USAGE_ERRORS, ids=lambda v: str(v))
def test_usage_error_in_process(
    argv: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, argv)
    _check(result.exit_code, result.output)
    assert needle in result.output


@pytest.mark.parametrize(("argv", "needle"), USAGE_ERRORS[:4], ids=lambda v: str(v))
def test_usage_error_real_process(argv: list[str], needle: str, tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1", "CI": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "scalable", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    _check(proc.returncode, proc.stdout + proc.stderr)
    assert needle in proc.stdout + proc.stderr
    if argv != ["state"]:  # bare group: its help; otherwise one Error: line
        assert len(re.findall(r"^Error: ", proc.stderr, re.M)) == 1, proc.stderr


def test_usage_error_is_not_a_detailed_exitcode_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--detailed-exitcode", "--bogus"]) == 1


def _doc_command_lines() -> list[str]:
    """``scalable …`` lines in the docs' code blocks (and README's fenced blocks)."""
    out = []
    for path in [*sorted((ROOT / "docs").rglob("*.rst")), ROOT / "README.md"]:
        for line in path.read_text().splitlines():
            m = re.match(r"^\s+(?:\$ |- run: |run: )?(scalable [a-z].*)$", line) or (
                re.match(r"^(?:\$ )?(scalable [a-z][^`]*)$", line) if path.suffix == ".md" else None
            )
            if m and "[" not in m.group(1) and "`" not in m.group(1):
                out.append(m.group(1).split(" #")[0].strip())
    return sorted(set(out))


@pytest.mark.parametrize("line", _doc_command_lines())
def test_documented_command_lines_parse(
    line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command line the docs show exists: its options parse (``--help`` last, so
    nothing runs; an unknown option is a usage error before help is shown)."""
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line)[1:]
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, f"{line!r}: {result.output}"
