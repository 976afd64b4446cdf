"""``state mv`` and ``import`` on the local target: real scalable, real Dask processes."""

from __future__ import annotations

import pytest

from tests.conftest import Project, our_processes
from tests.integration.test_local import manifest

pytestmark = pytest.mark.slow


def grouped(group: str) -> str:
    return (
        "project: {name: mv}\ntargets:\n  local:\n    provider: local\n"
        f"    groups:\n      {group}: {{max_workers: 2, threads_per_worker: 1}}\n"
    )


def ids(project: Project, target: str = "local") -> dict[str, str]:
    return {r["address"]: r["id"] for r in project.state(target)["resources"]}


def test_state_mv_follows_a_renamed_group(project: Project) -> None:
    project.write(grouped("old"))
    project.run("apply", "--auto-approve", check=True)
    before = ids(project)
    project.write(grouped("new"))
    assert "Plan: 2 to add, 0 to change, 2 to destroy." in project.run("plan", check=True).stdout
    out = project.run("state", "mv", "workers.old", "workers.new", check=True).stdout
    assert 'Move "workers.old[0]" to "workers.new[0]"' in out
    assert "Successfully moved 2 object(s)." in out
    assert ids(project)["workers.new[1]"] == before["workers.old[1]"]
    plan = project.run("plan", "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout
    taken = project.run("state", "mv", "workers.new[0]", "workers.new[1]")
    assert taken.returncode == 1
    assert "there is already a resource at that address" in taken.stderr
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_import_adopts_checks_and_refuses_another_lineage(project: Project) -> None:
    project.write(manifest(2))
    project.run("apply", "--auto-approve", check=True)
    wid = ids(project)["workers.default[1]"]
    project.run("state", "rm", "workers.default[1]", check=True)
    # Forgotten but running: a plan would start another one in its place.
    assert "Plan: 1 to add," in project.run("plan").stdout

    missing = project.run("import", "workers.default[1]", "pid:1@1")
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: Cannot import non-existent remote object")
    out = project.run("import", "workers.default[1]", wid, check=True).stdout
    assert "Import successful!" in out
    assert ids(project)["workers.default[1]"] == wid
    assert project.run("plan", "--detailed-exitcode").returncode == 0
    again = project.run("import", "workers.default[1]", wid)
    assert "Resource already managed by scalable" in again.stderr

    # A second target (another state, another lineage) with one worker of its own.
    project.write(
        manifest(2) + "  other:\n    provider: local\n    max_workers: 1\n"
        "    threads_per_worker: 1\n"
    )
    project.run("apply", "-t", "other", "--auto-approve", check=True)
    foreign = ids(project, "other")["workers.default[0]"]
    own = ids(project)["workers.default[0]"]
    project.run("state", "rm", "workers.default[0]", check=True)
    refused = project.run("import", "workers.default[0]", foreign)
    assert refused.returncode == 1 and "belongs to another state (lineage" in refused.stderr
    assert "workers.default[0]" not in ids(project)
    forced = project.run("import", "--force", "workers.default[0]", foreign, check=True)
    assert "taken from another state" in forced.stdout
    project.run("state", "rm", "-t", "other", "workers.default[0]", check=True)
    project.run("destroy", "-t", "other", "--auto-approve", check=True)
    project.run("destroy", "--auto-approve", check=True)
    # The worker forgotten above still runs; importing it back lets destroy take it.
    project.run("import", "workers.default[0]", own, check=True)
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []
