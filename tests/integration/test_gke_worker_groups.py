"""Per-group containers on GKE, against the fake cluster (real client over gRPC, real
Kubernetes client): each group's StatefulSet runs its own image with its env, and its
binds become hostPath volumes mounted at the container paths."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from scalable.engine import Engine
from scalable.hooks import LineHook
from scalable.manifest.loader import load_manifest
from scalable.providers.base import ProviderError
from scalable.providers.gke import GkeProvider, manifests
from scalable.spec import build_target
from scalable.state.store import LocalStore

from tests.fakes.cluster import fake_cluster, gke_manifest

pytestmark = pytest.mark.gke

GROUPS = """
groups:
  post:
    max_workers: 1
  energy:
    max_workers: 1
    tags: [model]
    container:
      runtime: docker
      image: ghcr.io/org/energy:1
      binds: {/mnt/disks/inputs: /data/in, /mnt/disks/outputs: /data/out}
      env: {MODEL_NAME: "energy 'v7'"}
"""


def open_target(root: Path, text: str, gke, kubeconfig: Path) -> tuple[GkeProvider, Engine]:
    (root / "scalable.yaml").write_text(text)
    spec = build_target(load_manifest(root / "scalable.yaml"), "gke")
    provider = GkeProvider(spec, spec.workdir, retry=None, kubeconfig=kubeconfig,
                           channel=grpc.insecure_channel(gke.address))
    return provider, Engine(provider, LocalStore(spec.workdir), hooks=LineHook(lambda s: None))


def test_each_group_pod_spec_has_its_image_env_and_hostpath_binds(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as (gke, kube):
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        provider, engine = open_target(root, gke_manifest(gke, GROUPS).replace(
            "    max_workers: 2\n", ""), gke, kubeconfig)
        plan = engine.plan()
        groups = {g["name"]: g for g in plan.groups}
        assert groups["energy"]["container"]["image"] == "ghcr.io/org/energy:1"
        with engine.locked("apply"):
            result = engine.execute(plan, wait=False)
        assert result.errors == []
        try:
            sets = {s["metadata"]["labels"][manifests.LABEL_ADDRESS]: s
                    for s in kube.objects("statefulsets")
                    if manifests.LABEL_LINEAGE in (s["metadata"].get("labels") or {})}
            energy = sets["workers.energy"]["spec"]["template"]["spec"]
            post = sets["workers.post"]["spec"]["template"]["spec"]
            c = energy["containers"][0]
            assert c["image"] == "ghcr.io/org/energy:1"
            assert {"name": "MODEL_NAME", "value": "energy 'v7'"} in c["env"]
            vols = {v["name"]: v for v in energy["volumes"]}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert vols[mounts["/data/in"]]["hostPath"] == {"path": "/mnt/disks/inputs",
                                                            "type": "Directory"}
            assert vols[mounts["/data/out"]]["hostPath"]["path"] == "/mnt/disks/outputs"
            pc = post["containers"][0]
            assert pc["image"] == "ghcr.io/dask/dask:2026.8.0"  # the target's image
            assert not any(v.get("hostPath") for v in post.get("volumes", []))
            assert all(e["name"] != "MODEL_NAME" for e in pc["env"])
        finally:
            with engine.locked("destroy"):
                engine.execute(engine.plan(destroy=True), wait=False)


def test_gke_refuses_runtimes_and_options_it_cannot_honour(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as (gke, kube):
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        for block, words in (("{runtime: bwrap, image: /}", "GKE runs OCI images, not bwrap"),
                             ("{runtime: docker, image: x, options: [--privileged]}",
                              "GKE pods take no container runtime options")):
            text = gke_manifest(gke, f"groups:\n  energy:\n    container: {block}\n")
            provider, _ = open_target(root, text.replace("    max_workers: 2\n", ""), gke,
                                      kubeconfig)
            with pytest.raises(ProviderError, match=words):
                provider.check_config()
