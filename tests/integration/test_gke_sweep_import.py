"""`scalable import` and `scalable sweep` on GKE: the real CLI against the fake cluster.

A node pool is imported by its name (checked against ClusterManager); a CI run whose
state is deleted mid-way is swept clean (node pool, scheduler Deployment, workers
StatefulSet), and a second sweep finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.fakes.cluster import eventually, fake_cluster, gke_manifest
from tests.fakes.gke import FakeGke
from tests.fakes.kube import FakeKube
from tests.integration.test_gke_cli import emulator, ours

pytestmark = [pytest.mark.gke, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeGke, FakeKube]]:
    with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as fakes:
        yield fakes


def test_import_a_pool_then_a_lost_state_is_swept_clean(
    project: Project, cluster: tuple[FakeGke, FakeKube],
) -> None:
    gke, kube = cluster
    env = emulator(gke)
    project.write(gke_manifest(gke, workers=2))
    project.run("apply", "--auto-approve", env=env, check=True)
    state = project.state("gke")
    held = {r["address"]: r for r in state["resources"]}
    pool = held["node_pool.default"]

    # import: by the pool's name, checked against the cluster.
    project.run("state", "rm", "node_pool.default", env=env, check=True)
    missing = project.run("import", "node_pool.default", "no-such-pool", env=env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: Cannot import non-existent remote object")
    out = project.run("import", "node_pool.default", pool["meta"]["name"], env=env,
                      check=True).stdout
    assert "Import successful!" in out
    back = {r["address"]: r for r in project.state("gke")["resources"]}["node_pool.default"]
    assert back["id"] == pool["id"] and back["meta"]["name"] == pool["meta"]["name"]
    assert "No changes." in project.run("plan", env=env, check=True).stdout

    # The CI runner's workspace is lost: its state with it.
    assert "No lost resources" in project.run("sweep", env=env, check=True).stdout
    (project.root / ".scalable" / "gke" / "state.json").unlink()
    doc = json.loads(project.run("sweep", "--json", env=env, check=True).stdout)
    found = {x["address"]: x for x in doc["lost"]}
    assert set(found) == set(held)  # node pool, scheduler, workers
    assert {x["id"] for x in doc["lost"]} == {r["id"] for r in held.values()}
    assert {x["lineage"] for x in doc["lost"]} == {state["lineage"]}
    for x in doc["lost"]:
        assert x["age_seconds"] is not None and x["age_seconds"] >= 0, x
    assert found["node_pool.default"]["hourly_usd"] > 0  # e2-standard-4 from the catalog
    assert found["node_pool.default"]["cost_so_far_usd"] is not None
    dry = project.run("sweep", env=env, check=True).stdout
    assert "3 resource(s) created by scalable that no state holds" in dry
    assert gke.pools  # a dry run deletes nothing

    swept = project.run("sweep", "--destroy", "--auto-approve", env=env, check=True).stdout
    assert "Sweep complete! Resources: 3 destroyed." in swept
    assert gke.pools == {}
    for res in ("deployments", "statefulsets", "services", "secrets"):
        assert ours(kube, res) == []
    eventually(lambda: kube.live_processes() == 0, what="pods to stop")
    assert "No lost resources" in project.run("sweep", env=env, check=True).stdout
