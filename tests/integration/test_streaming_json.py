"""`apply --json` / `destroy --json` on the local target, read line by line from a pipe.

Each line must arrive as the step happens: the test holds the state lock so apply cannot
finish, and reads a line from the running process; later it reads a worker's
``apply_start`` while the process is still waiting for that worker.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

import pytest
from scalable.state.lock import file_lock

from tests.conftest import Project, our_processes
from tests.integration.test_local import manifest

pytestmark = pytest.mark.slow

KEYS = {"@level", "@message", "@module", "@timestamp", "type"}


class Stream:
    """A `scalable` subprocess whose stdout is read one line at a time."""

    def __init__(self, project: Project, *args: str) -> None:
        self.err = (project.root / "stderr.txt").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scalable", *args], cwd=project.root, text=True,
            stdout=subprocess.PIPE, stderr=self.err, bufsize=1,
            env={**os.environ, "CI": "1", "NO_COLOR": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self) -> dict | None:
        line = self.lines.get(timeout=240)
        if line is None:
            return None
        msg = json.loads(line)  # every line is one JSON object
        assert msg.keys() >= KEYS and msg["@module"] == "scalable.ui", msg
        self.seen.append(msg)
        return msg

    def until(self, pred) -> dict:  # type: ignore[no-untyped-def]
        while (msg := self.next()) is not None:
            if pred(msg):
                return msg
        raise AssertionError(f"stream ended first: {[m['type'] for m in self.seen]}")

    def finish(self) -> int:
        while self.next() is not None:
            pass
        rc = self.proc.wait(timeout=240)
        self.err.close()
        return rc


def of(msgs: list[dict], type_: str) -> list[dict]:
    return [m for m in msgs if m["type"] == type_]


def test_apply_and_destroy_json_stream_each_step_as_it_happens(project: Project) -> None:
    project.write(manifest(2))
    with file_lock(project.root / ".scalable" / "local" / "state.lock", "test holds it"):
        s = Stream(project, "apply", "--json", "--auto-approve", "--lock-timeout", "240s")
        assert s.next()["type"] == "version"  # type: ignore[index]
        waiting = s.until(lambda m: m["type"] == "log")
        assert waiting["@message"].startswith("Acquiring state lock")
        # Read while apply cannot have finished: we still hold its lock.
        assert s.proc.poll() is None
    start = s.until(lambda m: m["type"] == "apply_start"
                    and m["hook"]["resource"]["addr"] == "workers.default[1]")
    # Read while the process still has the worker to start and wait for.
    assert s.proc.poll() is None
    assert start["hook"]["action"] == "create"
    assert s.finish() == 0, (project.root / "stderr.txt").read_text()

    msgs = s.seen
    types = [m["type"] for m in msgs]
    plan_summary = types.index("change_summary")
    assert types[0] == "version" and msgs[0]["ui"] == "1.0"
    assert types[plan_summary - 3:plan_summary] == ["planned_change"] * 3
    assert msgs[plan_summary]["changes"]["operation"] == "plan"
    assert types.index("apply_start") > plan_summary
    for m in of(msgs, "apply_complete"):
        started = next(x for x in of(msgs, "apply_start")
                       if x["hook"]["resource"] == m["hook"]["resource"])
        assert msgs.index(started) < msgs.index(m)
    assert {m["hook"]["resource"]["addr"] for m in of(msgs, "apply_complete")} == {
        "scheduler", "workers.default[0]", "workers.default[1]"}
    progress = of(msgs, "apply_progress")
    assert progress[-1]["hook"]["ready"] == progress[-1]["hook"]["expected"] == 2
    assert types[-2:] == ["change_summary", "outputs"]
    assert msgs[-2]["@message"] == "Apply complete! Resources: 3 added, 0 changed, 0 destroyed."
    address = msgs[-1]["outputs"]["scheduler_address"]["value"]
    assert address == project.state()["outputs"]["scheduler_address"]
    assert not of(msgs, "diagnostic")

    d = Stream(project, "destroy", "--json", "--auto-approve")
    assert d.finish() == 0, (project.root / "stderr.txt").read_text()
    assert [m["hook"]["action"] for m in of(d.seen, "apply_start")] == ["delete"] * 3
    assert d.seen[-1]["@message"] == \
        "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed."
    assert our_processes(project.root) == []


def test_a_worker_that_cannot_start_streams_apply_errored_and_exits_3(
    project: Project,
) -> None:
    project.write(manifest(1, worker_extra_args='["--no-such-flag"]'))
    s = Stream(project, "apply", "--json", "--auto-approve")
    assert s.finish() == 3
    errored = of(s.seen, "apply_errored")
    assert [m["hook"]["resource"]["addr"] for m in errored] == ["workers.default[0]"]
    assert errored[0]["@level"] == "error" and "did not come up" in errored[0]["hook"]["error"]
    summary = [m for m in of(s.seen, "change_summary") if m["changes"]["operation"] == "apply"]
    assert summary[0]["@message"].startswith("Apply partially complete!")
    diags = of(s.seen, "diagnostic")
    assert diags and all(d["diagnostic"]["severity"] == "error" for d in diags)
    assert "workers.default[0] did not come up" in diags[0]["diagnostic"]["summary"]
    # stderr keeps the human error line; stdout held only the stream.
    assert "Error: " in (project.root / "stderr.txt").read_text()
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_json_errors_are_diagnostic_lines(project: Project) -> None:
    project.write(manifest(1))
    no_approval = project.run("apply", "--json")
    assert no_approval.returncode == 1
    out = [json.loads(line) for line in no_approval.stdout.splitlines()]
    assert [m["type"] for m in out] == ["version", "diagnostic"]
    assert out[1]["diagnostic"]["summary"].startswith("Plan file or --auto-approve required")
    project.write("targets:\n  local: {provider: local, max_workers: nope}\n")
    bad = project.run("destroy", "--json", "--auto-approve")
    assert bad.returncode == 1
    out = [json.loads(line) for line in bad.stdout.splitlines()]
    assert out[-1]["type"] == "diagnostic" and "max_workers" in out[-1]["diagnostic"]["summary"]
    assert bad.stderr.startswith("Error: ")
