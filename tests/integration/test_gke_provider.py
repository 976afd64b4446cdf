"""The GKE provider and the engine, in process, against the fake cluster.

The ClusterManager side is the real client on a gRPC channel to the fake; the Kubernetes
side is the official client from a kubeconfig naming the fake API server. Dask runs for
real in the pods the fake kubelet starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from scalable.engine import ApplyResult, Engine
from scalable.hooks import LineHook
from scalable.manifest.loader import load_manifest
from scalable.planning.model import Plan
from scalable.planning.render import render_plan
from scalable.providers.base import CreateContext, ProviderError
from scalable.providers.gke import GkeProvider, manifests
from scalable.spec import build_target
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.store import LocalStore

from tests.fakes.cluster import eventually, fake_cluster, gke_manifest
from tests.fakes.gke import FakeGke
from tests.fakes.kube import FakeKube

pytestmark = pytest.mark.gke


@dataclass
class Cloud:
    gke: FakeGke
    kube: FakeKube
    root: Path
    kubeconfig: Path

    def open(self, text: str, ready_timeout: float = 90.0
             ) -> tuple[GkeProvider, Engine, list[str]]:
        (self.root / "scalable.yaml").write_text(text)
        spec = build_target(load_manifest(self.root / "scalable.yaml"), "gke")
        provider = GkeProvider(spec, spec.workdir, retry=None, kubeconfig=self.kubeconfig,
                               channel=grpc.insecure_channel(self.gke.address))
        notes: list[str] = []
        engine = Engine(provider, LocalStore(spec.workdir), hooks=LineHook(notes.append),
                        ready_timeout=ready_timeout)
        return provider, engine, notes

    def ours(self, res: str) -> list[dict[str, Any]]:
        return [o for o in self.kube.objects(res)
                if manifests.LABEL_LINEAGE in (o["metadata"].get("labels") or {})]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    project = tmp_path / "project"
    project.mkdir()
    with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as (gke, kube):
        yield Cloud(gke, kube, project, kube.write_kubeconfig(tmp_path / "kubeconfig"))


def apply(engine: Engine, plan: Plan | None = None, wait: bool = True) -> ApplyResult:
    with engine.locked("apply"):
        return engine.execute(plan or engine.plan(), wait=wait)


def by_address(plan: Plan) -> dict[str, Any]:
    return {c.address: c for c in plan.changes}


@pytest.mark.slow
def test_apply_runs_dask_on_the_pool_scales_in_place_and_destroys(cloud: Cloud) -> None:
    from distributed import Client

    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, workers=2))
    provider.validate()
    plan = engine.plan()
    changes = by_address(plan)
    assert plan.counts == {"add": 3, "change": 0, "destroy": 0}
    pool = changes["node_pool.default"]
    assert pool.after["node_count"] == 1 and pool.after["machine_type"] == "e2-standard-4"
    assert pool.hourly_after == pytest.approx(0.13402)  # e2-standard-4, us-central1
    assert changes["scheduler"].hourly_after == 0.0  # runs on the pool: not counted twice
    assert any("management fee" in n for n in plan.cost.notes)

    result = apply(engine, plan)
    assert result.errors == [] and result.ready_workers == 2
    out = result.outputs
    assert out["scheduler_address"].startswith("tls://127.")

    sts = provider.workers_name("default")
    with Client(out["scheduler_address"], security=provider.client_security(out),
                timeout=30, set_as_default=False) as client:
        assert client.submit(lambda xs: sum(xs), list(range(10))).result(timeout=30) == 45
        names = {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {f"{sts}-0", f"{sts}-1"}

    # Pinned to the pool, labelled with lineage, target and address.
    pool_name = provider.pool_name("default")
    lineage = engine.read_state().lineage  # type: ignore[union-attr]
    pods = cloud.ours("pods")
    assert len(pods) == 3
    node_names = {n.name for n in cloud.gke.nodes() if n.pool == pool_name}
    for pod in pods:
        assert pod["spec"]["nodeSelector"] == {manifests.POOL_LABEL: pool_name}
        assert {"key": manifests.POOL_TAINT, "operator": "Equal", "value": pool_name,
                "effect": "NoSchedule"} in pod["spec"]["tolerations"]
        assert pod["spec"]["nodeName"] in node_names
        labels = pod["metadata"]["labels"]
        assert labels[manifests.LABEL_LINEAGE] == lineage
        assert labels[manifests.LABEL_TARGET] == "gke"
        assert labels[manifests.LABEL_ADDRESS] in ("scheduler", "workers.default")
    for res in ("deployments", "statefulsets", "services", "secrets"):
        for obj in cloud.ours(res):
            assert obj["metadata"]["annotations"][manifests.ANN_KEY].startswith(lineage[:8])
    svc = cloud.ours("services")[0]
    assert svc["spec"]["loadBalancerSourceRanges"] == ["127.0.0.1/32"]
    # Leak guards: the scheduler exits when idle (idle_timeout, default 1h), workers
    # when their scheduler is gone.
    dep = cloud.ours("deployments")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert dep[dep.index("--idle-timeout") + 1] == "3600s"
    sts_args = cloud.ours("statefulsets")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--death-timeout" in sts_args["args"]
    # The preemption preload as its text (the image has no scalable), `$` escaped for
    # Kubernetes' $(VAR) expansion; the pod knows its platform and grace.
    from scalable import preemption

    shipped = sts_args["args"][sts_args["args"].index("--preload-nanny") + 1]
    assert shipped.replace("$$", "$") == preemption.source()
    pod_env = {e["name"]: e.get("value") for e in sts_args["env"]}
    assert pod_env["SCALABLE_PLATFORM"] == "gke"
    gpool = cloud.gke.pools[pool_name]
    assert gpool.config.resource_labels["scalable-lineage"] == lineage
    assert gpool.config.metadata["scalable-address"] == "node_pool.default"
    assert [(t.key, t.value) for t in gpool.config.taints] == [(manifests.POOL_TAINT,
                                                               pool_name)]
    # No secret in state: only paths.
    state_text = (cloud.root / ".scalable" / "gke" / "state.json").read_text()
    assert "PRIVATE KEY" not in state_text

    # Five workers: both the pool and the StatefulSet change in place.
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, workers=5))
    plan = engine.plan()
    changes = by_address(plan)
    assert changes["node_pool.default"].action == "update"
    assert [str(r) for r in changes["node_pool.default"].reasons] == ["node_count: 1 → 2"]
    assert changes["workers.default"].action == "update"
    assert [str(r) for r in changes["workers.default"].reasons] == ["replicas: 2 → 5"]
    assert changes["scheduler"].action == "no-op"
    assert "~ update in-place" in render_plan(plan)
    assert "      ~ node_count = 1 → 2" in render_plan(plan)
    result = apply(engine, plan)
    assert result.errors == [] and result.ready_workers == 5 and result.changed == 2
    assert len([n for n in cloud.gke.nodes() if n.pool == pool_name]) == 2
    assert cloud.gke.calls.count("CreateNodePool") == 1
    assert cloud.gke.calls.count("SetNodePoolSize") == 1

    # Back to one: the removed workers are retired, then the pool shrinks.
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, workers=1))
    result = apply(engine)
    assert result.errors == [] and result.ready_workers == 1
    eventually(lambda: len(cloud.ours("pods")) == 2, what="removed worker pods to go")
    assert engine.plan().has_changes is False

    plan = engine.plan(destroy=True)
    assert plan.counts == {"add": 0, "change": 0, "destroy": 3}
    result = apply(engine, plan, wait=False)
    assert result.errors == [] and result.destroyed == 3
    assert cloud.gke.pools == {}
    for res in ("deployments", "statefulsets", "services", "secrets"):
        assert cloud.ours(res) == []
    eventually(lambda: cloud.kube.live_processes() == 0, what="pods to stop")
    assert engine.read_state().resources == []  # type: ignore[union-attr]


@pytest.mark.slow
def test_refresh_shows_pool_size_drift_and_kubernetes_reasons(cloud: Cloud) -> None:
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, workers=2))
    assert apply(engine).ready_workers == 2
    pool_name = provider.pool_name("default")

    cloud.gke.resize_outside(pool_name, 0)  # someone ran `gcloud container clusters resize`
    eventually(lambda: all(manifests.pod_problem(p) and manifests.pod_problem(p)[0]  # type: ignore[index]
                           == "Unschedulable" for p in cloud.ours("pods"))
               and len(cloud.ours("pods")) == 3, what="pods to be Unschedulable")
    plan = engine.plan()
    drift = {(d.address, d.kind): d.reason for d in plan.drift}
    assert drift[("node_pool.default", "changed")] == "node_count: 1 → 0"
    assert "Unschedulable: no nodes available to schedule pods" in \
        drift[("workers.default", "pending")]
    assert "0/2 pod(s) ready" in drift[("workers.default", "pending")]
    assert ("scheduler", "pending") in drift
    change = by_address(plan)["node_pool.default"]
    assert change.action == "update" and [str(r) for r in change.reasons] == ["node_count: 0 → 1"]
    assert plan.cost.hourly_now == 0.0  # the pool has no nodes now
    text = render_plan(plan)
    assert "# node_pool.default (gke.node_pool) was changed: node_count: 1 → 0" in text

    result = apply(engine, plan)
    assert result.errors == [] and result.ready_workers == 2

    # kubectl scale statefulset …: replicas drift, planned back.
    sts = provider.workers_name("default")
    cloud.kube.handle("PATCH", f"/apis/apps/v1/namespaces/default/statefulsets/{sts}",
                      json.dumps({"spec": {"replicas": 1}}).encode(),
                      "application/merge-patch+json")
    plan = engine.plan()
    assert ("workers.default", "changed") in {(d.address, d.kind) for d in plan.drift}
    assert [str(r) for r in by_address(plan)["workers.default"].reasons] == ["replicas: 1 → 2"]
    assert apply(engine, plan).ready_workers == 2

    # Narrower client networks: the Service changes in place, and the load balancer
    # turns this machine away.
    from distributed import Client

    address = engine.read_state().outputs["scheduler_address"]  # type: ignore[union-attr]
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke).replace(
        '["127.0.0.1/32"]', '["198.51.100.0/24"]'))
    plan = engine.plan()
    assert by_address(plan)["scheduler"].action == "update"
    assert apply(engine, plan, wait=False).errors == []
    assert cloud.ours("services")[0]["spec"]["loadBalancerSourceRanges"] == \
        ["198.51.100.0/24"]
    outputs = engine.read_state().outputs  # type: ignore[union-attr]
    assert outputs["scheduler_address"] == address
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=provider.client_security(outputs), timeout=3,
               set_as_default=False)
    assert any(f.refused for f in cloud.kube.forwarders.values())
    apply(engine, engine.plan(destroy=True), wait=False)


@pytest.mark.slow
def test_oomkilled_workers_show_kubernetes_reason(cloud: Cloud) -> None:
    provider, engine, _ = cloud.open(
        gke_manifest(cloud.gke, "memory_per_worker: 48MiB\n", workers=1), ready_timeout=6)
    result = apply(engine)
    assert result.ready_workers == 0
    assert any("did not register" in e for e in result.errors)

    def oom() -> str:
        drift = {d.address: d.reason for d in engine.plan().drift if d.kind == "pending"}
        return drift.get("workers.default", "") if "OOMKilled" in drift.get(
            "workers.default", "") else ""

    reason = eventually(oom, timeout=60, what="OOMKilled in the refresh")
    assert "exceeding its memory limit" in reason
    apply(engine, engine.plan(destroy=True), wait=False)
    assert cloud.gke.pools == {}


def test_an_image_that_cannot_be_pulled_fails_the_scheduler_and_leaves_nothing(
        cloud: Cloud) -> None:
    text = gke_manifest(cloud.gke).replace("ghcr.io/dask/dask:2026.8.0",
                                           "ghcr.io/example/missing:1")
    provider, engine, _ = cloud.open(text)
    result = apply(engine)
    errors = " ".join(result.errors)
    assert "scheduler: create failed: the scheduler pod cannot start: " in errors
    assert "ErrImagePull" in errors or "ImagePullBackOff" in errors
    assert 'ghcr.io/example/missing:1' in errors
    assert "no scheduler: 1 resource(s) were not created (workers.default)" in errors
    state = engine.read_state()
    assert [r.address for r in state.resources] == ["node_pool.default"]  # type: ignore[union-attr]
    for res in ("deployments", "services", "secrets", "statefulsets"):
        assert cloud.ours(res) == []
    apply(engine, engine.plan(destroy=True), wait=False)
    assert cloud.gke.pools == {}


def test_discover_finds_what_the_state_lacks(cloud: Cloud) -> None:
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, workers=0))
    state = StateFile(target="gke", provider="gke")
    engine.store.write(state)
    specs = {s.address: s for s in provider.desired()}
    ctx = CreateContext(lineage=state.lineage, idempotency_key=f"{state.lineage[:8]}-x",
                        target="gke", project="demo",
                        outputs={"scheduler_cluster_address": "tls://10.0.0.1:8786"})
    provider.create(specs["node_pool.default"], ctx)
    provider.create(specs["workers.default"], ctx)  # zero replicas: no scheduler needed

    found = {d.address: d for d in provider.discover(state.lineage)}
    assert set(found) == {"node_pool.default", "workers.default"}
    assert found["node_pool.default"].idempotency_key == ctx.idempotency_key

    plan = engine.plan()
    orphans = [d.address for d in plan.drift if d.kind == "orphan"]
    assert sorted(orphans) == ["node_pool.default", "workers.default"]
    deletes = [c for c in plan.changes if c.action == "delete"]
    assert sorted(c.address for c in deletes) == ["node_pool.default", "workers.default"]
    assert provider.discover("another-lineage") == []

    with engine.locked("apply"):
        engine.execute(engine.plan(destroy=True), wait=False)
    assert cloud.gke.pools == {} and cloud.ours("statefulsets") == []


def test_validate_says_what_is_missing(cloud: Cloud) -> None:
    text = gke_manifest(cloud.gke).replace('    allowed_cidrs: ["127.0.0.1/32"]\n', "")
    provider, _, _ = cloud.open(text)
    with pytest.raises(ProviderError, match="needs allowed_cidrs") as err:
        provider.validate()
    assert err.value.hint and "203.0.113.7/32" in err.value.hint

    provider, _, _ = cloud.open(gke_manifest(cloud.gke, "namespace: dask\n"))
    with pytest.raises(ProviderError, match="namespace 'dask' does not exist") as err:
        provider.validate()
    assert err.value.hint == "kubectl create namespace dask"

    provider, _, _ = cloud.open(gke_manifest(cloud.gke).replace("e2-standard-4",
                                                                "x9-mega-4"))
    with pytest.raises(ProviderError, match="machine type 'x9-mega-4' is unknown"):
        provider.validate()

    provider, _, _ = cloud.open(gke_manifest(cloud.gke, "threads_per_worker: 8\n"))
    with pytest.raises(ProviderError, match="does not fit on e2-standard-4"):
        provider.validate()

    text = gke_manifest(cloud.gke).replace("cluster: dev", "cluster: elsewhere")
    provider, _, _ = cloud.open(text)
    with pytest.raises(ProviderError, match="GKE cluster 'elsewhere' not found"):
        provider.validate()


def test_the_scheduler_avoids_spot_pools(cloud: Cloud) -> None:
    provider, engine, _ = cloud.open(gke_manifest(cloud.gke, """\
        spot: true
        groups:
          steady:
            machine_type: e2-standard-2
            spot: false
            max_workers: 0
        """))
    specs = {s.address: s for s in provider.desired()}
    assert specs["scheduler"].attributes["pool"] == provider.pool_name("steady")
    assert specs["scheduler"].depends_on == ("node_pool.steady",)
    assert specs["node_pool.steady"].attributes["node_count"] == 1  # the scheduler alone
    assert specs["node_pool.default"].attributes["spot"] is True
    spot_pool = engine.plan().changes
    prices = {c.address: c.hourly_after for c in spot_pool}
    assert prices["node_pool.default"] == pytest.approx(0.05358)  # spot e2-standard-4
    assert prices["node_pool.steady"] == pytest.approx(0.06701)


def test_pools_of_another_cluster_are_not_silently_forgotten(cloud: Cloud) -> None:
    text = gke_manifest(cloud.gke).replace("cluster: dev", "cluster: elsewhere")
    provider, _, _ = cloud.open(text)
    record = ResourceRecord("node_pool.default", "gke.node_pool", "ready", "k",
                            id="projects/p/locations/us-central1-a/clusters/dev/nodePools/x",
                            meta={"name": "x", "cluster": "dev",
                                  "location": "us-central1-a"})
    with pytest.raises(ProviderError, match="is a node pool of cluster dev") as err:
        provider.delete(record)
    assert err.value.hint and "destroy with the old cluster/location first" in err.value.hint
    with pytest.raises(ProviderError, match="manifest now names cluster elsewhere"):
        provider.observe([record])
    assert "DeleteNodePool" not in cloud.gke.calls


def test_session_runs_the_same_preflight_as_the_cli(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """ScalableSession plans through the engine's preflight: a GKE target without
    ``allowed_cidrs`` is refused before anything is created (it would otherwise get a
    load balancer with ``loadBalancerSourceRanges: []``, open to the world)."""
    from scalable.session import ScalableSession
    from scalable.workspace import Workspace

    text = gke_manifest(cloud.gke, workers=1).replace(
        '    allowed_cidrs: ["127.0.0.1/32"]\n', "")
    assert "allowed_cidrs" not in text
    (cloud.root / "scalable.yaml").write_text(text)
    monkeypatch.setenv("SCALABLE_GKE_ENDPOINT", cloud.gke.address)
    monkeypatch.setenv("SCALABLE_GKE_KUBECONFIG", str(cloud.kubeconfig))
    ws = Workspace.open(cloud.root / "scalable.yaml", "gke")
    calls: list[str] = []
    real = ws.provider.validate
    monkeypatch.setattr(ws.provider, "validate", lambda: (calls.append("validate"), real()))
    session = ScalableSession(ws)
    with pytest.raises(ProviderError, match="needs allowed_cidrs"):
        session.plan()
    with pytest.raises(ProviderError, match="needs allowed_cidrs"):
        session.start()
    assert calls == ["validate", "validate"]  # one code path, not a copy of the checks
    assert cloud.gke.pools == {} and cloud.ours("services") == []
    assert "CreateNodePool" not in cloud.gke.calls
