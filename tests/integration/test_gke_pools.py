"""Node pools through the real ClusterManagerClient over real gRPC to the fake GKE."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.cloud import container_v1 as c
from scalable.providers.base import ProviderError
from scalable.providers.gke.pools import Pools

from tests.fakes.gke import FakeGke

pytestmark = pytest.mark.gke

LINEAGE = "5f0c2a55-8a5e-4a39-9d3c-0b3a3c1f7e21"


@pytest.fixture
def fake() -> Iterator[FakeGke]:
    f = FakeGke(op_seconds=0.2).start()
    yield f
    f.stop()


def pools(fake: FakeGke, **kw: object) -> Pools:
    options: dict[str, object] = {"timeout": 10.0, "poll": 0.1, "retry": None, **kw}
    return Pools(fake.client(), project=fake.project, location=fake.location,
                 cluster=fake.cluster_name, **options)  # type: ignore[arg-type]


def node_pool(name: str = "np", count: int = 2, lineage: str = LINEAGE) -> c.NodePool:
    return c.NodePool(
        name=name, initial_node_count=count,
        config=c.NodeConfig(machine_type="e2-standard-4",
                            resource_labels={"scalable-lineage": lineage}),
    )


def test_create_resize_delete_wait_on_operations(fake: FakeGke) -> None:
    p = pools(fake)
    info = p.create(node_pool(count=2), lineage=LINEAGE)
    assert info.status == "RUNNING" and info.initial_node_count == 2
    assert len(fake.nodes()) == 2
    assert fake.calls.count("CreateNodePool") == 1 and "GetOperation" in fake.calls

    p.resize("np", 5)
    assert len(fake.nodes()) == 5
    # GKE keeps initialNodeCount as it was: the size is what the nodes say.
    assert p.get("np").initial_node_count == 2  # type: ignore[union-attr]

    p.delete("np")
    assert p.get("np") is None and fake.pools == {} and fake.nodes() == []
    p.delete("np")  # already gone: fine
    assert fake.calls.count("DeleteNodePool") == 1


def test_regional_pool_has_node_count_per_zone() -> None:
    f = FakeGke(location="us-central1", zones=["us-central1-a", "us-central1-b",
                                               "us-central1-c"], op_seconds=0.1).start()
    try:
        pools(f).create(node_pool(count=2), lineage=LINEAGE)
        assert len(f.nodes()) == 6
        assert pools(f).cluster().zones == ["us-central1-a", "us-central1-b", "us-central1-c"]
    finally:
        f.stop()


def test_create_is_idempotent_by_name(fake: FakeGke) -> None:
    p = pools(fake)
    p.create(node_pool(), lineage=LINEAGE)
    again = p.create(node_pool(), lineage=LINEAGE)
    assert again.name == "np"
    assert fake.calls.count("CreateNodePool") == 1


def test_a_pool_of_the_same_name_that_is_not_ours_is_refused(fake: FakeGke) -> None:
    pools(fake).create(node_pool(lineage="someone-else"), lineage="someone-else")
    with pytest.raises(ProviderError, match="already exists .* not this state's"):
        pools(fake).create(node_pool(), lineage=LINEAGE)


def test_a_failing_operation_reports_gke_s_own_message(fake: FakeGke) -> None:
    quota = 'Insufficient regional quota to satisfy request: resource "CPUS"'
    fake.fail_next["CREATE_NODE_POOL"] = quota
    with pytest.raises(ProviderError) as err:
        pools(fake).create(node_pool(), lineage=LINEAGE)
    assert str(err.value) == f"GKE could not create node pool np: {quota}"
    assert err.value.hint and "gcloud container operations describe operation-" in err.value.hint
    assert pools(fake).get("np").status == "ERROR"  # type: ignore[union-attr]

    pools(fake).delete("np")
    pools(fake).create(node_pool(count=1), lineage=LINEAGE)
    fake.fail_next["SET_NODE_POOL_SIZE"] = "Quota 'IN_USE_ADDRESSES' exceeded"
    with pytest.raises(ProviderError, match="could not resize node pool np to 4: Quota"):
        pools(fake).resize("np", 4)
    assert len(fake.nodes()) == 1  # unchanged


def test_a_pool_being_changed_by_someone_else_is_reported_not_fought(fake: FakeGke) -> None:
    p = pools(fake)
    p.create(node_pool(), lineage=LINEAGE)
    op = fake.foreign_operation("np", "UPGRADE_NODES")
    with pytest.raises(ProviderError) as err:
        p.resize("np", 3)
    assert f"node pool np is already being changed by another operation (UPGRADE_NODES {op}" \
        in str(err.value)
    assert err.value.hint and f"gcloud container operations wait {op}" in err.value.hint
    with pytest.raises(ProviderError, match="already being changed"):
        p.delete("np")
    assert "SetNodePoolSize" not in fake.calls and "DeleteNodePool" not in fake.calls

    fake.finish(op)
    p.resize("np", 3)
    assert len(fake.nodes()) == 3


def test_a_cluster_wide_operation_blocks_too(fake: FakeGke) -> None:
    p = pools(fake)
    p.create(node_pool(), lineage=LINEAGE)
    fake.foreign_operation("", "UPGRADE_MASTER")
    with pytest.raises(ProviderError, match="UPGRADE_MASTER"):
        p.resize("np", 3)


def test_gke_refusing_a_concurrent_change_is_mapped(fake: FakeGke,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone starts an operation between our look and our call: GKE says
    FAILED_PRECONDITION, and that is the same clear error."""
    p = pools(fake)
    p.create(node_pool(), lineage=LINEAGE)
    op = fake.foreign_operation("np", "SET_NODE_POOL_SIZE")
    monkeypatch.setattr(p, "running", lambda name: [])
    with pytest.raises(ProviderError) as err:
        p.resize("np", 3)
    assert f"another operation is running on the cluster (Cluster is running incompatible " \
           f"operation {op}.)" in str(err.value)
    assert fake.calls.count("SetNodePoolSize") == 1


def test_an_operation_that_never_ends_times_out_clearly(fake: FakeGke) -> None:
    fake.hold_next.add("CREATE_NODE_POOL")
    with pytest.raises(ProviderError) as err:
        pools(fake, timeout=0.8).create(node_pool(), lineage=LINEAGE)
    assert "timed out after 0.8s waiting to create node pool np" in str(err.value)
    assert "still RUNNING and goes on in Google Cloud" in str(err.value)


def test_missing_cluster_and_missing_permission(fake: FakeGke) -> None:
    wrong = Pools(fake.client(), project=fake.project, location=fake.location,
                  cluster="nope", retry=None)
    with pytest.raises(ProviderError, match="GKE cluster 'nope' not found in project"):
        wrong.cluster()
    fake.deny.add("CreateNodePool")
    with pytest.raises(ProviderError) as err:
        pools(fake).create(node_pool(), lineage=LINEAGE)
    assert "permission denied" in str(err.value)
    assert err.value.hint and "container.clusters.update" in err.value.hint


def test_unreachable_api_is_one_clear_error() -> None:
    import grpc
    from google.cloud.container_v1.services.cluster_manager.transports import (
        ClusterManagerGrpcTransport,
    )

    channel = grpc.insecure_channel("127.0.0.1:9")  # nothing listens on the discard port
    client = c.ClusterManagerClient(transport=ClusterManagerGrpcTransport(channel=channel))
    p = Pools(client, project="p", location="us-central1", cluster="x", retry=None,
              rpc_timeout=3)
    with pytest.raises(ProviderError, match="cannot reach the GKE API"):
        p.cluster()
