"""GKE capacity failover: the real CLI and the real ClusterManager client over gRPC to
the fake, whose ``stockout`` switch makes a pool's create operation end in GCE's capacity
error (GCE_STOCKOUT / ZONE_RESOURCE_POOL_EXHAUSTED, as GKE reports it): the next of the
group's ``machine_types`` is tried, and when every one is refused the apply exits 3 naming
each refusal, what was created kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.fakes.cluster import fake_cluster, gke_manifest
from tests.fakes.gke import FakeGke
from tests.fakes.kube import FakeKube

pytestmark = [pytest.mark.gke, pytest.mark.slow]

GROUPS = """
groups:
  main:
    max_workers: 1
  burst:
    max_workers: 2
    machine_types: [e2-standard-8, n2-standard-8, n2-standard-4]
"""
TYPES = ("e2-standard-8", "n2-standard-8", "n2-standard-4")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeGke, FakeKube]]:
    with fake_cluster(tmp_path / "cluster", op_seconds=0.2) as fakes:
        yield fakes


def burst_pool(gke: FakeGke) -> str | None:
    return next((p for p in gke.pools if p.endswith("-burst")), None)


def test_gke_failover_to_the_second_machine_type(project: Project,
                                                 cluster: tuple[FakeGke, FakeKube]) -> None:
    gke, _ = cluster
    env = {"SCALABLE_GKE_ENDPOINT": gke.address}
    project.write(gke_manifest(gke, GROUPS))
    plan = project.run("plan", env=env, check=True).stdout
    assert 'machine_type = "e2-standard-8"' in plan  # the first choice is what is planned
    assert "with fallback choices:" in plan
    assert "e2-standard-8 $" in plan and "→ n2-standard-8 $" in plan

    gke.stockout[("e2-standard-8", gke.location)] = "GCE_STOCKOUT"
    out = project.run("apply", "--auto-approve", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    pool = burst_pool(gke)
    assert pool is not None and gke.pools[pool].config.machine_type == "n2-standard-8"
    rec = next(r for r in project.state("gke")["resources"]
               if r["address"] == "node_pool.burst")
    assert rec["meta"]["machine_type"] == "n2-standard-8"  # what was obtained
    assert rec["meta"]["failover"] == ["e2-standard-8: GCE_STOCKOUT"]  # and why
    # The pool has the obtained type's size: that is no drift.
    assert "No changes." in project.run("plan", env=env, check=True).stdout

    project.run("destroy", "--auto-approve", env=env, check=True)
    assert gke.pools == {}


def test_gke_failover_exhausted_is_one_clear_error_and_keeps_what_was_made(
        project: Project, cluster: tuple[FakeGke, FakeKube]) -> None:
    gke, _ = cluster
    env = {"SCALABLE_GKE_ENDPOINT": gke.address}
    project.write(gke_manifest(gke, GROUPS))
    codes = ["GCE_STOCKOUT", "ZONE_RESOURCE_POOL_EXHAUSTED", "GCE_STOCKOUT"]
    for t, code in zip(TYPES, codes, strict=True):
        gke.stockout[(t, gke.location)] = code
    out = project.run("apply", "--auto-approve", env=env)
    assert out.returncode == 3, out.stdout + out.stderr  # partial: what was created is kept
    assert "Traceback" not in out.stderr
    assert ("no capacity for node_pool.burst in any of its machine_types (e2-standard-8: "
            "GCE_STOCKOUT; n2-standard-8: ZONE_RESOURCE_POOL_EXHAUSTED; n2-standard-4: "
            "GCE_STOCKOUT)") in out.stdout + out.stderr
    addresses = {r["address"] for r in project.state("gke")["resources"]}
    assert {"scheduler", "node_pool.main"} <= addresses
    assert "node_pool.burst" not in addresses
    assert burst_pool(gke) is None  # GKE's refused pool (ERROR) was not left behind

    project.run("destroy", "--auto-approve", env=env, check=True)
    assert gke.pools == {}


def test_gke_machine_types_are_validated_at_plan(project: Project,
                                                 cluster: tuple[FakeGke, FakeKube]) -> None:
    gke, _ = cluster
    env = {"SCALABLE_GKE_ENDPOINT": gke.address}
    project.write(gke_manifest(gke, GROUPS.replace("[e2-standard-8, n2-standard-8, "
                                                   "n2-standard-4]", "[]")))
    out = project.run("plan", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "machine_types" in out.stderr and "scalable.yaml:" in out.stderr
    # Every alternative must be a known type the pods fit on.
    project.write(gke_manifest(gke, GROUPS.replace("n2-standard-4]", "zz-tiny-1]")))
    out = project.run("plan", env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "group burst: machine type 'zz-tiny-1' is unknown here" in out.stderr


def test_gke_failover_across_zones(project: Project, tmp_path: Path) -> None:
    a, b = "us-central1-a", "us-central1-b"
    with fake_cluster(tmp_path / "regional", op_seconds=0.2, location="us-central1",
                      zones=[a, b]) as (gke, _kube):
        env = {"SCALABLE_GKE_ENDPOINT": gke.address}
        project.write(gke_manifest(gke, GROUPS + f"zones: [{a}, {b}]\n"))
        # The preferred type in every zone before the next type.
        gke.stockout[("e2-standard-8", a)] = "ZONE_RESOURCE_POOL_EXHAUSTED"
        out = project.run("apply", "--auto-approve", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        pool = burst_pool(gke)
        assert pool is not None
        assert (gke.pools[pool].config.machine_type, list(gke.pools[pool].locations)) == (
            "e2-standard-8", [b])
        rec = next(r for r in project.state("gke")["resources"]
                   if r["address"] == "node_pool.burst")
        assert rec["meta"]["zone"] == b
        assert rec["meta"]["failover"] == [f"e2-standard-8 in {a}: ZONE_RESOURCE_POOL_EXHAUSTED"]
        assert "No changes." in project.run("plan", env=env, check=True).stdout

        project.write(gke_manifest(gke, GROUPS + "zones: [us-central1-f]\n"))
        bad = project.run("plan", env=env)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr
        assert "zones us-central1-f are not zones of cluster dev" in bad.stderr
        project.write(gke_manifest(gke, GROUPS + f"zones: [{a}, {b}]\n"))
        project.run("destroy", "--auto-approve", env=env, check=True)
        assert gke.pools == {}
