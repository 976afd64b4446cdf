"""The CLI's start-up stays light (issue 15): `--help` and `plan` on a local target load
none of the heavy libraries; each command's listed help matches its docstring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "distributed",
    "dask",
    "bokeh",
    "tornado",
    "boto3",
    "botocore",
    "google",
    "grpc",
    "textual",
    "rich",
    "kubernetes",
    "dask_jobqueue",
    "numpy",
    "pandas",
)

PROBE = """
import json, sys
from scalable.cli import main
rcs = [main(["--help"]), main(["plan"])]
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"rcs": rcs, "heavy": heavy}))
"""


def test_help_and_plan_load_no_heavy_module(tmp_path: Path) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "targets:\n  local: {provider: local, max_workers: 2}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "CI": "1", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rcs"] == [0, 0], proc.stdout
    assert "Plan: 3 to add" in proc.stdout  # plan really ran
    assert result["heavy"] == [], f"heavy modules loaded by --help/plan: {result['heavy']}"


def test_listed_help_matches_each_commands_docstring() -> None:
    from scalable.cli import COMMANDS, load_command

    for name, (_, _, listed) in COMMANDS.items():
        cmd = load_command(name)
        first = (cmd.help or "").strip().splitlines()[0]
        assert first == listed, f"{name}: COMMANDS says {listed!r}, the command {first!r}"
