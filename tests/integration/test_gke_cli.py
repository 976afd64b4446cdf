"""The real ``scalable`` CLI, as a subprocess, against the fake GKE cluster.

The CLI reaches the fake ClusterManager through ``SCALABLE_GKE_ENDPOINT`` (an emulator:
plaintext gRPC, no credentials) and the fake Kubernetes API the way it reaches a real
GKE control plane: the endpoint and CA certificate ``get_cluster`` returns.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project
from tests.fakes.cluster import eventually, fake_cluster, gke_manifest
from tests.fakes.gke import FakeGke
from tests.fakes.kube import FakeKube

pytestmark = [pytest.mark.gke, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeGke, FakeKube]]:
    with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as fakes:
        yield fakes


def emulator(gke: FakeGke) -> dict[str, str]:
    return {"SCALABLE_GKE_ENDPOINT": gke.address}


def ours(kube: FakeKube, res: str) -> list[dict[str, Any]]:
    return [o for o in kube.objects(res)
            if "scalable.dev/lineage" in (o["metadata"].get("labels") or {})]


def test_plan_apply_connect_drift_and_destroy(project: Project,
                                              cluster: tuple[FakeGke, FakeKube]) -> None:
    gke, kube = cluster
    env = emulator(gke)
    project.write(gke_manifest(gke, workers=2))

    out = project.run("plan", env=env, check=True).stdout
    assert '+ gke.node_pool "node_pool.default"  +$0.13/h' in out
    assert "      + node_count = 1" in out
    assert '+ k8s.deployment "scheduler"' in out
    assert '+ k8s.statefulset "workers.default"' in out
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in out
    assert "$0.00/hour now → $0.13/hour after (+$0.13)" in out
    assert out.count("management fee") == 1

    applied = project.run("apply", "--auto-approve", env=env, check=True)
    assert "workers 2/2 ready" in applied.stdout
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in applied.stdout
    state = project.state("gke")
    assert {r["address"]: r["status"] for r in state["resources"]} == {
        "node_pool.default": "ready", "scheduler": "ready", "workers.default": "ready"}
    address = project.run("output", "scheduler_address", "--raw", env=env,
                          check=True).stdout.strip()
    assert address.startswith("tls://127.") and address.endswith(":8786")

    # A bare distributed.Client connects from `scalable env` (TLS settings included).
    exports = project.run("env", env=env, check=True).stdout
    client_env = dict(os.environ)
    for line in exports.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        client_env[key] = shlex.split(value)[0]
    code = ("from distributed import Client\n"
            "with Client(timeout=30) as c:\n"
            "    print(c.submit(sum, [1, 2, 3]).result(timeout=30),\n"
            "          len(c.scheduler_info()['workers']))\n")
    done = subprocess.run([sys.executable, "-c", code], env=client_env, capture_output=True,
                          text=True, timeout=120, cwd=project.root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6", "2"]

    assert "No changes." in project.run("plan", env=env, check=True).stdout

    # Someone else is upgrading the pool: a scale-up is reported, not fought over.
    pool = next(iter(gke.pools))
    op = gke.foreign_operation(pool, "UPGRADE_NODES")
    project.write(gke_manifest(gke, workers=5))
    plan = project.run("plan", env=env, check=True).stdout
    assert "~ update in-place" in plan and "      ~ node_count = 1 → 2" in plan
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in plan
    partial = project.run("apply", "--auto-approve", env=env)
    assert partial.returncode == 3, partial.stderr
    assert f"node pool {pool} is already being changed by another operation " \
           f"(UPGRADE_NODES {op}" in partial.stderr
    assert "Traceback" not in partial.stderr
    assert "SetNodePoolSize" not in gke.calls
    gke.finish(op)

    # Drift: the pool was emptied by hand.
    gke.resize_outside(pool, 0)
    project.write(gke_manifest(gke, workers=2))
    eventually(lambda: not any(p["spec"].get("nodeName") for p in ours(kube, "pods")),
               what="pods to lose their node")
    plan = project.run("plan", env=env, check=True).stdout
    assert "# node_pool.default (gke.node_pool) was changed: node_count: 1 → 0" in plan
    assert "Unschedulable" in plan
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan

    destroyed = project.run("destroy", "--auto-approve", env=env, check=True)
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in destroyed.stdout
    assert gke.pools == {}
    for res in ("deployments", "statefulsets", "services", "secrets"):
        assert ours(kube, res) == []
    eventually(lambda: kube.live_processes() == 0, what="pods to stop")


def test_kill_9_mid_apply_is_adopted_then_converges(project: Project,
                                                    cluster: tuple[FakeGke, FakeKube]) -> None:
    gke, kube = cluster
    env = emulator(gke)
    project.write(gke_manifest(gke, workers=2))
    cmd = [sys.executable, "-m", "scalable", "apply", "--auto-approve"]
    full_env = {**os.environ, "CI": "1", "NO_COLOR": "1", **env}

    # 1. Killed while GKE creates the node pool.
    gke.op_seconds = 3.0
    proc = subprocess.Popen(cmd, cwd=project.root, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    eventually(lambda: "CreateNodePool" in gke.calls, what="CreateNodePool")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    gke.op_seconds = 0.3
    state = project.state("gke")
    assert [(r["address"], r["status"]) for r in state["resources"]] == [
        ("node_pool.default", "creating")]

    plan = project.run("plan", env=env, check=True).stdout
    assert "# node_pool.default (gke.node_pool) adopted: created by an interrupted apply" \
        in plan
    assert '+ gke.node_pool "node_pool.default"' not in plan
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in plan

    # 2. Killed while the scheduler's pod starts.
    proc = subprocess.Popen(cmd, cwd=project.root, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    eventually(lambda: ours(kube, "deployments"), timeout=120, what="the scheduler Deployment")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert project.state("gke")["outputs"] == {}

    plan = project.run("plan", env=env, check=True).stdout
    assert "# scheduler (k8s.deployment) adopted: created by an interrupted apply" in plan

    applied = project.run("apply", "--auto-approve", env=env, check=True)
    assert "workers 2/2 ready" in applied.stdout
    state = project.state("gke")
    assert state["outputs"]["scheduler_address"].startswith("tls://")
    assert sorted(r["address"] for r in state["resources"]) == [
        "node_pool.default", "scheduler", "workers.default"]
    assert all(r["status"] == "ready" for r in state["resources"])
    assert gke.calls.count("CreateNodePool") == 1
    assert len(ours(kube, "deployments")) == 1 and len(ours(kube, "services")) == 1
    assert "No changes." in project.run("plan", env=env, check=True).stdout

    project.run("destroy", "--auto-approve", env=env, check=True)
    assert gke.pools == {} and ours(kube, "deployments") == []


def test_without_credentials_one_clear_error(project: Project, tmp_path: Path) -> None:
    project.write("""
        targets:
          gke:
            provider: gke
            project: demo-project
            location: us-central1
            cluster: dev
            allowed_cidrs: ["203.0.113.7/32"]
        """)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
           "GOOGLE_APPLICATION_CREDENTIALS": "", "NO_GCE_CHECK": "true",
           "SCALABLE_GKE_ENDPOINT": ""}
    result = project.run("plan", env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Error: no Google Cloud credentials: Application Default Credentials are not set up",
        "  hint: run `gcloud auth application-default login` (or set "
        "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)",
    ]
