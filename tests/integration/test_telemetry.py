"""Telemetry end to end: real schedulers with the plugin, real workers, real reports."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from distributed import Client
from scalable import ScalableSession
from scalable.telemetry.report import build_report
from scalable.telemetry.store import TelemetryDB

from tests.conftest import Project, our_processes
from tests.integration.test_docs import DOCS, python_blocks

pytestmark = pytest.mark.slow


def manifest(workers: int, *, threads: int = 1, processes: bool = True, extra: str = "",
             project: str = "demeter-lulcc") -> str:
    return f"""
        project: {{name: {project}}}
        targets:
          local:
            provider: local
            max_workers: {workers}
            threads_per_worker: {threads}
            processes: {str(processes).lower()}
            containers: none
        {extra}
        """


def db_of(project: Project) -> TelemetryDB:
    return TelemetryDB.for_root(project.root)


def test_tutorial_snippet_report(project: Project, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The tutorial's 20 tagged tasks → 20 completed, 0 failed, peak 4, tag 'analysis'."""
    project.write(manifest(4, threads=2, processes=False))
    monkeypatch.chdir(project.root)

    def my_func(i: int) -> int:
        return i * i

    session = ScalableSession.from_yaml("./scalable.yaml", target="local")
    plan = session.plan()
    client = session.start(plan)
    futures = [client.submit(my_func, i, tag="analysis") for i in range(20)]
    results = client.gather(futures)
    session.close()
    assert results == [i * i for i in range(20)]
    assert our_processes(project.root) == []

    out = project.run("report", "--last", check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Run: run-") and "-demeter-lulcc-" in lines[0]
    assert lines[1] == "Target: local (provider: local)"
    assert lines[2].startswith("Workers: peak=4, avg=")
    assert lines[3] == "Tasks: 20 completed, 0 failed"
    assert lines[4].startswith("Duration: ") and "running" not in lines[4]
    assert lines[5].startswith("Efficiency: ") and lines[5].endswith("% (worker utilization)")
    tag_line = next(line for line in lines if line.strip().startswith("analysis"))
    assert tag_line.split()[1:3] == ["20", "0"]
    assert "Workers removed: 4 retired" in out
    assert "Cost: $0.00" in out

    doc = json.loads(project.run("report", "--last", "--json", check=True).stdout)
    assert doc["format_version"] == 1
    assert doc["tasks"] == {"completed": 20, "failed": 0}
    assert doc["workers"]["peak"] == 4 and 0 < doc["workers"]["avg"] <= 4
    assert doc["run"]["ended_at"] is not None and not doc["run"]["running"]
    assert doc["run"]["manifest_digest"]
    kinds = [s["kind"] for s in doc["steps"]]
    assert kinds[0] == "apply_start" and kinds[-1] == "destroy_complete"
    assert "resource_created" in kinds and "resource_deleted" in kinds
    (tag,) = doc["by_tag"]
    assert tag["tag"] == "analysis" and tag["count"] == 20

    db = db_of(project)
    run = db.last_run("local")
    assert run is not None
    assert len(db.tasks(run.id)) == 20
    assert {t.worker for t in db.tasks(run.id)} <= {f"workers.default[0]-{k}" for k in range(4)}
    assert len(db.task_durations("local", tag="analysis")) == 20

    # The guide's Python block runs against this project and prints this run.
    (block,) = python_blocks(DOCS / "guides" / "telemetry.rst")
    exec(compile(block, "telemetry.rst", "exec"), {"__name__": "__docs__"})
    assert f"Run: {run.id}" in capsys.readouterr().out


def test_failed_tasks_counted_and_rows_overflow_into_aggregates(project: Project) -> None:
    """A raising task and its dependent are failed; tasks past the row limit aggregate."""
    project.write(manifest(1, threads=2, processes=False, extra="""
            env:
              SCALABLE_TELEMETRY_MAX_TASK_ROWS: "10"
        """))
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()

        def boom(x: int) -> int:
            raise ValueError(f"bad input {x}")

        bad = client.submit(boom, 1, tag="fragile")
        downstream = client.submit(lambda x: x + 1, bad, tag="fragile")
        with pytest.raises(ValueError):
            downstream.result()
        ok = client.gather(client.map(lambda i: i + 1, range(30), tag="bulk"))
        assert sum(ok) == sum(range(1, 31))
        run_id = db_of(project).open_run("local").id  # type: ignore[union-attr]
    db = db_of(project)
    run = db.run(run_id)
    assert run is not None and run.ended_at is not None
    report = build_report(db, run)
    assert (report.completed, report.failed) == (30, 2)
    statuses = {t.key: t.status for t in db.tasks(run_id)}
    assert statuses[str(bad.key)] == "error" and statuses[str(downstream.key)] == "upstream"
    assert len(db.tasks(run_id)) == 10
    aggs = db.aggregates(run_id)
    assert sum(a.count for a in aggs) == 32 - 10
    by_tag = {s.tag: s for s in report.by_tag}
    assert by_tag["bulk"].count == 30 and by_tag["bulk"].median is not None
    assert by_tag["fragile"].failed == 2


def test_killed_worker_is_lost_and_its_task_counted_once(project: Project) -> None:
    project.write(manifest(2))
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()

        def nap(i: int) -> int:
            time.sleep(1.0)
            return i

        futures = client.map(nap, range(6), tag="naps")
        deadline = time.monotonic() + 30
        while sum(1 for keys in client.processing().values() if keys) < 2:
            assert time.monotonic() < deadline, "both workers never got work"
            time.sleep(0.05)
        time.sleep(0.3)  # let the tasks start computing
        victim = next(r for r in project.state()["resources"]
                      if r["address"] == "workers.default[1]")
        os.killpg(victim["meta"]["pid"], signal.SIGKILL)
        assert sorted(client.gather(futures)) == list(range(6))
        run_id = db_of(project).open_run("local").id  # type: ignore[union-attr]
    db = db_of(project)
    removed = [e for e in db.events(run_id, ["worker_removed"])
               if e.worker == "workers.default[1]"]
    assert len(removed) == 1
    assert removed[0].data["reason"] == "lost"
    assert removed[0].data["processing_tasks"] >= 1  # it had work, which was rescheduled
    report = build_report(db, db.run(run_id))  # type: ignore[arg-type]
    assert (report.completed, report.failed) == (6, 0)
    assert report.removed.get("lost") == 1
    assert sorted(t.key for t in db.tasks(run_id)) == sorted({t.key for t in db.tasks(run_id)})
    assert {t.worker for t in db.tasks(run_id)} <= {"workers.default[0]", "workers.default[1]"}


def test_efficiency_of_sleep_tasks_matches_the_arithmetic(project: Project) -> None:
    """2 workers × 1 thread, 8 tasks of 0.5 s: busy 4 thread-s over the workers' life."""
    project.write(manifest(2))
    n, nap_s = 8, 0.5
    t0 = time.time()
    session = ScalableSession.from_yaml(project.root / "scalable.yaml")
    client = session.start()
    t1 = time.time()

    def nap(i: int) -> int:
        time.sleep(nap_s)
        return i

    assert sorted(client.gather(client.map(nap, range(n)))) == list(range(n))
    t2 = time.time()
    session.close()
    t3 = time.time()
    db = db_of(project)
    run = db.last_run("local")
    assert run is not None and run.ended_at is not None
    report = build_report(db, run)
    busy_lo, busy_hi = n * nap_s, n * (nap_s + 0.1)
    assert busy_lo <= report.busy_thread_seconds <= busy_hi
    # Both workers were there from before start() returned until after the work ended,
    # and none was there before we began or after close() returned.
    avail_lo, avail_hi = 2 * (t2 - t1), 2 * (t3 - t0)
    assert avail_lo <= report.available_thread_seconds <= avail_hi
    eff = report.efficiency
    assert eff is not None
    assert busy_lo / avail_hi <= eff <= busy_hi / avail_lo
    assert report.peak_workers == 2
    assert 0 < report.avg_workers <= 2


def test_cli_run_with_a_remote_style_scheduler_is_pulled(project: Project) -> None:
    """Memory mode (as on a cloud VM): the CLI pulls on status, report and destroy."""
    project.write(manifest(2, extra="""
            env:
              SCALABLE_TELEMETRY: memory
        """))
    project.run("apply", "--auto-approve", check=True)
    db = db_of(project)
    run = db.open_run("local")
    assert run is not None and run.source == "pulled"  # learnt from the scheduler itself
    addr = project.state()["outputs"]["scheduler_address"]
    with Client(addr, timeout=10) as c:
        assert sum(c.gather(c.map(lambda x: x * 2, range(12)))) == 132
    assert db.tasks(run.id) == []  # nothing written by the scheduler itself

    status = project.run("status", check=True).stdout
    assert f"Run: {run.id}" in status
    assert len(db.tasks(run.id)) == 12  # status pulled them

    report = project.run("report", "--last", check=True).stdout
    assert "Tasks: 12 completed, 0 failed" in report and "(still running)" in report

    project.run("destroy", "--auto-approve", check=True)
    ended = db.run(run.id)
    assert ended is not None and ended.ended_at is not None
    removed = db.events(run.id, ["worker_removed"])
    assert sorted(e.data["reason"] for e in removed) == ["retired", "retired"]
    assert len(db.events(run.id, ["worker_added"])) == 2  # pulled exactly once
    final = project.run("report", "--run", run.id[:24], check=True).stdout
    assert "Tasks: 12 completed, 0 failed" in final and "running" not in final
    listing = project.run("report", "--list", check=True).stdout
    assert run.id in listing and "ended" in listing


def test_worker_lifetime_is_walltime(project: Project) -> None:
    """A worker whose --lifetime runs out (as before a batch walltime) leaves as walltime."""
    project.write(manifest(1, extra="""
            worker_extra_args: ["--lifetime", "5s"]
        """))
    project.run("apply", "--auto-approve", check=True)
    db = db_of(project)
    run = db.open_run("local")
    assert run is not None and run.source == "plugin"
    deadline = time.monotonic() + 30
    while not db.events(run.id, ["worker_removed"]):
        assert time.monotonic() < deadline, "the worker never left"
        time.sleep(0.5)
    (ev,) = db.events(run.id, ["worker_removed"])
    assert ev.data["reason"] == "walltime", ev.data
    project.run("destroy", "--auto-approve", check=True)
    doc = json.loads(project.run("report", "--json", check=True).stdout)
    assert doc["workers"]["removed"] == {"walltime": 1}
    assert [s["kind"] for s in doc["steps"]][-1] == "destroy_complete"


def _no_slurm_reason() -> str | None:
    import importlib
    import shutil
    import subprocess

    try:
        importlib.import_module("scalable.providers.slurm").SlurmProvider  # noqa: B018
    except (ImportError, AttributeError):
        return "the Slurm provider is not in this build (scalable.providers.slurm)"
    if shutil.which("sbatch") is None:
        return "no Slurm client commands on PATH (run: sudo scripts/slurm-dev.sh up)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if " is UP" not in ping.stdout:
        return f"the Slurm controller is not up (scontrol ping: {ping.stdout.strip()})"
    return None


@pytest.mark.slurm
def test_report_of_a_slurm_run(project: Project) -> None:
    reason = _no_slurm_reason()
    if reason is not None:
        pytest.skip(reason)
    project.write("""
        project: {name: slurmtele}
        targets:
          hpc:
            provider: slurm
            queue: batch
            walltime: "00:10:00"
            processes: 2
            max_workers: 2
            interface: eth0
            pricing: {core_hour_usd: 0.05}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml", target="hpc") as session:
        client = session.start()
        assert sum(client.gather(client.map(lambda x: x + 1, range(40), tag="sim"))) == 820
    db = db_of(project)
    run = db.last_run("hpc")
    assert run is not None and run.provider == "slurm" and run.ended_at is not None
    report = build_report(db, run)
    assert (report.completed, report.failed, report.peak_workers) == (40, 0, 2)
    assert report.cost.usd is not None and report.cost.usd > 0
    assert {s.tag: s.count for s in report.by_tag} == {"sim": 40}


def test_example_script_runs() -> None:
    import subprocess
    import sys

    example = DOCS.parent / "examples" / "telemetry_report.py"
    proc = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Tasks: 47 completed, 1 failed" in proc.stdout
    assert "sql: tag=simulate status=ok count=24" in proc.stdout


def test_history_feeds_objectives_and_report_sets_prediction_beside_actual(
        project: Project) -> None:
    project.write(manifest(4))
    path = project.root / "scalable.yaml"

    def work(i: int) -> int:
        time.sleep(0.2)
        return i

    with ScalableSession.from_yaml(path) as first:
        assert len(first.start().gather(first.client.map(work, range(12), tag="sim"))) == 12

    with ScalableSession.from_yaml(path, objectives={"deadline_hours": 0.05}, tasks=12,
                                   tag="sim") as second:
        goal = second.objective
        assert goal is not None
        assert goal.estimate.source == "telemetry: 12 past tasks tagged 'sim' on local"
        assert goal.estimate.task_seconds == pytest.approx(0.2, abs=0.05)
        client = second.start()
        assert len(client.gather(client.map(work, range(12), tag="sim"))) == 12

    out = project.run("report", "--last", check=True).stdout
    assert (f"Objective: deadline 0.05 h for 12 tasks → {goal.chosen.workers} workers "
            "(group default)") in out
    assert "  predicted: " in out and "telemetry: 12 past tasks" in out
    assert "  actual:    " in out and " to the last task (" in out and "$0.00" in out
    doc = json.loads(project.run("report", "--json", check=True).stdout)
    assert doc["objective"]["predicted"]["workers"] == goal.chosen.workers
    assert doc["objective"]["actual_seconds"] > 0
    assert doc["workers"]["peak"] == goal.chosen.workers


def test_adaptive_run_reports_its_scale_decisions(project: Project) -> None:
    project.write("""
        project: {name: burst}
        targets:
          local:
            provider: local
            adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 2s, wait_count: 2}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        futs = client.map(lambda i: time.sleep(0.5) or i, range(24), pure=False, tag="burst")
        assert sorted(client.gather(futs)) == list(range(24))
        controller = session.controller
        assert controller is not None
        ups = [d for d in controller.decisions if d.delta > 0]
        assert ups, "the controller never scaled up"
    db = db_of(project)
    run = db.last_run("local")
    assert run is not None
    decisions = db.events(run.id, ["scale_decision"])
    assert decisions and decisions[0].data["from"] == 1 and decisions[0].data["to"] > 1
    assert "queued tasks" in decisions[0].data["reason"]
    out = project.run("report", "--last", check=True).stdout
    assert "Scaling decisions:\n  +" in out
    assert f"1 → {decisions[0].data['to']} workers [default]" in out
    # Workers asked for may be retired again before they register on a busy machine,
    # so the peak is only bounded here; the decisions are what this test is about.
    peak = int(out.split("peak=")[1].split(",")[0])
    assert 1 <= peak <= 3
    assert "Tasks: 24 completed, 0 failed" in out


def test_run_of_a_scheduler_killed_ends_where_it_was_last_seen(project: Project) -> None:
    project.write(manifest(1))
    project.run("apply", "--auto-approve", check=True)
    db = db_of(project)
    run = db.open_run("local")
    assert run is not None
    with Client(project.state()["outputs"]["scheduler_address"], timeout=10) as c:
        assert c.submit(lambda: 6 * 7).result() == 42
    time.sleep(1.5)  # one flush
    sched = next(r for r in project.state()["resources"] if r["address"] == "scheduler")
    killed_at = time.time()
    os.killpg(sched["meta"]["pid"], signal.SIGKILL)
    time.sleep(1.0)

    out = project.run("report", "--last", check=True).stdout
    assert "Tasks: 1 completed, 0 failed" in out and "running" not in out
    # apply replaces the dead scheduler: the old run ends where it was last seen and
    # keeps the steps that removed it; the new scheduler is a new run.
    project.run("apply", "--auto-approve", check=True)
    ended = db.run(run.id)
    assert ended is not None and ended.ended_at is not None
    assert ended.last_seen is not None and ended.ended_at <= killed_at
    assert ended.ended_at == max(ended.last_seen, *(t.stop for t in db.tasks(run.id)),
                                 *(e.ts for e in db.events(run.id, ["worker_added"])))
    gone = [e.data["address"] for e in db.events(run.id, ["resource_deleted"])]
    assert "scheduler" in gone
    new = db.open_run("local")
    assert new is not None and new.id != run.id
    assert [e.data["address"] for e in db.events(new.id, ["resource_created"])][0] == "scheduler"
    project.run("destroy", "--auto-approve", check=True)
    assert db.run(new.id).ended_at is not None  # type: ignore[union-attr]


def test_a_closing_scheduler_records_the_workers_it_closes_as_retired(project: Project) -> None:
    """SIGTERM to the scheduler alone (as its idle leak guard, or destroy, closes it): Dask
    closes the workers still attached after the plugins have closed, so the plugin
    records them itself, as retired, at its close."""
    project.write(manifest(2))
    project.run("apply", "--auto-approve", check=True)
    db = db_of(project)
    run = db.open_run("local")
    assert run is not None
    sched = next(r for r in project.state()["resources"] if r["address"] == "scheduler")
    os.kill(sched["meta"]["pid"], signal.SIGTERM)  # the leader only: a graceful close
    deadline = time.monotonic() + 30
    while our_processes(project.root):  # the workers, closed by the scheduler, go too
        assert time.monotonic() < deadline, our_processes(project.root)
        time.sleep(0.1)
    removed = db.events(run.id, ["worker_removed"])
    assert sorted(e.worker for e in removed) == ["workers.default[0]", "workers.default[1]"]
    assert {(e.data["reason"], e.data["closing_reason"]) for e in removed} == {
        ("retired", "scheduler-close")}
    assert db.run(run.id).ended_at is not None  # type: ignore[union-attr]
    project.run("destroy", "--auto-approve", check=True)
    assert project.state()["resources"] == []
