"""State files of the wrong shape (issue 11 item 18): valid JSON that is not a state, or a
directory where the file should be, is one clean StateError naming the file — never an
AttributeError, OverflowError or RecursionError. A Hypothesis property drives arbitrary
JSON, and mutations of a good state, through the reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalable.errors import StateError
from scalable.state import LocalStore, ResourceRecord, StateFile
from scalable.state.store import decode_state

GOOD = StateFile(
    target="t",
    provider="local",
    lineage="l-1",
    serial=3,
    resources=[
        ResourceRecord(
            address="scheduler",
            type="local.scheduler",
            status="ready",
            idempotency_key="k",
            id="1",
            worker_names=["w0"],
        )
    ],
).to_dict()


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "state",
        3,
        None,
        {"format_version": 1, "resources": []},
        {**GOOD, "resources": {}},
        {**GOOD, "resources": [[]]},
        {**GOOD, "resources": [{"address": "a"}]},
        {**GOOD, "resources": [{**GOOD["resources"][0], "status": "zombie"}]},
        {**GOOD, "resources": [{**GOOD["resources"][0], "worker_names": "w0"}]},
        {**GOOD, "serial": 1e400},
        {**GOOD, "serial": "3"},
        {**GOOD, "serial": True},
        {**GOOD, "serial": -1},
        {**GOOD, "serial": 2**80},
        {**GOOD, "scale": []},
        {**GOOD, "scale": {"g": 1.5}},
        {**GOOD, "outputs": {"a": 1}},
        {**GOOD, "lineage": 7},
        {**GOOD, "format_version": True},
        {**GOOD, "format_version": 0},
    ],
)
def test_wrong_shapes_are_clean_errors(tmp_path: Path, doc: Any) -> None:
    store = LocalStore(tmp_path)
    store.path.write_text(
        json.dumps(doc)
        if doc != {**GOOD, "serial": 1e400}
        else json.dumps(GOOD).replace('"serial": 3', '"serial": 1e400')
    )
    with pytest.raises(StateError) as err:
        store.read()
    assert str(store.path) in err.value.message
    assert "\n" not in err.value.message


def test_a_directory_where_the_file_should_be(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.path.mkdir()
    with pytest.raises(StateError, match="is a directory") as err:
        store.read()
    assert str(store.path) in err.value.message
    with pytest.raises(StateError, match="is a directory"):
        store.write(StateFile(target="t", provider="local"))


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    with pytest.raises(StateError, match="not the state folder"):
        LocalStore(tmp_path / "t").write(StateFile(target="t", provider="local"))


def test_a_good_state_round_trips() -> None:
    assert StateFile.from_dict(GOOD).to_dict() == GOOD


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = sorted({*GOOD, "x"})
RECORD_KEYS = sorted({*GOOD["resources"][0], "x"})


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A good state with one key (top level or in a record) set to arbitrary JSON."""
    doc = json.loads(json.dumps(GOOD))
    if draw(st.booleans()):
        doc[draw(st.sampled_from(KEYS))] = draw(json_values)
    else:
        doc["resources"][0][draw(st.sampled_from(RECORD_KEYS))] = draw(json_values)
    if draw(st.booleans()):
        doc.pop(draw(st.sampled_from(KEYS)), None)
    return doc


def _check(doc: Any) -> None:
    raw = json.dumps(doc, allow_nan=True).encode()
    try:
        state = decode_state(raw, "/x/state.json", None)
    except StateError as exc:
        assert exc.message.startswith("/x/state.json: ") and "\n" not in exc.message
        return
    # Whatever is accepted is a usable state: it writes and reads back the same.
    again = StateFile.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.to_dict() == state.to_dict()
    assert isinstance(state.serial, int) and all(
        isinstance(r, ResourceRecord) for r in state.resources
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_is_a_state_or_one_clean_error(doc: Any) -> None:
    _check(doc)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_states_are_a_state_or_one_clean_error(doc: Any) -> None:
    _check(doc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_are_one_clean_error(raw: bytes) -> None:
    try:
        decode_state(raw, "/x/state.json", None)
    except StateError as exc:
        assert exc.message.startswith("/x/state.json: ")


@pytest.mark.parametrize("outputs", [{"\n": None}, {"a\rb": 1}, {" ": []}])
def test_an_unprintable_output_key_is_named_on_one_line(outputs: dict[str, Any]) -> None:
    """Found by Hypothesis: a key with a newline broke the one-line error."""
    doc = json.loads(json.dumps(GOOD))
    doc["outputs"] = outputs
    with pytest.raises(StateError) as err:
        decode_state(json.dumps(doc).encode(), "/x/state.json", None)
    assert "\n" not in err.value.message and "outputs[" in err.value.message
    _check(doc)
