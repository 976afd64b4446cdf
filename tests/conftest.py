"""Shared fixtures: a project folder per test, the CLI as a real subprocess, leak guards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scalable.providers.processes import ProcessRef, start_time, terminate


@dataclass
class Project:
    """A folder holding a scalable.yaml; the CLI runs inside it."""

    root: Path

    def write(self, manifest: str, name: str = "scalable.yaml") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(manifest).lstrip())
        return path

    def run(self, *args: str, check: bool = False, timeout: float = 240,
            env: dict[str, str] | None = None, input: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "CI": "1", "NO_COLOR": "1", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "scalable", *args],
            cwd=self.root, capture_output=True, text=True, timeout=timeout, env=full_env,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"scalable {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def state(self, target: str = "local") -> dict:
        return json.loads((self.root / ".scalable" / target / "state.json").read_text())


def our_processes(root: Path) -> list[ProcessRef]:
    """Live processes started for a project under ``root`` (by the env tag, not by name)."""
    needle = f"SCALABLE_STATE_DIR={root}".encode()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        if needle in env and stat[stat.rindex(")") + 2] != "Z":
            st = start_time(int(entry.name))
            if st is not None:
                out.append(ProcessRef(int(entry.name), st))
    return out


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path)
    yield proj
    # Leak guard: whatever a test left running is stopped, and the test is told.
    leftovers = our_processes(tmp_path)
    for ref in leftovers:
        try:
            os.killpg(ref.pid, 9)
        except (ProcessLookupError, PermissionError):
            terminate(ref, grace=0.5)


# -- Hypothesis: `ci` runs the full counts (.ci/run sets HYPOTHESIS_PROFILE=ci); `dev` (the
# default) a fifth of them, so a local `make test` stays quick. No deadlines: the machine
# is shared and its load varies.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=1000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
