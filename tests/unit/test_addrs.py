"""The address grammar: build, parse, order, and the names derived from addresses."""

from __future__ import annotations

import pytest
from scalable import addrs
from scalable.addrs import CONTROLLER, SCHEDULER, Address


def test_build_and_parse_round_trip() -> None:
    for text in (
        "scheduler",
        "controller",
        "workers.gpu[3]",
        "workers.land-use",
        "node_pool.default",
        "task_definition.worker",
        "security_group",
    ):
        assert str(Address.parse(text)) == text
    a = Address.parse(addrs.worker("gpu", 3))
    assert (a.kind, a.group, a.index, a.is_worker) == ("workers", "gpu", 3, True)
    assert Address.parse(SCHEDULER).is_scheduler
    assert not Address.parse(CONTROLLER).is_scheduler
    assert addrs.worker("default") == "workers.default"
    assert addrs.node_pool("a") == "node_pool.a"


@pytest.mark.parametrize("bad", ["", "workers.[1]", "workers.a[x]", "a b", "workers.a[1]x"])
def test_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="not a resource address"):
        Address.parse(bad)
    assert addrs.parse(bad) is None


def test_order_scheduler_then_workers_by_group_and_index() -> None:
    given = [
        "security_group",
        "workers.b[0]",
        "workers.a[10]",
        "workers.a[2]",
        "scheduler",
        "controller",
    ]
    assert sorted(given, key=addrs.sort_key) == [
        "scheduler",
        "workers.a[2]",
        "workers.a[10]",
        "workers.b[0]",
        "controller",
        "security_group",
    ]


def test_group_and_slug() -> None:
    assert addrs.group_of("workers.default[3]") == "default"
    assert addrs.group_of("workers.land-use[0]-2") == "land-use"
    assert addrs.group_of("tcp://1.2.3.4:5") is None
    assert addrs.slug("workers.gpu[3]") == "gpu-3"
    assert addrs.slug("scheduler") == "scheduler"
    assert addrs.slug("node_pool.x") == "node_pool-x"
