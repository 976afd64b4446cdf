"""``state mv``: renaming addresses in a state (unit tests of state.moves.move)."""

from __future__ import annotations

import pytest
from scalable.errors import StateError
from scalable.state.model import ResourceRecord, StateFile
from scalable.state.moves import move


def state() -> StateFile:
    st = StateFile(target="t", provider="local", serial=3, lineage="l-1")
    st.resources.append(ResourceRecord("scheduler", "p", "ready", "k-s", id="s"))
    for i in range(2):
        st.resources.append(
            ResourceRecord(
                f"workers.old[{i}]",
                "p",
                "ready",
                f"k-{i}",
                id=f"w{i}",
                group="old",
                depends_on=["scheduler", "node_pool.old"],
            )
        )
    st.resources.append(ResourceRecord("node_pool.old", "p", "ready", "k-p", id="np"))
    st.scale["old"] = 2
    return st


def test_move_a_group_keeps_indexes_groups_and_scale() -> None:
    st = state()
    assert move(st, "workers.old", "workers.new") == [
        ("workers.old[0]", "workers.new[0]"),
        ("workers.old[1]", "workers.new[1]"),
    ]
    rec = st.get("workers.new[1]")
    assert rec is not None and rec.group == "new" and rec.id == "w1"
    assert st.get("workers.old[0]") is None and st.scale == {"new": 2}


def test_move_one_resource_and_what_depends_on_it() -> None:
    st = state()
    assert move(st, "node_pool.old", "node_pool.new") == [("node_pool.old", "node_pool.new")]
    rec = st.get("workers.old[0]")
    assert rec is not None and rec.depends_on == ["scheduler", "node_pool.new"]


@pytest.mark.parametrize(
    ("src", "dst", "words"),
    [
        ("workers.nope", "workers.x", "Invalid source address: no resource 'workers.nope'"),
        ("workers.old[0]", "workers.old[1]", "cannot move to workers.old\\[1\\]: there is already"),
        ("workers.old", "workers.new[0]", "cannot move the group workers.old to the single"),
        ("workers[", "workers.x", "Invalid address 'workers\\['"),
    ],
)
def test_refusals_in_terraforms_words(src: str, dst: str, words: str) -> None:
    st = state()
    with pytest.raises(StateError, match=words):
        move(st, src, dst)
    assert [r.address for r in st.resources] == [r.address for r in state().resources]
