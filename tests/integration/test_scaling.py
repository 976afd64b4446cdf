"""Adaptive scaling on real local clusters with sleep tasks."""

from __future__ import annotations

import os
import signal
import time

import pytest
from scalable import ScalableSession

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow


def wait_until(pred, timeout: float, step: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def registered(client) -> int:  # type: ignore[no-untyped-def]
    return len(client.scheduler_info(n_workers=-1)["workers"])


def test_burst_scales_up_within_two_intervals_and_down_after_idle(project: Project) -> None:
    project.write("""
        project: {name: burst}
        targets:
          local:
            provider: local
            adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 2s, wait_count: 2}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        controller = session.controller
        assert controller is not None and registered(client) == 1
        t0 = time.monotonic()
        futs = client.map(lambda i: time.sleep(1.0) or i, range(40), pure=False)
        assert wait_until(lambda: any(d.delta > 0 for d in controller.decisions), 10)
        first_up = next(d for d in controller.decisions if d.delta > 0)
        assert first_up.at - t0 <= 2 * 0.5 + 0.5, first_up  # two intervals (+ a reading)
        assert "queued tasks" in first_up.reason
        assert wait_until(lambda: registered(client) == 3, 60)
        assert sorted(client.gather(futs)) == list(range(40))
        # Idle: back down to the minimum, in steps of at most half.
        assert wait_until(lambda: registered(client) == 1, 60)
        downs = [d for d in controller.decisions if d.delta < 0]
        assert downs and all(d.before - d.after <= max(1, d.before // 2) for d in downs)
        assert project.state()["scale"] == {"default": 1}
    assert our_processes(project.root) == []


def test_tagged_group_grows_alone(project: Project) -> None:
    project.write("""
        project: {name: groups}
        targets:
          local:
            provider: local
            groups:
              energy:
                tags: [energy]
                adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 30s}
              land:
                tags: [land]
                adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 30s}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        futs = client.map(lambda i: time.sleep(1.0) or i, range(30), tag="energy", pure=False)
        assert wait_until(lambda: project.state()["scale"].get("energy") == 3, 20)
        client.gather(futs)
        assert project.state()["scale"].get("land", 1) == 1
        assert session.controller is not None
        assert {d.group for d in session.controller.decisions} == {"energy"}


def test_cli_controller_is_a_resource(project: Project) -> None:
    project.write("""
        project: {name: agent}
        targets:
          local:
            provider: local
            adaptive: {minimum: 1, maximum: 2, interval: 0.5s}
        """)
    project.run("apply", "--auto-approve", check=True)
    st = project.state()
    ctrl = next(r for r in st["resources"] if r["address"] == "controller")
    assert ctrl["type"] == "scalable.controller"
    status = project.run("status", check=True).stdout
    assert "controller" in status and "alive" in status
    os.killpg(ctrl["meta"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    plan = project.run("plan").stdout
    assert "controller (scalable.controller) is gone" in plan
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan
    project.run("apply", "--auto-approve", check=True)
    out = project.run("destroy", "--auto-approve", check=True).stdout
    assert out.index("controller: Destruction complete") < out.index(
        "scheduler: Destruction complete")
    assert our_processes(project.root) == []


def test_second_run_lands_near_its_prediction(project: Project) -> None:
    project.write("""
        project: {name: predict}
        targets:
          local:
            provider: local
            max_workers: 4
        """)
    path = project.root / "scalable.yaml"
    # First run: a few tasks of this kind give the planner its history.
    with ScalableSession.from_yaml(path) as session:
        client = session.start()
        client.gather(client.map(lambda i: time.sleep(1.0) or i, range(4), tag="sim",
                                 pure=False))
    # Second run: 32 such tasks. Start-up time comes from the first run's history (it
    # varies with the machine's load), so the deadline is set to leave room for 2 workers
    # (16 waves of 1 s) but not for 1 (32 waves).
    from scalable.scaling.objectives import startup_history
    from scalable.workspace import Workspace

    startup = startup_history(Workspace.open(path).spec)
    assert startup is not None and startup > 0
    t0 = time.monotonic()
    with ScalableSession.from_yaml(path, objectives={"deadline_hours": (startup + 20) / 3600},
                                   tasks=32, tag="sim") as session:
        goal = session.objective
        assert goal is not None and goal.estimate.source.startswith("telemetry: 4 past tasks")
        assert goal.estimate.task_seconds == pytest.approx(1.0, abs=0.1)
        assert goal.chosen.workers == 2
        client = session.start()
        assert registered(client) == 2
        client.gather(client.map(lambda i: time.sleep(1.0) or i, range(32), tag="sim",
                                 pure=False))
        actual = time.monotonic() - t0  # start-up and work; teardown is not the workload's
    predicted = goal.chosen.finish_seconds
    assert abs(actual - predicted) <= 0.25 * predicted, (actual, predicted)
