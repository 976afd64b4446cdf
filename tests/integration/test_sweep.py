"""``scalable sweep`` on the local target: a run whose state file is lost is swept clean."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project, our_processes
from tests.integration.test_local import manifest

pytestmark = pytest.mark.slow


def test_a_lost_state_is_swept_clean(project: Project) -> None:
    project.write(manifest(2))
    project.run("apply", "--auto-approve", check=True)
    lineage = project.state()["lineage"]
    ids = {r["id"] for r in project.state()["resources"]}
    assert "No lost resources" in project.run("sweep", check=True).stdout

    # The CI runner's workspace is gone: the state file with it, the processes run on.
    (project.root / ".scalable" / "local" / "state.json").unlink()
    running = our_processes(project.root)
    assert running
    dry = project.run("sweep", check=True).stdout
    assert "3 resource(s) created by scalable that no state holds" in dry
    assert "This was a dry run." in dry
    assert our_processes(project.root) == running  # a dry run deletes nothing
    doc = json.loads(project.run("sweep", "--json", check=True).stdout)
    assert {x["id"] for x in doc["lost"]} == ids
    assert {x["lineage"] for x in doc["lost"]} == {lineage}
    assert all(x["age_seconds"] is not None and x["age_seconds"] >= 0 for x in doc["lost"])
    assert all(x["cost_so_far_usd"] == 0 for x in doc["lost"])  # local capacity is free

    assert (
        json.loads(project.run("sweep", "--json", "--lineage", "nope", check=True).stdout)["lost"]
        == []
    )
    assert (
        json.loads(project.run("sweep", "--json", "--older-than", "5h", check=True).stdout)["lost"]
        == []
    )
    bad = project.run("sweep", "--older-than", "soon")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: --older-than:")
    unapproved = project.run("sweep", "--destroy")
    assert unapproved.returncode == 1 and "approval needed" in unapproved.stderr
    assert our_processes(project.root) == running

    out = project.run("sweep", "--destroy", "--auto-approve", check=True).stdout
    assert "Sweep complete! Resources: 3 destroyed." in out
    assert our_processes(project.root) == []
    assert "No lost resources" in project.run("sweep", check=True).stdout
