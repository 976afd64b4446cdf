"""The provider contract, checked the same way on every provider (Terraform's provider
acceptance tests are the model): the fake, local processes, the real Slurm, AWS on
moto, GKE on its fakes.

- create is idempotent by key: a retried create with the same key returns the first one
  and the backend holds exactly one;
- observe and discover agree: what one calls alive the other lists, and after a delete
  neither does;
- delete of what is already gone succeeds;
- prices are never silently $0: every desired resource is priced, unknown (with a
  reason), or free with a source saying why.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from scalable.manifest import load_manifest
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.providers.base import CreateContext, Provider, ResourceSpec, provider_class
from scalable.providers.gke import GkeProvider
from scalable.spec import build_target
from scalable.state.model import ResourceRecord

from tests.fakes.cluster import fake_cluster, gke_manifest
from tests.fakes.provider import World, fake_provider
from tests.integration.aws.conftest import aws, moto_server  # noqa: F401 - fixtures


@dataclass
class Case:
    provider: Provider
    # The resource the create/delete checks use (the cheapest one the provider makes).
    pick: Callable[[list[ResourceSpec]], ResourceSpec]
    outputs: dict[str, str]


def _open(root: Path, manifest: str, target: str) -> Provider:
    (root / "scalable.yaml").write_text(manifest)
    spec = build_target(load_manifest(root / "scalable.yaml"), target)
    spec.workdir.mkdir(parents=True, exist_ok=True)
    return provider_class(spec.provider)(spec, spec.workdir)


def _first(kind: str) -> Callable[[list[ResourceSpec]], ResourceSpec]:
    return lambda specs: next(s for s in specs if s.type == kind)


def _slurm_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no Slurm client commands on PATH (run: sudo scripts/slurm-dev.sh up)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    return None if " is UP" in ping.stdout else f"Slurm is not up: {ping.stdout.strip()}"


@pytest.fixture(
    params=[
        "fake",
        "local",
        pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.slow]),
        pytest.param("aws", marks=pytest.mark.aws),
        pytest.param("gke", marks=[pytest.mark.gke, pytest.mark.slow]),
    ]
)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    name = request.param
    if name == "fake":
        yield Case(fake_provider(2, world=World()), _first("t.vm"), {})
    elif name == "local":
        p = _open(tmp_path, "targets:\n  local: {provider: local, max_workers: 1}\n", "local")
        yield Case(p, _first("local.process"), {})
    elif name == "slurm":
        reason = _slurm_reason()
        if reason:
            pytest.skip(reason)
        p = _open(
            tmp_path,
            "targets:\n  hpc: {provider: slurm, queue: batch, "
            "walltime: '00:10:00', max_workers: 1, tls: false}\n",
            "hpc",
        )
        # A worker job alone: it needs only a scheduler address to be submitted.
        yield Case(
            p,
            lambda specs: next(s for s in specs if s.group),
            {SCHEDULER_ADDRESS: "tcp://127.0.0.1:9"},
        )
    elif name == "gke":
        # The real google-cloud-container client over gRPC to the fake GKE API.
        with fake_cluster(tmp_path / "cluster", op_seconds=0.3) as (gke, kube):
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            (tmp_path / "scalable.yaml").write_text(gke_manifest(gke, workers=1))
            spec = build_target(load_manifest(tmp_path / "scalable.yaml"), "gke")
            p = GkeProvider(
                spec,
                spec.workdir,
                retry=None,
                kubeconfig=kubeconfig,
                channel=grpc.insecure_channel(gke.address),
            )
            yield Case(p, _first("gke.node_pool"), {})
    else:
        request.getfixturevalue("aws")
        p = _open(
            tmp_path,
            "targets:\n  cloud: {provider: aws, region: us-east-1, "
            "instance_type: t3.small, max_workers: 1}\n",
            "cloud",
        )
        yield Case(p, _first("aws.security_group"), {})


def _eventually(pred: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_create_is_idempotent_and_observe_discover_delete_agree(case: Case) -> None:
    p = case.provider
    spec = case.pick(p.desired())
    lineage = str(uuid.uuid4())
    key = f"{lineage[:8]}-{spec.address}-conform"
    ctx = CreateContext(
        lineage=lineage,
        idempotency_key=key,
        target=p.target.name,
        project=p.target.project,
        outputs=dict(case.outputs),
        spec=p.target,
    )
    first = p.create(spec, ctx)
    try:
        again = p.create(spec, ctx)  # a retry after a lost answer
        assert again.id == first.id
        rec = ResourceRecord(
            spec.address,
            spec.type,
            "ready",
            key,
            id=first.id,
            group=spec.group,
            attributes=spec.attributes,
            meta=first.meta,
            worker_names=list(spec.worker_names),
            depends_on=list(spec.depends_on),
        )
        mine = [d for d in p.discover(lineage) if d.idempotency_key == key]
        assert [d.id for d in mine] == [first.id]  # exactly one, found by lineage
        assert p.observe([rec])[spec.address].status in ("alive", "pending")
    finally:
        p.delete(
            rec
            if "rec" in locals()
            else ResourceRecord(spec.address, spec.type, "ready", key, id=first.id, meta=first.meta)
        )
    p.delete(rec)  # already gone: succeeds
    assert _eventually(lambda: p.observe([rec])[spec.address].status == "gone")
    assert _eventually(
        lambda: not [d for d in p.discover(lineage) if d.id == first.id and d.status != "gone"]
    )


def test_prices_are_never_silently_zero(case: Case) -> None:
    for spec in case.provider.desired():
        price = case.provider.price(spec)
        if price.hourly is None:
            assert price.note, f"{spec.address}: unknown without a reason"
        elif price.hourly == 0:
            assert price.source or price.note, f"{spec.address}: $0 without saying why"
        else:
            assert price.hourly > 0
