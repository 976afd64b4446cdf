"""``scalable dashboard`` with Textual's pilot: live local clusters started by the CLI,
replays of recorded runs, SVG snapshots of the main screen, and the CLI's own paths.

Snapshots replay the synthetic run in ``dashboard_run.py`` (fixed times, ids and
prices), so nothing on screen depends on the clock; baselines live in
``__snapshots__/test_dashboard/`` (update with ``pytest --snapshot-update``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scalable.telemetry.store import TelemetryDB
from scalable.tui.app import DashboardApp
from scalable.tui.source import LiveSource, ReplaySource
from scalable.tui.widgets import CapacityTable, ConfirmScale, DecisionLog, WorkersTable, WorkTable
from scalable.workspace import Workspace
from textual.pilot import Pilot

from tests.conftest import Project, our_processes
from tests.integration import dashboard_run as synthetic


@pytest.fixture(autouse=True)
def colours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots are in colour unless a test sets NO_COLOR itself (CI exports it)."""
    monkeypatch.delenv("NO_COLOR", raising=False)


def screen_text(app: DashboardApp) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def log_text(app: DashboardApp) -> str:
    """The decision log as one string (wrapped lines joined back, spaces collapsed)."""
    return " ".join(" ".join(app.query_one(DecisionLog).plain_lines).split())


async def until(pilot: Pilot[Any], pred: Callable[[], bool], timeout: float,
                what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await pilot.pause(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or pred}\n"
                         f"{screen_text(pilot.app)}")  # type: ignore[arg-type]


def replay_app(root: Path, at: float | None = None) -> DashboardApp:
    db = synthetic.write(root)
    run = db.run(synthetic.RUN_ID)
    assert run is not None
    source = ReplaySource(db, run, groups=("default",))
    if at is not None:
        source.seek(synthetic.T0 + at)
    return DashboardApp(source)


# -- replays and snapshots (no cluster) ----------------------------------------------------


def test_snapshot_replay_mid_run(snap_compare: Any, tmp_path: Path) -> None:
    """Four workers, tasks running, the scale-up decision in the log (80×24)."""
    assert snap_compare(replay_app(tmp_path, at=60.0), terminal_size=(80, 24))


def test_snapshot_replay_end(snap_compare: Any, tmp_path: Path) -> None:
    """The whole run's log: scale up, a lost worker, an expired job, scale down."""
    assert snap_compare(replay_app(tmp_path), terminal_size=(80, 24))


def test_snapshot_no_color(snap_compare: Any, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR: monochrome, and every state still spelled out in words."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = replay_app(tmp_path, at=60.0)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24))


def test_snapshot_help(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(replay_app(tmp_path), press=["question_mark"], terminal_size=(80, 24))


async def test_replay_keys_step_filter_and_play(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert "REPLAY 100%" in text and synthetic.RUN_ID in text
        assert "up 00:02:00" in text and "cost $0.02" in text and "$0.24/h" in text
        log = app.query_one(DecisionLog)
        assert any("default: 2 → 4 workers  +2: 120 queued tasks" in ln
                   for ln in log.plain_lines)
        assert any("lost worker workers.default[1] (3 tasks rescheduled)" in ln
                   for ln in log.plain_lines)
        assert any("job expired: workers.default[0] reached its walltime" in ln
                   for ln in log.plain_lines)
        # The footer offers the replay's keys, not scaling.
        await until(pilot, lambda: "Back" in screen_text(app).splitlines()[-1], 10, "footer")
        assert "Scale" not in screen_text(app).splitlines()[-1]
        await pilot.press("home")
        assert "REPLAY 0%" in screen_text(app)
        await pilot.press("right", "right")  # 2 × 6 s (a twentieth of the run)
        assert app.source.at == synthetic.T0 + 12  # type: ignore[union-attr]
        # Filter: only the io tag, and only log lines mentioning "lost".
        await pilot.press("end", "slash", *"io", "enter")
        work = app.query_one(WorkTable)
        assert [work.get_row_at(i)[0] for i in range(work.row_count)] == ["io"]
        assert "filter: io" in screen_text(app)
        await pilot.press("slash", "backspace", "backspace", *"lost", "enter")
        assert app.query_one(WorkersTable).row_count == 0
        assert len(log.plain_lines) == 1 and "lost worker" in log.plain_lines[0]
        await pilot.press("escape")
        assert app.query_one(WorkersTable).row_count == 1 and len(log.plain_lines) >= 6
        # Play from the start: the cursor moves on by itself.
        await pilot.press("p")
        assert app.source.playing  # type: ignore[union-attr]
        await pilot.pause(1.2)
        assert synthetic.T0 < app.source.at < synthetic.T0 + 60  # type: ignore[union-attr]
        await pilot.press("p", "plus")  # scaling is a live-only key: nothing happens
        await pilot.press("q")
    assert app.return_code == 0


async def test_log_appends_what_is_new_and_redraws_on_insertions() -> None:
    from scalable.tui.model import LogLine
    from textual.app import App, ComposeResult

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield DecisionLog()

    def line(key: str, ts: float) -> LogLine:
        return LogLine(key, ts, ts, "scale", f"line {key}")

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(DecisionLog)
        first = [line(f"k{i}", i) for i in range(5)]
        log.show(first, "")
        await pilot.pause()
        assert [ln.split()[-1] for ln in log.plain_lines] == ["k0", "k1", "k2", "k3", "k4"]
        # The oldest dropped off the model and one arrived: appended, nothing redrawn.
        log.show(first[1:] + [line("k5", 5)], "")
        await pilot.pause()
        assert [ln.split()[-1] for ln in log.plain_lines][-2:] == ["k4", "k5"]
        assert len(log.plain_lines) == 6
        # A late event lands in the middle: the log is redrawn in time order.
        log.show(first[1:3] + [line("late", 2.5)] + first[3:] + [line("k5", 5)], "")
        await pilot.pause()
        assert [ln.split()[-1] for ln in log.plain_lines] == ["k1", "k2", "late", "k3", "k4",
                                                              "k5"]
        log.show(first, "k3")  # a filter redraws with the matching lines only
        await pilot.pause()
        assert [ln.split()[-1] for ln in log.plain_lines] == ["k3"]


def test_guide_python_block_replays_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from tests.integration.test_docs import DOCS, python_blocks

    synthetic.write(tmp_path)
    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks(DOCS / "guides" / "dashboard.rst")
    exec(compile(block, "dashboard.rst", "exec"), {"__name__": "__docs__"})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{synthetic.RUN_ID}: 1 workers at the end, cost $0.0181"
    assert f"  +30s scale: default: 2 → 4 workers  {synthetic.UP_REASON}" in out
    assert "  +70s drift: lost worker workers.default[1] (3 tasks rescheduled)" in out


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_replay_screenshot_and_errors(project: Project) -> None:
    synthetic.write(project.root)
    out = project.root / "shot.svg"
    r = project.run("dashboard", "--run", "run-20260520", "--at", "50%", "--screenshot",
                    str(out), check=True)
    assert f"Saved {out}" in r.stdout
    svg = out.read_text()
    assert svg.startswith("<svg") and "REPLAY&#160;50%" in svg
    assert "default:&#160;2&#160;→&#160;4&#160;workers" in svg

    r = project.run("dashboard", "--run", "run-nope")
    assert r.returncode == 1 and "Error: no run 'run-nope'" in r.stderr
    r = project.run("dashboard", "--run", synthetic.RUN_ID)  # no terminal under pytest
    assert r.returncode == 1 and "needs a terminal" in r.stderr and "--screenshot" in r.stderr
    r = project.run("dashboard", "--at", "50%")
    assert r.returncode == 1 and "--at is for replays" in r.stderr
    project.write("targets:\n  local:\n    provider: local\n    max_workers: 1\n")
    r = project.run("dashboard", "--screenshot", str(out))
    assert r.returncode == 1 and "has no scheduler: nothing to watch" in r.stderr
    assert "Traceback" not in r.stderr


# -- live, against real local clusters started by the CLI -----------------------------------


def _client(project: Project) -> Any:
    ws = Workspace.open(project.root / "scalable.yaml", "local")
    return ws.engine().connect(project.state()["outputs"], timeout=30)  # TLS if the target has it


def _kill_scheduler(project: Project) -> None:
    sched = next(r for r in project.state()["resources"] if r["address"] == "scheduler")
    os.killpg(sched["meta"]["pid"], signal.SIGKILL)


@pytest.mark.slow
async def test_live_fixed_target_fills_then_scheduler_disappears(project: Project) -> None:
    """Over TLS, with the scheduler keeping telemetry in memory (as on a cloud VM): the
    dashboard pulls the run's records itself."""
    project.write("""
        project: {name: live}
        targets:
          local:
            provider: local
            max_workers: 2
            threads_per_worker: 2
            tls: true
            env: {SCALABLE_TELEMETRY: memory}
        """)
    await asyncio.to_thread(project.run, "apply", "--auto-approve", check=True)
    source = LiveSource(Workspace.open(project.root / "scalable.yaml", "local"))
    app = DashboardApp(source)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            workers = app.query_one(WorkersTable)
            await until(pilot, lambda: workers.row_count == 2, 30, "2 workers in the table")
            text = screen_text(app)
            assert "LIVE" in text and "tls://127.0.0.1:" in text
            await until(pilot, lambda: "-live-" in screen_text(app), 20, "the run id")
            run = TelemetryDB.for_root(project.root).open_run("local")
            assert run is not None and run.source == "pulled"
            names = sorted(str(workers.get_row_at(i)[0]) for i in range(2))
            assert names == ["workers.default[0]", "workers.default[1]"]
            row = workers.get_row_at(0)
            assert row[1] == "127.0.0.1" and row[2] == "2" and "/" in str(row[3])
            cap = app.query_one(CapacityTable).get_row_at(0)
            assert cap[:5] == ["default", "fixed", "2", "0", "2"]

            # Tagged work shows per tag, with its outcome from telemetry.
            client = await asyncio.to_thread(_client, project)
            try:
                def submit() -> None:
                    import dask

                    with dask.annotate(tag="analysis"):
                        futs = client.map(lambda i: time.sleep(0.05) or i, range(40),
                                          pure=False)
                    with dask.annotate(tag="fragile"):
                        bad = client.submit(lambda: 1 / 0, pure=False)
                    client.gather(futs)
                    client.gather([bad], errors="skip")

                await asyncio.to_thread(submit)
                work = app.query_one(WorkTable)

                def row(tag: str) -> list[Any] | None:
                    for i in range(work.row_count):
                        r = work.get_row_at(i)
                        if r[0] == tag:
                            return list(r)
                    return None

                await until(pilot, lambda: (row("analysis") or [0] * 6)[3] == "40", 20,
                            "40 analysis tasks done")
                await until(pilot, lambda: (row("fragile") or [0] * 6)[4] == "1", 20,
                            "1 fragile task failed")
                # Throughput from the tasks' finish times, over the last 10 s.
                rate = str((row("analysis") or [""] * 6)[5])
                # (≥ 0, not > 0: on a loaded machine the 10 s window may have passed.)
                assert rate.endswith("/s") and 0 <= float(rate[:-2]) <= 40 / 10
            finally:
                await asyncio.to_thread(client.close)

            # A fixed group is the manifest's: "-" explains, and state does not change.
            serial = project.state()["serial"]
            await pilot.press("minus")
            await until(pilot, lambda: "fixed size (max_workers: 2)" in log_text(app), 20,
                        "the refusal")
            assert project.state()["serial"] == serial
            assert not isinstance(app.screen, ConfirmScale)

            # Pause: no more readings until resumed.
            await pilot.press("p")
            assert "PAUSED" in screen_text(app).splitlines()[0]
            polls = app.polls
            await pilot.pause(2.5)
            assert app.polls == polls
            await pilot.press("p")
            await until(pilot, lambda: app.polls > polls, 10, "updates after resuming")
            assert "LIVE" in screen_text(app).splitlines()[0]

            # Drift: a worker killed outside scalable. Telemetry says it was lost; the
            # provider's refresh says its process is gone.
            victim = next(r for r in project.state()["resources"]
                          if r["address"] == "workers.default[1]")
            os.killpg(victim["meta"]["pid"], signal.SIGKILL)
            await until(pilot, lambda: "drift lost worker workers.default[1]" in log_text(app),
                        30, "the lost-worker line")
            await until(pilot, lambda: "drift workers.default[1] (local.process) is gone: "
                                       "process" in log_text(app), 30, "the refresh's drift line")
            assert workers.row_count == 1
            # Not counted as pending: it is gone, not on its way.
            assert app.query_one(CapacityTable).get_row_at(0)[2:5] == ["2", "0", "1"]

            # The scheduler goes away: the app says so and keeps the last picture.
            _kill_scheduler(project)
            await until(pilot, lambda: "SCHEDULER GONE" in screen_text(app), 20,
                        "the scheduler-gone banner")
            text = screen_text(app)
            assert "last picture" in text and "is not answering" in log_text(app)
            assert workers.row_count == 1
            assert app.query_one(CapacityTable).get_row_at(0)[4] == "1"
            t0 = time.monotonic()
            await pilot.press("q")
        assert time.monotonic() - t0 < 10
        assert app.return_code == 0
    finally:
        source.close()
        await asyncio.to_thread(project.run, "destroy", "--auto-approve")
    assert our_processes(project.root) == []


@pytest.mark.slow
async def test_live_plus_goes_through_the_engine_and_scale_up_is_logged(
        project: Project) -> None:
    project.write("""
        project: {name: adapt}
        targets:
          local:
            provider: local
            threads_per_worker: 1
            adaptive: {minimum: 1, maximum: 3, interval: 0.5s, cooldown: 10m,
                       wait_count: 1000}
        """)
    await asyncio.to_thread(project.run, "apply", "--auto-approve", check=True)
    source = LiveSource(Workspace.open(project.root / "scalable.yaml", "local"))
    app = DashboardApp(source)
    run_id = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            workers = app.query_one(WorkersTable)
            await until(pilot, lambda: workers.row_count == 1, 30, "1 worker")
            assert app.query_one(CapacityTable).get_row_at(0)[1] == "adaptive 1-3"

            # "+": a confirmation with the plan, then the engine writes state and applies.
            await pilot.press("plus")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScale), 30,
                        "the confirmation")
            dialog = app.screen
            assert isinstance(dialog, ConfirmScale)
            assert dialog.question == "Scale group 'default' from 1 to 2 workers (one more)?"
            assert "Plan: 1 to add, 0 to change, 0 to destroy." in dialog.detail
            assert "+ workers.default[1]" in dialog.detail
            assert project.state().get("scale", {}).get("default", 1) == 1  # not yet
            await pilot.press("y")
            await until(pilot, lambda: project.state().get("scale") == {"default": 2}, 60,
                        "state.scale default=2")
            await until(pilot, lambda: workers.row_count == 2, 60, "2 workers")
            await until(pilot, lambda: "default: 1 → 2 workers manual +1 from the "
                                       "dashboard" in log_text(app), 20,
                        "the manual decision line")
            assert "applied (1 added" in log_text(app)

            # Work arrives: the controller scales up, and its reason shows.
            client = await asyncio.to_thread(_client, project)
            try:
                futs = await asyncio.to_thread(
                    client.map, lambda i: time.sleep(1.0) or i, range(30), pure=False)
                await until(pilot, lambda: re.search(r"default: 2 → 3 workers \+1: \d+ queued "
                                                     r"tasks", log_text(app)) is not None, 60,
                            "the controller's scale-up line")
                await until(pilot, lambda: workers.row_count == 3, 60, "3 workers")
                cap = app.query_one(CapacityTable).get_row_at(0)
                assert cap[2:5] == ["3", "0", "3"]

                # At the maximum, "+" is refused with the reason; nothing is asked.
                await pilot.press("plus")
                await until(pilot, lambda: "adaptive maximum (3 workers)" in log_text(app), 30,
                            "refusal")
                assert not isinstance(app.screen, ConfirmScale)
                await asyncio.to_thread(client.gather, futs)
            finally:
                await asyncio.to_thread(client.close)
            run_id = app.snapshot.run_id if app.snapshot else None
            await pilot.press("q")
    finally:
        source.close()
        await asyncio.to_thread(project.run, "destroy", "--auto-approve")
    assert our_processes(project.root) == []

    # The recorded run replays: both decisions, three workers at the peak.
    assert run_id is not None
    db = TelemetryDB.for_root(project.root)
    run = db.run(run_id)
    assert run is not None and run.ended_at is not None
    replay = ReplaySource(db, run)
    texts = [ln.text for ln in replay.poll().log if ln.kind == "scale"]
    assert texts[0].startswith("default: 1 → 2 workers  manual +1 from the dashboard")
    assert texts[1].startswith("default: 2 → 3 workers  +1:")
    peak = max(len(replay.snapshot(t).workers)
               for t in (replay.start + i * replay.duration / 50 for i in range(51)))
    assert peak == 3
    work = {t.tag: t.done for t in replay.snapshot(replay.end).work}
    assert work == {None: 30}


@pytest.mark.slow
async def test_live_budget_bar_follows_the_spend_to_the_stop(project: Project) -> None:
    """``apply --budget-usd`` at $1 per resource-second: the bar shows the spend rising
    against the budget, then the guard's stop, fed by the run's telemetry."""
    from scalable.tui.widgets import BudgetBar

    project.write("""
        project: {name: spend}
        targets:
          local:
            provider: local
            max_workers: 2
            threads_per_worker: 1
            pricing: {hourly_usd: 3600}
            workload: {tasks: 4, task_seconds: 0.5}
        """)
    await asyncio.to_thread(project.run, "apply", "--auto-approve", "--budget-usd", "150",
                            check=True)
    source = LiveSource(Workspace.open(project.root / "scalable.yaml", "local"))
    app = DashboardApp(source)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            bar = app.query_one(BudgetBar)
            await until(pilot, lambda: bar.display and "budget $150.00" in screen_text(app),
                        30, "the budget bar")
            first = app.snapshot.budget if app.snapshot else None
            assert first is not None and first.budget_usd == 150.0
            assert first.level in ("ok", "warning") and first.spent_usd is not None
            await until(pilot, lambda: app.snapshot is not None
                        and app.snapshot.budget is not None
                        and (app.snapshot.budget.spent_usd or 0) > (first.spent_usd or 0),
                        30, "the spend to rise")
            client = await asyncio.to_thread(_client, project)
            try:
                await asyncio.to_thread(client.map, lambda i: time.sleep(1.0) or i,
                                        range(1000), pure=False)
                await until(pilot, lambda: "EXHAUSTED: workers retired" in screen_text(app),
                            240, "the guard's stop on the bar")
                assert "budget exhausted:" in log_text(app)
                assert "budget warning:" in log_text(app)
                view = app.snapshot.budget if app.snapshot else None
                assert view is not None and view.guard_spent_usd is not None
                assert view.guard_spent_usd <= 150.0
            finally:
                await asyncio.to_thread(client.close)
            await pilot.press("q")
    finally:
        source.close()
        # The controller may still hold the lock while it stops the workers.
        await asyncio.to_thread(project.run, "destroy", "--auto-approve",
                                "--lock-timeout", "120s", check=True)
    assert our_processes(project.root) == []
