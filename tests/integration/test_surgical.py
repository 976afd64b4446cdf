"""--replace, --only and --refresh-only on the local target: real scalable, real Dask."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import Project, our_processes
from tests.integration.test_local import manifest, names

pytestmark = pytest.mark.slow


def pids(project: Project) -> dict[str, int]:
    return {r["address"]: r["meta"]["pid"] for r in project.state()["resources"]}


def test_replace_only_and_refresh_only(project: Project) -> None:
    project.write(manifest(2))
    project.run("apply", "--auto-approve", check=True)
    before = pids(project)

    # --replace: exactly that worker, -/+ in the plan, a new process after apply.
    plan = project.run("plan", "--replace", "workers.default[1]", check=True).stdout
    assert '-/+ local.process "workers.default[1]"' in plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan
    project.run("apply", "--auto-approve", "--replace", "workers.default[1]", check=True)
    after = pids(project)
    assert after["workers.default[1]"] != before["workers.default[1]"]
    assert after["workers.default[0]"] == before["workers.default[0]"]
    assert after["scheduler"] == before["scheduler"]
    assert names(project) == {"workers.default[0]", "workers.default[1]"}

    # --only: the manifest wants 4; only [2] is created, with Terraform's warnings.
    project.write(manifest(4))
    out = project.run("apply", "--auto-approve", "--only", "workers.default[2]", check=True).stdout
    assert out.startswith("Warning: Resource targeting is in effect")
    assert "Warning: Applied changes may be incomplete" in out
    assert "Resources: 1 added, 0 changed, 0 destroyed." in out
    assert set(pids(project)) == {"scheduler", *(f"workers.default[{i}]" for i in range(3))}
    bad = project.run("plan", "--only", "workers.gpu")
    assert bad.returncode == 1
    assert bad.stderr.startswith("Error: Invalid --only address 'workers.gpu': no resource")
    assert "Traceback" not in bad.stderr

    # --refresh-only: a worker killed outside scalable is forgotten, nothing is created.
    running = set(our_processes(project.root))
    victim = pids(project)["workers.default[0]"]
    os.killpg(victim, signal.SIGKILL)
    time.sleep(0.3)
    refresh = project.run("apply", "--refresh-only", "--auto-approve", check=True).stdout
    assert "This is a refresh-only plan" in refresh
    assert "Resources: 0 added, 0 changed, 0 destroyed." in refresh
    assert "workers.default[0]" not in pids(project)
    assert set(our_processes(project.root)) < running  # nothing started
    again = project.run("plan", "--refresh-only", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes. Your infrastructure still matches" in again.stdout
    assert "Plan: 2 to add" in project.run("plan", check=True).stdout

    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []
