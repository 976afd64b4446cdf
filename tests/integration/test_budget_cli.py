"""Issue 18: ``apply --budget-usd`` through the CLI — the detached controller enforces the
budget on a target that has no adaptive group, on the local target with a made-up price
of $1 per resource-second (``pricing.hourly_usd: 3600``)."""

from __future__ import annotations

import json
import time
from typing import Any

import psutil
import pytest
from distributed import Client
from scalable.scaling.budget import MARKER

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow

# Leaves room for a slow start-up on a loaded machine (apply waits for the workers, and
# billing starts when they are asked for: ~3 resources at $1/s).
BUDGET = 150.0


def _manifest(project: Project, on_budget: str = "") -> None:
    objectives = f"\n    objectives: {{on_budget: {on_budget}}}" if on_budget else ""
    project.write(f"""
project: {{name: budgetcli}}
targets:
  local:
    provider: local
    max_workers: 2
    threads_per_worker: 1
    pricing: {{hourly_usd: 3600}}
    workload: {{tasks: 4, task_seconds: 0.5}}{objectives}
""")


def _run_until_cancelled(project: Project) -> str:
    """Submit far more work than the budget pays for; return the first cancellation's
    message (a done-callback sees it at once: with on_budget: destroy the scheduler goes
    soon after, and a plain client then re-cancels everything as "connection lost")."""
    address = project.state()["outputs"]["scheduler_address"]
    seen: list[str] = []
    with Client(address, timeout=30) as client:
        futures = client.map(lambda i: time.sleep(1.0) or i, range(1000), pure=False)
        # (Future.exception() is None for a cancelled future; its state holds the reason.)
        futures[-1].add_done_callback(lambda f: seen.append(str(f._state.exception)))
        deadline = time.monotonic() + 400
        while not seen:
            assert time.monotonic() < deadline, "the budget never stopped the run"
            time.sleep(0.2)
        # Unfinished work is cancelled, not left waiting for workers that will not come.
        assert futures[-1].status == "cancelled"
        assert sum(f.status == "finished" for f in futures) < len(futures) / 2
    return seen[0]


def _controller_pid(project: Project) -> int:
    rec = next(r for r in project.state()["resources"] if r["address"] == "controller")
    return int(rec["meta"]["pid"])


def _report(project: Project) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(project.run("report", "--json", check=True).stdout)
    return doc


def test_apply_budget_flag_stops_the_run_within_one_interval(project: Project) -> None:
    _manifest(project)
    r = project.run("apply", "--auto-approve", "--budget-usd", str(BUDGET), check=True)
    assert "budget $150.00" in r.stdout  # the objective table
    # A target without adaptive groups still gets the controller that guards the budget.
    assert "controller" in [x["address"] for x in project.state()["resources"]]
    message = _run_until_cancelled(project)
    assert MARKER in message and "budget=150" in message

    def workers() -> list[str]:
        return [x["address"] for x in project.state()["resources"]
                if x["address"].startswith("workers")]

    deadline = time.monotonic() + 120
    while workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert workers() == []
    state = project.state()
    # on_budget: stop keeps the scheduler (clients learn why) and the controller.
    assert {x["address"] for x in state["resources"]} == {"scheduler", "controller"}
    doc = _report(project)
    assert doc["budget_usd"] == BUDGET
    actions = doc["budget_actions"]
    assert [a["kind"] for a in actions] == ["budget_warning", "budget_exhausted"]
    exhausted = actions[-1]["data"]
    # Judged one interval (1 s, the default without adaptive) ahead: the spend when the
    # guard stopped the run is within one interval's cost of the budget ($3: scheduler
    # and two workers at $1/s each).
    assert exhausted["spent_usd"] <= BUDGET
    assert exhausted["spent_usd"] >= BUDGET - 3 * 1.0, exhausted
    assert exhausted["on_budget"] == "stop"
    print(f"\nbudget ${BUDGET:g}: the guard stopped at ${exhausted['spent_usd']:.2f}; "
          f"report: ${doc['spent_usd']:.2f}")
    # The report's spent (from the workers' own telemetry) is the same figure, give or
    # take what it bills since (the scheduler, still up, at $1/s).
    assert doc["spent_usd"] is not None and doc["spent_usd"] > 0.8 * BUDGET
    text = project.run("report", check=True).stdout
    assert "Budget: $150.00; spent" in text and "exhausted:" in text
    # A plain plan afterwards keeps the controller and the stopped workers' absence in
    # words the user can act on: re-applying brings the workers back.
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_on_budget_destroy_leaves_nothing(project: Project) -> None:
    _manifest(project, on_budget="destroy")
    project.run("apply", "--auto-approve", "--budget-usd", str(BUDGET), check=True)
    state = project.state()
    pids = [int(x["meta"]["pid"]) for x in state["resources"] if "pid" in x.get("meta", {})]
    assert len(pids) == 4  # scheduler, two workers, the controller
    controller = _controller_pid(project)
    message = _run_until_cancelled(project)
    assert MARKER in message

    deadline = time.monotonic() + 120
    while (project.state()["resources"] or psutil.pid_exists(controller)) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    state = project.state()
    assert state["resources"] == [] and state["outputs"] == {}
    # Nothing leaked: every process the run started (and its children) is gone.
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert our_processes(project.root) == []
    doc = _report(project)
    assert doc["run"]["running"] is False
    exhausted = doc["budget_actions"][-1]
    assert exhausted["kind"] == "budget_exhausted" and exhausted["data"]["on_budget"] == "destroy"
    # The run ended with the destroy: its whole bill is final, and it stayed within one
    # interval's cost of the budget plus the destroy's own few seconds.
    assert doc["spent_usd"] is not None and doc["spent_usd"] <= BUDGET + 3 * 1.0 + 3 * 30, doc
    print(f"\non_budget destroy, budget ${BUDGET:g}: the guard stopped at "
          f"${exhausted['data']['spent_usd']:.2f}; final bill ${doc['spent_usd']:.2f}")
    r = project.run("plan")
    assert r.returncode == 0 and "to add" in r.stdout  # a later apply starts afresh


def test_a_saved_plan_carries_its_budget_to_the_controller(project: Project) -> None:
    """`plan --budget-usd X -o FILE` then `apply FILE` guards the budget as `apply
    --budget-usd X` does: the saved plan keeps the objective it was made for."""
    _manifest(project)
    plan_file = project.root / "budget.plan"
    r = project.run("plan", "--budget-usd", str(BUDGET), "-o", str(plan_file), check=True)
    assert "budget $150.00" in r.stdout
    saved = json.loads(plan_file.read_text())
    assert saved["objective"]["budget_usd"] == BUDGET
    assert saved["objective"]["on_budget"] == "stop"
    # `plan --json` is unchanged: the objective rides in saved plans only.
    assert "objective" not in json.loads(
        project.run("plan", "--json", "--budget-usd", str(BUDGET), check=True).stdout)
    project.run("apply", str(plan_file), check=True)
    assert "controller" in [x["address"] for x in project.state()["resources"]]
    message = _run_until_cancelled(project)
    assert MARKER in message and "budget=150" in message
    doc = _report(project)
    assert doc["budget_usd"] == BUDGET
    exhausted = doc["budget_actions"][-1]["data"]
    assert BUDGET - 3 * 1.0 <= exhausted["spent_usd"] <= BUDGET, exhausted
    # The controller may still hold the lock while it stops the workers.
    project.run("destroy", "--auto-approve", "--lock-timeout", "120s", check=True)
    assert our_processes(project.root) == []
