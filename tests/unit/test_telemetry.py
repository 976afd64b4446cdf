"""Telemetry without Dask processes: the store, the report's arithmetic, the plugin's rules."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scalable.addrs import group_of
from scalable.cli import main
from scalable.events import RESOURCE_CREATED, RESOURCE_DELETED, RESOURCE_DELETING
from scalable.hooks import Hooks
from scalable.payloads import ResourceStep, StepStarted
from scalable.state.model import StateFile
from scalable.telemetry.plugin import TelemetryConfig, TelemetryPlugin, removal_reason
from scalable.telemetry.recorder import RunRecorder
from scalable.telemetry.report import (
    available_thread_seconds,
    build_report,
    compute_cost,
    quantile,
    render_report,
    render_run_list,
    report_to_dict,
    tag_stats,
    worker_stats,
)
from scalable.telemetry.store import (
    Aggregate,
    TaskRow,
    TelemetryDB,
    WorkerSpan,
    bucket_of,
    bucket_value,
    new_run_id,
    timeline,
)
from scalable.workspace import Workspace


def span(name: str, start: float, stop: float | None, threads: int = 1) -> WorkerSpan:
    return WorkerSpan(name, f"tcp://{name}", threads, start, stop, None)


# -- arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 1.0])
def test_quantile_matches_numpy_for_unit_weights(q: float) -> None:
    values = [0.3, 1.7, 0.2, 5.0, 2.2, 2.2, 0.9]
    assert quantile([(v, 1) for v in values], q) == pytest.approx(np.quantile(values, q))


def test_weighted_quantile_is_repetition() -> None:
    expanded = [1.0] * 3 + [2.0] * 5 + [10.0] * 2
    weighted = [(1.0, 3), (10.0, 2), (2.0, 5)]
    for q in (0.1, 0.5, 0.8, 0.95):
        assert quantile(weighted, q) == pytest.approx(np.quantile(expanded, q))
    assert quantile([], 0.5) is None
    assert quantile([(4.0, 0)], 0.5) is None


def test_worker_stats_peak_and_time_weighted_average() -> None:
    spans = [span("a", 0, 10), span("b", 2, 6), span("c", 4, None)]
    # 0-2: 1, 2-4: 2, 4-6: 3, 6-10: 2 → area 2+4+6+8 = 20 over 10 s.
    assert worker_stats(spans, 0, 10) == (3, pytest.approx(2.0))
    # Clipped to a window: 5-8 → b 5-6, a and c throughout: area 3+3+1 = 7 over 3 s.
    assert worker_stats(spans, 5, 8) == (3, pytest.approx(7 / 3))
    assert worker_stats([], 0, 10) == (0, 0.0)


def test_available_thread_seconds_counts_threads_and_clips() -> None:
    spans = [span("a", -5, 5, threads=2), span("b", 8, 20, threads=4), span("c", 3, None)]
    # a: 2 × (0..5) = 10; b: 4 × (8..10) = 8; c: 1 × (3..10) = 7.
    assert available_thread_seconds(spans, 0, 10) == pytest.approx(25)


def test_cost_is_worker_hours_times_price() -> None:
    spans = [span("workers.cpu[0]", 0, 3600), span("workers.gpu[0]", 0, 1800)]
    pricing = {"worker_hourly": {"cpu": 0.10, "gpu": 2.0}, "scheduler_hourly": 0.05,
               "source": "test catalog"}
    cost = compute_cost(spans, 0, 3600, pricing)
    assert cost.worker_hours == pytest.approx(1.5)
    assert cost.usd == pytest.approx(0.10 + 1.0 + 0.05)
    assert cost.source == "test catalog"

    unknown = compute_cost(spans, 0, 3600, {"worker_hourly": {"cpu": 0.1, "gpu": None},
                                            "scheduler_hourly": 0.0, "notes": ["no gpu"]})
    assert unknown.usd is None and "workers.gpu[0]" in unknown.note and "no gpu" in unknown.note
    assert compute_cost(spans, 0, 3600, None).usd is None


def test_group_of_worker_names() -> None:
    assert group_of("workers.default[3]") == "default"
    assert group_of("workers.land-use[0]-2") == "land-use"
    assert group_of("tcp://1.2.3.4:5") is None


def test_tag_stats_combines_rows_and_aggregates() -> None:
    rows = [TaskRow("r", f"k{i}", "f", "a", "w", 0.0, float(i), "ok") for i in range(1, 6)]
    rows.append(TaskRow("r", "bad", "f", "a", "w", 0.0, 1.0, "error"))
    rows.append(TaskRow("r", "u", "g", None, "w", 0.0, 0.5, "ok"))
    agg = Aggregate("f", "a", "ok")
    for _ in range(5):
        agg.add(10.0)
    failed = Aggregate("f", "a", "killed", count=2)
    stats = {s.tag: s for s in tag_stats(rows, [agg, failed])}
    assert stats["a"].count == 10 and stats["a"].failed == 3
    # 1..5 and five values of ~10 (histogram): the median sits between 5 and ~10.
    assert stats["a"].median == pytest.approx((5 + bucket_value(bucket_of(10.0))) / 2)
    assert stats[None].count == 1 and stats[None].median == pytest.approx(0.5)


def test_histogram_buckets_are_within_six_percent() -> None:
    for v in (2e-6, 0.0123, 0.5, 1.0, 7.3, 4000.0):
        assert bucket_value(bucket_of(v)) == pytest.approx(v, rel=0.06)


# -- the store ---------------------------------------------------------------------------


def test_run_id_shape() -> None:
    rid = new_run_id("demeter lulcc/x", when=1779272100.0)  # 2026-05-20T10:15:00Z
    assert re.fullmatch(r"run-20260520T101500-demeter-lulcc-x-[0-9a-f]{6}", rid), rid


def test_database_is_wal_private_and_versioned(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    db.start_run(project="p", target="t", provider="local")
    assert db.path == tmp_path / ".scalable" / "telemetry.db"
    assert (db.path.stat().st_mode & 0o777) == 0o600
    conn = sqlite3.connect(db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        TelemetryDB(db.path).runs()


def test_tasks_upsert_counts_a_key_once(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="t", provider="local")
    db.write_batch(run.id, tasks=[("k1", "f", "x", "w1", 1.0, 2.0, "ok"),
                                  ("k2", "f", "x", "w1", 1.0, 3.0, "error")])
    # k1 recomputed elsewhere after its worker was lost: one row, last outcome.
    db.write_batch(run.id, tasks=[("k1", "f", "x", "w2", 5.0, 5.5, "ok")])
    rows = {t.key: t for t in db.tasks(run.id)}
    assert len(rows) == 2 and rows["k1"].worker == "w2" and rows["k1"].duration == 0.5
    assert db.task_counts(run.id) == {"ok": 1, "error": 1}


def test_apply_pull_stores_each_record_once(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="t", provider="aws", source="pulled")
    events = [(float(i), "worker_added", f"w{i}", {"address": f"a{i}", "nthreads": 1})
              for i in range(4)]
    tasks = [(f"k{i}", "f", None, "w0", 0.0, 1.0, "ok") for i in range(3)]
    db.apply_pull(run.id, since=(0, 0), cursor=(3, 2), events=events[:3], tasks=tasks[:2],
                  aggregates=[])
    assert db.pull_cursor(run.id) == (3, 2)
    # A second puller that started from an older cursor overlaps the first one.
    db.apply_pull(run.id, since=(1, 1), cursor=(4, 3), events=events[1:], tasks=tasks[1:],
                  aggregates=[Aggregate("f", None, "ok", count=5, total_seconds=5.0)])
    assert [e.worker for e in db.events(run.id)] == ["w0", "w1", "w2", "w3"]
    assert len(db.tasks(run.id)) == 3
    assert db.task_counts(run.id) == {"ok": 8}
    assert db.pull_cursor(run.id) == (4, 3)


def test_task_durations_across_runs_with_aggregates_and_limit(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    r1 = db.start_run(project="p", target="hpc", provider="slurm", started_at=1.0)
    r2 = db.start_run(project="p", target="hpc", provider="slurm", started_at=2.0)
    other = db.start_run(project="p", target="local", provider="local", started_at=3.0)
    db.write_batch(r1.id, tasks=[("a", "sim", "x", "w", 0.0, 2.0, "ok"),
                                 ("b", "sim", "y", "w", 0.0, 9.0, "ok"),
                                 ("c", "sim", "x", "w", 0.0, 1.0, "error")])
    agg = Aggregate("sim", "x", "ok")
    for _ in range(3):
        agg.add(4.0)
    db.write_batch(r2.id, aggregates=[agg])
    db.write_batch(other.id, tasks=[("a", "sim", "x", "w", 0.0, 100.0, "ok")])
    got = sorted(db.task_durations("hpc", tag="x"))
    assert got[0] == 2.0 and len(got) == 4
    assert got[1:] == pytest.approx([4.0] * 3, rel=0.06)
    assert sorted(db.task_durations("hpc", prefix="sim")) [-1] == 9.0
    assert len(db.task_durations("hpc")) == 5
    assert db.task_durations("hpc", tag="nope") == []
    assert len(db.task_durations("hpc", limit=2)) == 2
    assert [r.id for r in db.runs()] == [other.id, r2.id, r1.id]
    assert db.last_run("hpc") == db.run(r2.id)


def test_worker_spans_and_timeline(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="t", provider="local", started_at=0.0)
    db.record_events(run.id, [
        (1.0, "worker_added", "w0", {"address": "a0", "nthreads": 2}),
        (2.0, "worker_added", "w1", {"address": "a1", "nthreads": 1}),
        (5.0, "worker_removed", "w0", {"address": "a0", "reason": "lost"}),
        (6.0, "worker_added", "w0", {"address": "a2", "nthreads": 2}),
    ])
    spans = db.worker_spans(run.id)
    assert [(s.name, s.start, s.stop, s.reason) for s in spans] == [
        ("w0", 1.0, 5.0, "lost"), ("w1", 2.0, None, None), ("w0", 6.0, None, None)]
    points = [(p.ts, p.workers, p.threads) for p in db.worker_timeline(run.id)]
    assert points == [(1.0, 1, 2), (2.0, 2, 3), (5.0, 1, 1), (6.0, 2, 3)]
    closed = timeline(spans, end=10.0)
    assert (closed[-1].ts, closed[-1].workers) == (10.0, 0)


# -- the report: exactly the documented shape -----------------------------------------------


def test_report_renders_the_issue_shape(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(run_id="run-20260520T101500-demeter-lulcc-abc123", project="demeter",
                       target="local", provider="local", started_at=1000.0)
    # Four 1-thread workers from +2.48 s to the end at +12.4 s: avg 4 × 9.92 / 12.4 = 3.2.
    db.record_events(run.id, [
        (1002.48, "worker_added", f"workers.default[{i}]",
         {"address": f"tcp://w{i}", "nthreads": 1}) for i in range(4)
    ] + [(1012.4, "worker_removed", f"workers.default[{i}]",
          {"address": f"tcp://w{i}", "reason": "retired"}) for i in range(4)]
      + [(1003.0, "scale_decision", None, {"from": 2, "to": 4, "reason": "queue of 20 tasks"}),
         (1000.5, "pricing", None, {"worker_hourly": {"default": 0.0},
                                    "scheduler_hourly": 0.0, "source": "local machine"})])
    # 20 tasks × 1.7261 s = 34.52 busy thread-s of 39.68 available: 87%.
    db.write_batch(run.id, tasks=[
        (f"f-{i}", "f", "analysis", f"workers.default[{i % 4}]", 1003.0, 1004.7261, "ok")
        for i in range(20)])
    db.end_run(run.id, 1012.4)
    rep = build_report(db, db.run(run.id))  # type: ignore[arg-type]
    text = render_report(rep)
    assert text.splitlines()[:6] == [
        "Run: run-20260520T101500-demeter-lulcc-abc123",
        "Target: local (provider: local)",
        "Workers: peak=4, avg=3.2",
        "Tasks: 20 completed, 0 failed",
        "Duration: 12.4s",
        "Efficiency: 87% (worker utilization)",
    ]
    assert "  analysis       20       0     1.7s     1.7s" in text
    assert "  +3.0s     2 → 4 workers  queue of 20 tasks" in text
    assert "Workers removed: 4 retired" in text
    assert "Cost: $0.00 (0.011 worker-hours; prices: local machine)" in text
    doc = report_to_dict(rep)
    assert doc["efficiency"] == pytest.approx(34.522 / 39.68, rel=1e-3)
    assert doc["scaling_decisions"][0]["from"] == 2
    json.dumps(doc)


# -- the plugin's rules (one function at a time) ----------------------------------------------


@pytest.mark.parametrize(("stimulus", "expected", "closing", "reason"), [
    ("retire-workers-1.0", True, None, "retired"),
    ("handle-worker-cleanup-1.0", False, None, "lost"),
    ("nanny-close-1.0", False, None, "lost"),
    ("handle-worker-cleanup-1.0", False, "scheduler-close-worker", "retired"),
    ("worker-close-gracefully-1.0", True, None, None),
    ("worker-close-gracefully-1.0", True, "worker-lifetime-reached", "walltime"),
])
def test_removal_reason(stimulus: str, expected: bool, closing: str | None,
                        reason: str | None) -> None:
    assert removal_reason(stimulus, expected, closing) == reason


def test_config_from_env(tmp_path: Path) -> None:
    state = tmp_path / ".scalable" / "local"
    state.mkdir(parents=True)
    cfg = TelemetryConfig.from_env({"SCALABLE_STATE_DIR": str(state), "SCALABLE_PROJECT": "p",
                                    "SCALABLE_TARGET": "local", "SCALABLE_PROVIDER": "local"})
    assert cfg.mode == "db" and cfg.db_path == tmp_path / ".scalable" / "telemetry.db"
    assert (cfg.project, cfg.target, cfg.provider) == ("p", "local", "local")
    assert TelemetryConfig.from_env({}).mode == "memory"  # no state folder: a remote host
    assert TelemetryConfig.from_env({"SCALABLE_STATE_DIR": "/nonexistent/x"}).mode == "memory"
    assert TelemetryConfig.from_env({"SCALABLE_STATE_DIR": str(state),
                                     "SCALABLE_TELEMETRY": "memory"}).db_path is None
    assert TelemetryConfig.from_env({"SCALABLE_TELEMETRY": "off"}).mode == "off"


def test_plugin_folds_tasks_past_the_row_limit_and_counts_recomputes_once() -> None:
    plugin = TelemetryPlugin(TelemetryConfig("memory", "p", "t", "local", None,
                                             max_task_rows=2))
    for i in range(5):
        plugin._task_done(f"k{i}", "f", "x", "w", 0.0, 1.0, "ok")
    plugin._task_done("k0", "f", "x", "w", 0.0, 2.0, "ok")  # has a row: updated, not added
    # k3 finished past the limit; its result is lost with a worker and it runs again.
    plugin.log_event("all", {"action": "remove-worker", "worker": "tcp://w",
                             "lost-computed-tasks": {"k3"}, "expected": False})
    plugin._task_done("k3", "f", "x", "w", 0.0, 3.0, "ok")
    plugin._flush()
    assert [t[0] for t in plugin._log_tasks] == ["k0", "k1", "k0"]
    (agg,) = plugin._aggs.values()
    assert agg.count == 3 and agg.total_seconds == pytest.approx(6.0)
    pulled = plugin.pull(since_events=0, since_tasks=1)
    assert [t[0] for t in pulled["tasks"]] == ["k1", "k0"] and pulled["cursor"] == [0, 3]
    assert plugin.pull()["run"]["id"] == plugin.run_id and plugin.pull()["events"] == []


# -- the recorder and the CLI ----------------------------------------------------------------


def test_recorder_off_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "project: {name: p}\ntargets:\n  local: {provider: local, max_workers: 1}\n")
    ws = Workspace.open(tmp_path / "scalable.yaml", "local")
    hooks = ws.engine().hooks
    assert isinstance(hooks, Hooks) and isinstance(hooks.hooks[-1], RunRecorder)
    monkeypatch.setenv("SCALABLE_TELEMETRY", "off")
    ws.engine().hooks.event(StepStarted(destroy=False, changes=1))
    assert not TelemetryDB.for_root(tmp_path).exists


def test_recorder_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "scalable.yaml").write_text(
        "project: {name: p}\ntargets:\n  local: {provider: local, max_workers: 1}\n")
    ws = Workspace.open(tmp_path / "scalable.yaml", "local")
    rec = RunRecorder(ws)
    ws.store.write(StateFile(target="local", provider="local",
                             outputs={"scheduler_address": "tcp://127.0.0.1:1"}))
    (tmp_path / ".scalable" / "telemetry.db").write_text("not a database" * 100)
    rec.event(ResourceStep(RESOURCE_CREATED, "workers.default[0]", "t"))  # logs, never raises
    assert "could not record" in caplog.text


def test_scheduler_delete_asks_nothing_of_a_run_its_plugin_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A destroy that stops the scheduler with its workers finds the run already ended
    by the plugin: no pull (a Client to a closed scheduler waits out its timeout)."""
    (tmp_path / "scalable.yaml").write_text(
        "project: {name: p}\ntargets:\n  local: {provider: local, max_workers: 1}\n")
    ws = Workspace.open(tmp_path / "scalable.yaml", "local")
    addr = "tcp://127.0.0.1:1"
    ws.store.write(StateFile(target="local", provider="local",
                             outputs={"scheduler_address": addr}))
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="local", provider="local",
                       scheduler_address=addr, source="plugin")
    pulls: list[str] = []
    monkeypatch.setattr("scalable.telemetry.recorder.pull",
                        lambda db, address, security=None, **kw: pulls.append(address))
    rec = RunRecorder(ws)
    rec.event(StepStarted(destroy=True, changes=2))
    db.end_run(run.id, 1.0)  # the plugin, as its scheduler closed
    rec.event(ResourceStep(RESOURCE_DELETING, "workers.default[0]", "t"))
    rec.event(ResourceStep(RESOURCE_DELETING, "scheduler", "t"))
    assert pulls == []
    rec.event(ResourceStep(RESOURCE_DELETED, "scheduler", "t"))
    # The steps still land in the run the plugin ended.
    assert len(db.events(run.id, ["resource_deleting"])) == 2
    assert pulls == []


def test_report_cli_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: no telemetry recorded yet") and "hint:" in err
    db = TelemetryDB.for_root(tmp_path)
    db.start_run(project="p", target="t", provider="local", run_id="run-1-p-aaaaaa")
    db.start_run(project="p", target="t", provider="local", run_id="run-1-p-aaaaab")
    assert main(["report", "--run", "nope"]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["report", "--run", "run-1-p-aaaaa"]) == 1
    assert "matches 2 runs" in capsys.readouterr().err
    assert main(["report", "--list", "--last"]) == 1
    assert main(["report", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in listed["runs"]} == {"run-1-p-aaaaaa", "run-1-p-aaaaab"}
    assert main(["report", "--run", "run-1-p-aaaaab"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Run: run-1-p-aaaaab\n") and "Tasks: 0 completed, 0 failed" in out


def test_objective_planner_reads_task_history(tmp_path: Path) -> None:
    from scalable.scaling.objectives import estimate_for, history

    (tmp_path / "scalable.yaml").write_text(
        "project: {name: p}\ntargets:\n  local: {provider: local, max_workers: 4}\n")
    spec = Workspace.open(tmp_path / "scalable.yaml", "local").spec
    assert history(spec, "sim") == []
    assert not TelemetryDB.for_root(tmp_path).exists  # reading never creates it
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="local", provider="local")
    db.write_batch(run.id, tasks=[(f"k{i}", "f", "sim", "w", 0.0, 1.0 + i, "ok")
                                  for i in range(5)])
    assert sorted(history(spec, "sim")) == [1.0, 2.0, 3.0, 4.0, 5.0]
    est = estimate_for(spec, 100, "sim")
    assert est.source == "telemetry: 5 past tasks tagged 'sim' on local"
    assert est.task_seconds == 3.0


def test_report_sets_the_objective_beside_the_run(tmp_path: Path) -> None:
    db = TelemetryDB.for_root(tmp_path)
    run = db.start_run(project="p", target="local", provider="local", started_at=0.0)
    db.record_events(run.id, [(0.0, "objective_plan", None, {
        "group": "default", "workers": 3, "tasks": 6, "predicted_seconds": 10.0,
        "predicted_cost_usd": 0.5, "task_seconds": 4.0, "source": "manifest workload",
        "budget_usd": 1.0, "deadline_hours": 0.01})])
    db.write_batch(run.id, tasks=[(f"k{i}", "f", None, "w", 1.0, 9.0, "ok") for i in range(6)])
    db.end_run(run.id, 12.0)
    text = render_report(build_report(db, db.run(run.id)))  # type: ignore[arg-type]
    assert text.splitlines()[-3:] == [
        "Objective: deadline 0.01 h, budget $1.00 for 6 tasks → 3 workers (group default)",
        "  predicted: 10.0s, $0.50  (task time 4.0s mean; manifest workload)",
        "  actual:    9.0s from asking for capacity to the last task (-10% vs predicted), "
        "unknown",
    ]
    # --list shows the same error per run.
    assert "-10%" in render_run_list(db, [db.run(run.id)])  # type: ignore[list-item]


def test_database_from_before_last_seen_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / ".scalable" / "telemetry.db"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE runs(id TEXT PRIMARY KEY, project TEXT NOT NULL, target TEXT NOT NULL,
            provider TEXT NOT NULL, manifest_digest TEXT, scheduler_address TEXT,
            started_at REAL NOT NULL, ended_at REAL, source TEXT NOT NULL DEFAULT 'plugin');
        INSERT INTO runs VALUES ('run-old', 'p', 't', 'local', NULL, NULL, 1.0, 2.0, 'plugin');
    """)
    old.commit()
    old.close()
    reader = TelemetryDB(path, readonly=True)  # a reader cannot add the column: copes
    assert [r.last_seen for r in reader.runs()] == [None]
    reader.close()
    db = TelemetryDB(path)
    run = db.run("run-old")
    assert run is not None and run.last_seen is None and run.ended_at == 2.0
    db.write_batch("run-old", last_seen=1.5)
    assert db.run("run-old").last_seen == 1.5  # type: ignore[union-attr]


def test_report_shows_preemptions_and_the_work_they_cost(tmp_path: Path) -> None:
    from scalable.events import WORKER_PREEMPTED, WORKER_REMOVED
    from scalable.payloads import WorkerPreempted
    from scalable.telemetry.report import build_report, render_report, report_to_dict

    db = TelemetryDB(tmp_path / "t.db")
    run = db.start_run(project="p", target="t", provider="aws", started_at=1000.0)
    pre = WorkerPreempted(address="tcp://a:1", name="w0", reason="spot-interruption",
                          notice_seconds=118.0, retired=True, retire_seconds=1.5)
    db.write_batch(run.id, events=[
        (1000.0, "worker_added", "w0", {"address": "tcp://a:1", "name": "w0"}),
        (1010.0, WORKER_PREEMPTED, "w0", pre.to_data()),
        (1012.0, WORKER_REMOVED, "w0", {"address": "tcp://a:1", "reason": "retired",
                                        "processing_tasks": 3, "lost_results": 0}),
    ])
    r = build_report(db, run, end=1100.0)
    assert [(p.worker, p.reason, p.rerun_tasks, p.lost_results) for p in r.preemptions] == [
        ("w0", "spot-interruption", 3, 0)]
    text = render_report(r)
    assert "Preemptions:" in text and "w0  spot-interruption" in text
    assert "3 task(s) re-run" in text and "data moved" in text
    assert report_to_dict(r)["preemptions"][0]["notice_seconds"] == 118.0


def test_report_lists_capacity_failovers(tmp_path: Path) -> None:
    """A create that took a fallback (EC2 instance type / subnet) is in the report: what
    was obtained and each refusal before it; ``report --json`` has ``failovers``."""
    from scalable.engine import _obtained

    meta = {"instance_id": "i-1", "instance_type": "c5.xlarge", "subnet": "subnet-a",
            "failover": ["c5.2xlarge in subnet-b: InsufficientInstanceCapacity"]}
    assert _obtained({"instance_id": "i-2", "instance_type": "c5.2xlarge"}) is None
    step = ResourceStep(RESOURCE_CREATED, "workers.burst[0]", "aws.ec2_instance", "i-1",
                        obtained=_obtained(meta))
    db = TelemetryDB.for_root(tmp_path)
    db.start_run(run_id="run-x", project="p", target="cloud", provider="aws",
                 scheduler_address="tls://10.0.0.5:8786", started_at=1000.0)
    db.write_batch("run-x", events=[(1010.0, RESOURCE_CREATED, None, step.to_data())])
    db.end_run("run-x", 1100.0)
    run = db.run("run-x")
    assert run is not None
    r = build_report(db, run)
    assert r.failovers == [{"ts": 1010.0, "address": "workers.burst[0]",
                            "instance_type": "c5.xlarge", "subnet": "subnet-a",
                            "failover": meta["failover"]}]
    text = render_report(r)
    assert ("workers.burst[0]: c5.xlarge in subnet-a after c5.2xlarge in subnet-b: "
            "InsufficientInstanceCapacity") in text
    assert report_to_dict(r)["failovers"] == r.failovers
