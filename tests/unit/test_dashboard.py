"""The dashboard's data layer without a terminal or a cluster: arithmetic, replays of a
synthetic run, scale-request checks, and Engine.scale keeping other groups' counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from scalable.engine import Engine
from scalable.hooks import Collect
from scalable.payloads import ScaleDecision
from scalable.state.store import LocalStore
from scalable.telemetry.report import build_report
from scalable.telemetry.store import Event, WorkerSpan
from scalable.tui import model
from scalable.tui.actions import ScaleRefused, preview
from scalable.tui.source import ReplaySource
from scalable.workspace import Workspace

from tests.fakes.provider import FakeProvider, World
from tests.integration import dashboard_run as synthetic

# -- arithmetic ------------------------------------------------------------------------


def test_sparkline_scales_from_zero_and_marks_before_the_run() -> None:
    assert model.sparkline([-1, 0, 1, 2, 4], top=4) == " ·▂▄█"
    assert model.sparkline([3, 3, 3]) == "███"  # its own maximum when no top is given
    assert model.sparkline([1, 8], top=8) == "▁█"


def test_group_series_takes_the_most_workers_in_each_slice() -> None:
    spans = [WorkerSpan("a", "a", 1, 100.0, None, None),
             WorkerSpan("b", "b", 1, 133.0, 134.0, "lost")]  # one second inside slice 3
    series = model.group_series(spans, start=100.0, at=160.0, columns=6, seconds=60.0)
    # Slices of 10 s ending at 110, 120, …, 160; the 1-second blip still shows.
    assert series == (1, 1, 1, 2, 1, 1)
    before = model.group_series(spans, start=100.0, at=120.0, columns=4, seconds=40.0)
    assert before == (-1, -1, 1, 1)


def test_rate_uses_the_newest_window() -> None:
    history = [(0.0, {"a": 0}), (5.0, {"a": 10}), (10.0, {"a": 30}), (15.0, {"a": 40})]
    assert model.rate_from(history, "a", window=10.0) == pytest.approx(30 / 10)
    assert model.rate_from(history, "*", window=10.0) == pytest.approx(3.0)
    assert model.rate_from(history[:1], "a") is None


def test_cost_at_counts_present_workers_and_the_scheduler() -> None:
    spans = [WorkerSpan("workers.default[0]", "x", 1, 0.0, 1800.0, "retired"),
             WorkerSpan("workers.gpu[0]", "y", 1, 0.0, None, None)]
    pricing = {"worker_hourly": {"default": 1.0, "gpu": 3.0}, "scheduler_hourly": 0.5}
    cost, hourly, _ = model.cost_at(spans, 0.0, 3600.0, pricing)
    assert cost == pytest.approx(0.5 * 1.0 + 1 * 3.0 + 1 * 0.5)
    assert hourly == pytest.approx(3.0 + 0.5)  # the default worker has left
    unknown = {"worker_hourly": {"default": None, "gpu": 3.0}, "scheduler_hourly": 0.5}
    cost, hourly, note = model.cost_at(spans, 0.0, 1000.0, unknown)
    assert cost is None and hourly is None and "no price" in note  # default is still there
    _, hourly, _ = model.cost_at(spans, 0.0, 2000.0, unknown)
    assert hourly == pytest.approx(3.5)  # …and once it has left, the rate is known again


def test_event_lines_cover_decisions_and_drift_only() -> None:
    def ev(kind: str, **data: object) -> Event:
        return Event("r", 110.0, kind, str(data.get("name")) if "name" in data else None, data)

    up = model.event_line("1", ev("scale_decision", group="gpu", **{"from": 1, "to": 3},
                                  reason="+2: busy"), start=100.0)
    assert up is not None and up.kind == "scale" and up.offset == 10.0
    assert up.text == "gpu: 1 → 3 workers  +2: busy"
    lost = model.event_line("2", ev("worker_removed", name="w1", reason="lost",
                                    processing_tasks=1), 100.0)
    assert lost is not None and (lost.kind, lost.text) == ("drift",
                                                           "lost worker w1 (1 task rescheduled)")
    expired = model.event_line("3", ev("worker_removed", name="w2", reason="walltime"), 100.0)
    assert expired is not None and expired.text == "job expired: w2 reached its walltime"
    assert model.event_line("4", ev("worker_removed", name="w3", reason="retired"), 100) is None
    assert model.event_line("5", ev("worker_added", name="w4"), 100.0) is None
    pre = model.event_line("6", ev("worker_preempted", name="w5", reason="spot-interruption",
                                   notice_seconds=118.4, retired=True), 100.0)
    assert pre is not None and (pre.kind, pre.text) == (
        "drift", "preempted: w5 (spot-interruption, 118s notice); data moved off")


# -- replays of the synthetic run --------------------------------------------------------


@pytest.fixture
def replay(tmp_path: Path) -> ReplaySource:
    db = synthetic.write(tmp_path)
    run = db.run(synthetic.RUN_ID)
    assert run is not None
    return ReplaySource(db, run)


def test_replay_at_the_end_matches_the_report(replay: ReplaySource) -> None:
    snap = replay.snapshot(replay.end)
    assert snap.mode == "replay" and snap.status == "replay 100%"
    assert snap.uptime == synthetic.END
    assert [w.name for w in snap.workers] == ["workers.default[2]"]
    assert snap.workers[0].host == "10.0.0.13" and snap.workers[0].memory_limit == 8 * 2**30
    work = {t.tag: (t.done, t.failed, t.processing, t.queued) for t in snap.work}
    assert work == {"analysis": (97, 3, 0, None), "io": (40, 0, 0, None)}
    # Cost: 309 worker-seconds and 120 scheduler-seconds at the recorded prices.
    expect = (309 * synthetic.WORKER_HOURLY + 120 * synthetic.SCHEDULER_HOURLY) / 3600
    assert snap.cost_usd == pytest.approx(expect)
    report = build_report(replay.db, replay.run)
    assert report.cost.usd == pytest.approx(snap.cost_usd)
    assert snap.hourly_usd == pytest.approx(synthetic.WORKER_HOURLY + synthetic.SCHEDULER_HOURLY)
    assert [ln.kind for ln in snap.log] == ["step", "scale", "step", "drift", "drift", "scale"]
    assert snap.log[1].text == f"default: 2 → 4 workers  {synthetic.UP_REASON}"
    assert snap.log[1].offset == 30.0
    (group,) = snap.groups
    assert (group.name, group.desired, group.ready, group.pending) == ("default", 2, 1, None)


def test_replay_in_the_middle(replay: ReplaySource) -> None:
    at = synthetic.T0 + 60
    snap = replay.snapshot(at)
    assert len(snap.workers) == 4
    assert snap.status == "replay 50%"
    assert snap.hourly_usd == pytest.approx(4 * synthetic.WORKER_HOURLY
                                            + synthetic.SCHEDULER_HOURLY)
    # Only what had happened by then: the scale-up, not the loss at +70 s.
    assert [ln.kind for ln in snap.log] == ["step", "scale", "step"]
    running = sum(1 for t in synthetic.tasks() if t[4] <= at < t[5])
    assert sum(t.processing or 0 for t in snap.work) == running
    assert sum(w.processing or 0 for w in snap.workers) == running
    done_recently = sum(1 for t in synthetic.tasks()
                        if t[6] == "ok" and at - 10 <= t[5] <= at)
    assert sum(t.rate or 0 for t in snap.work) == pytest.approx(done_recently / 10)
    (group,) = snap.groups
    assert group.desired == 4 and group.ready == 4
    # The sparkline's last slices see four workers, the first ones none yet (or -1).
    assert group.history[-1] == 4 and group.history[0] == -1


def test_replay_seek_is_clamped(replay: ReplaySource) -> None:
    replay.seek(0)
    assert replay.at == replay.start and replay.poll().status == "replay 0%"
    replay.seek(1e12)
    assert replay.at == replay.end


# -- scale requests that must be refused before anything is planned ------------------------


def _workspace(root: Path, body: str) -> Workspace:
    (root / "scalable.yaml").write_text(body)
    return Workspace.open(root / "scalable.yaml", "local")


def test_fixed_group_request_explains_that_the_manifest_owns_it(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, "targets:\n  local:\n    provider: local\n    max_workers: 2\n")
    with pytest.raises(ScaleRefused) as err:
        preview(ws, "default", +1)
    assert "fixed size (max_workers: 2) that scalable.yaml owns" in err.value.message
    assert err.value.hint is not None and "scalable apply" in err.value.hint


def test_adaptive_request_without_a_scheduler_is_refused(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, "targets:\n  local:\n    provider: local\n"
                              "    adaptive: {minimum: 1, maximum: 3}\n")
    with pytest.raises(ScaleRefused) as err:
        preview(ws, "default", +1)
    assert "has no scheduler" in err.value.message
    with pytest.raises(ScaleRefused, match="no group 'gpu'"):
        preview(ws, "gpu", +1)


# -- Engine.scale: naming one group leaves the others alone ---------------------------------


def test_engine_scale_keeps_the_other_groups_counts(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, """
targets:
  local:
    provider: local
    groups:
      energy: {tags: [energy], adaptive: {minimum: 1, maximum: 4}}
      land: {tags: [land], adaptive: {minimum: 1, maximum: 4}}
""")
    store = LocalStore(tmp_path / ".scalable" / "local")
    provider = FakeProvider(ws.spec, store.folder)
    provider.world = World()
    engine = Engine(provider, store)
    engine.execute(engine.plan(), wait=False)
    seen = Collect()
    engine.hooks = seen
    engine.scale({"energy": 3}, {"energy": "busy"})
    engine.scale({"land": 2}, {"land": "manual"})
    state = store.read()
    assert state is not None and state.scale == {"energy": 3, "land": 2}
    decisions = [e for e in seen.events if isinstance(e, ScaleDecision)]
    assert [(d.group, d.from_, d.to) for d in decisions] == [("energy", 1, 3), ("land", 1, 2)]
    groups = [r.group for r in state.resources if r.group]
    assert groups.count("energy") == 3 and groups.count("land") == 2


# -- the probe (one function, over a stand-in for the scheduler's state) ----------------


def _scheduler(queued: int, per_worker: int) -> object:
    from types import SimpleNamespace as NS

    def task(tag: str | None) -> object:
        return NS(annotations={"tag": tag} if tag else {})

    workers = {
        f"tcp://h{i}:1": NS(name=f"workers.default[{i}]", address=f"tcp://h{i}:1", host=f"h{i}",
                            nthreads=2, memory=NS(process=100 + i), memory_limit=1000,
                            metrics={"cpu": 12.5},
                            processing=[task("io") for _ in range(per_worker)])
        for i in range(2)
    }
    return NS(workers=workers, queued=[task("analysis" if k % 4 else None)
                                       for k in range(queued)],
              unrunnable=[task("gpu")], task_groups={"g": NS(states={"waiting": 7})},
              tasks=dict.fromkeys(range(queued + 2 * per_worker + 1)), address="tcp://s:1")


def test_probe_counts_per_tag_and_scales_past_its_cap() -> None:
    from scalable.tui.probe import snapshot

    snap = snapshot(_scheduler(queued=40, per_worker=3))
    assert snap["workers"][1] == ["workers.default[1]", "tcp://h1:1", "h1", 2, 101, 1000, 3,
                                  12.5]
    assert snap["tags"] == {"io": [0, 6], "analysis": [30, 0], "": [10, 0], "gpu": [1, 0]}
    assert (snap["queued"], snap["processing"], snap["waiting"]) == (41, 6, 7)
    assert not snap["capped"]
    # Cap at 26 tasks: all 6 processing and the first 20 queued are read, then scaled.
    capped = snapshot(_scheduler(queued=40, per_worker=3), max_tasks=26)
    assert capped["capped"] and capped["queued"] == 41
    assert capped["tags"]["io"] == [0, 6]
    assert capped["tags"]["analysis"][0] + capped["tags"][""][0] == 41


def test_probe_ships_by_value_to_a_scheduler_without_scalable(tmp_path: Path) -> None:
    """What the dashboard sends runs where ``import scalable`` fails (a bare Dask image)."""
    import subprocess
    import sys

    import cloudpickle
    from distributed.protocol.pickle import dumps
    from scalable.tui import probe

    cloudpickle.register_pickle_by_value(probe)
    (tmp_path / "install.pkl").write_bytes(dumps(probe.install))
    code = f"""
import pickle, sys
from types import SimpleNamespace as NS
sys.modules["scalable"] = None  # any import of scalable now fails
install = pickle.loads(open({str(tmp_path / "install.pkl")!r}, "rb").read())
s = NS(handlers={{}}, workers={{}}, queued=[], unrunnable=[], task_groups={{}}, tasks={{}},
       address="tcp://s:1")
first = install(s)
again = s.handlers["scalable_dashboard_snapshot"]()
print(first["queued"], again["address"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "tcp://s:1"]


def test_budget_view_follows_the_guard_and_the_spend() -> None:
    def ev(ts: float, kind: str, **data: object) -> Event:
        return Event("r", ts, kind, None, data)

    events = [ev(1.0, "objective_plan", budget_usd=100.0, on_budget="destroy", workers=2)]
    assert model.budget_view([], 5.0) is None  # no budget: no bar
    view = model.budget_view(events, 42.0)
    assert view is not None and (view.level, view.share) == ("ok", 0.42)
    assert model.budget_view(events, 91.0).level == "held"  # type: ignore[union-attr]
    events.append(ev(2.0, "budget_warning", budget_usd=100.0, spent_usd=80.5, reason="80%"))
    assert model.budget_view(events, 85.0).level == "warning"  # type: ignore[union-attr]
    events.append(ev(3.0, "budget_exhausted", budget_usd=100.0, spent_usd=99.2,
                     reason="next 1 s", on_budget="destroy"))
    done = model.budget_view(events, 104.0)
    assert done is not None and done.level == "exhausted" and done.on_budget == "destroy"
    assert done.share == pytest.approx(0.992)  # the guard's figure at the stop
    # Replays: the picture at a moment before the stop.
    early = model.budget_view(events, 50.0, until=2.5)
    assert early is not None and early.level == "warning"
    assert model.budget_bar(0.5, 10) == "█████░░░░░" and model.budget_bar(1.7, 4) == "████"
    line = model.event_line("9", events[-1], 0.0)
    assert line is not None and line.kind == "error"
    assert line.text == "budget exhausted: next 1 s"
