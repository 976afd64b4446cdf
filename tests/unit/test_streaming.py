"""The streaming JSON view (``apply --json``): the engine's steps as Terraform-shaped lines.

The engine runs over the fault-injecting fake provider; the hook writes into a buffer.
The real CLI, line by line from a pipe, is tests/integration/test_streaming_json.py.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from scalable.engine import Engine
from scalable.events import RESOURCE_CREATING
from scalable.payloads import ResourceStep
from scalable.state.store import LocalStore
from scalable.streaming import MODULE, UI_FORMAT_VERSION, StreamHook

from tests.fakes.provider import fake_provider

KEYS = {"@level", "@message", "@module", "@timestamp", "type"}


def lines(buf: io.StringIO) -> list[dict]:
    out = [json.loads(line) for line in buf.getvalue().splitlines()]
    for msg in out:
        assert msg.keys() >= KEYS and msg["@module"] == MODULE, msg
    return out


def run(tmp_path: Path, workers: int, *, destroy: bool = False, fail: str | None = None,
        ) -> tuple[list[dict], list[str]]:
    store = LocalStore(tmp_path / ".scalable" / "t")
    provider = fake_provider(workers, workdir=store.folder)
    if fail:
        provider.world.fail("create", fail)
    buf = io.StringIO()
    hook = StreamHook("fake", out=buf, every=0)
    engine = Engine(provider, store, hooks=hook)
    result = engine.execute(engine.plan(destroy=destroy), wait=False)
    return lines(buf), result.errors


def test_apply_then_destroy_stream_in_terraforms_order(tmp_path: Path) -> None:
    msgs, errors = run(tmp_path, 2)
    assert errors == []
    types = [m["type"] for m in msgs]
    # The plan first (every change, then its summary), then the steps, then the result.
    assert types[:4] == ["planned_change"] * 3 + ["change_summary"]
    assert msgs[3]["changes"] == {"add": 3, "change": 0, "remove": 0, "operation": "plan"}
    assert types[-2:] == ["change_summary", "outputs"]
    assert msgs[-2]["@message"] == "Apply complete! Resources: 3 added, 0 changed, 0 destroyed."
    assert msgs[-1]["outputs"]["scheduler_address"]["value"].startswith("tcp://")
    for addr in ("scheduler", "workers.default[0]", "workers.default[1]"):
        start = next(i for i, m in enumerate(msgs)
                     if m["type"] == "apply_start" and m["hook"]["resource"]["addr"] == addr)
        done = next(i for i, m in enumerate(msgs)
                    if m["type"] == "apply_complete" and m["hook"]["resource"]["addr"] == addr)
        assert start < done
        assert msgs[done]["hook"]["id_value"]  # the backend's id, Terraform's id_key/id_value
    w1 = next(m for m in msgs if m["type"] == "apply_start"
              and m["hook"]["resource"]["addr"] == "workers.default[1]")
    assert w1["hook"]["resource"] == {
        "addr": "workers.default[1]", "resource_type": w1["hook"]["resource"]["resource_type"],
        "resource_name": "workers.default", "resource_key": 1, "implied_provider": "fake"}
    assert w1["@message"] == "workers.default[1]: Creating..."

    msgs, errors = run(tmp_path, 2, destroy=True)
    assert errors == []
    assert [m["hook"]["action"] for m in msgs if m["type"] == "apply_start"] == ["delete"] * 3
    last = msgs[-1]
    assert last["type"] == "change_summary" and last["changes"]["operation"] == "destroy"
    assert last["changes"]["remove"] == 3
    assert not any(m["type"] == "outputs" for m in msgs)  # destroy has none to show


def test_a_failed_create_is_apply_errored_and_an_error_diagnostic(tmp_path: Path) -> None:
    msgs, errors = run(tmp_path, 2, fail="workers.default[1]")
    assert len(errors) == 1
    errored = [m for m in msgs if m["type"] == "apply_errored"]
    assert len(errored) == 1 and errored[0]["@level"] == "error"
    assert errored[0]["hook"]["resource"]["addr"] == "workers.default[1]"
    assert errored[0]["hook"]["action"] == "create" and errored[0]["hook"]["error"]
    summary = next(m for m in msgs if m["type"] == "change_summary"
                   and m["changes"]["operation"] == "apply")
    assert summary["@message"].startswith("Apply partially complete! Resources: 2 added")
    diag = [m for m in msgs if m["type"] == "diagnostic"]
    assert [d["diagnostic"]["severity"] for d in diag] == ["error"]
    assert diag[0]["diagnostic"]["summary"] == errors[0]
    assert msgs.index(summary) < msgs.index(diag[0])  # errors after the summary, as Terraform


def test_a_long_call_reports_still_creating() -> None:
    now = [100.0]
    buf = io.StringIO()
    hook = StreamHook("fake", out=buf, every=0.01, clock=lambda: now[0])
    try:
        hook.event(ResourceStep(RESOURCE_CREATING, "node_pool.default", "t.pool"))
        now[0] = 125.0  # the provider call has been running 25 s
        deadline = time.monotonic() + 30
        while "Still creating" not in buf.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        hook.close()
    progress = [m for m in lines(buf) if m["type"] == "apply_progress"]
    assert progress, buf.getvalue()
    assert progress[0]["@message"] == "node_pool.default: Still creating... [25s elapsed]"
    assert progress[0]["hook"]["elapsed_seconds"] == 25.0
    assert not any(t.name == "scalable-ui-progress" and t.is_alive()
                   for t in threading.enumerate())


def test_version_and_diagnostics() -> None:
    buf = io.StringIO()
    hook = StreamHook("local", out=buf)
    hook.version()
    hook.warning("careful")
    hook.diagnostic("it broke", "try again")
    msgs = lines(buf)
    assert msgs[0]["type"] == "version" and msgs[0]["ui"] == UI_FORMAT_VERSION
    assert msgs[1]["diagnostic"] == {"severity": "warning", "summary": "careful", "detail": ""}
    assert msgs[1]["@level"] == "warning" and msgs[1]["@message"] == "Warning: careful"
    assert msgs[2]["@level"] == "error" and msgs[2]["@message"] == "Error: it broke"
    assert hook.errored
