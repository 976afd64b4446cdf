"""The dashboard App: panels over a source's snapshots, keys for pause, scale and filter.

``DashboardApp(source)`` takes a ``LiveSource`` (polled from a worker thread every
``interval`` seconds; one poll at a time) or a ``ReplaySource`` (drawn at once, stepped
with the arrow keys, played with ``p``).
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

from scalable.tui.model import Snapshot
from scalable.tui.source import LiveSource, ReplaySource
from scalable.tui.widgets import (
    BudgetBar,
    CapacityTable,
    ConfirmScale,
    DecisionLog,
    HeaderBar,
    HelpScreen,
    Panel,
    WorkersTable,
    WorkTable,
)
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input

Source = LiveSource | ReplaySource
# A replay played with `p` shows the whole run in about this many seconds.
PLAY_SECONDS = 30.0


class DashboardApp(App[int]):
    # Absolute: Textual resolves a relative path against the file of a subclass.
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "scalable dashboard"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause / play"),
        Binding("plus,equals_sign", "scale(1)", "Scale up", key_display="+"),
        Binding("minus", "scale(-1)", "Scale down", key_display="-"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        # Priority: the tables would take these keys first (hidden on a live target).
        Binding("left", "step(-1)", "Back", key_display="←", priority=True),
        Binding("right", "step(1)", "Forward", key_display="→", priority=True),
        Binding("home", "seek(0)", "Start", show=False, priority=True),
        Binding("end", "seek(1)", "End", show=False, priority=True),
    ]
    LIVE_ONLY = ("scale",)
    REPLAY_ONLY = ("step", "seek")

    def __init__(self, source: Source, *, interval: float = 1.0,
                 screenshot: Path | None = None) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        # Headless one-shot: draw the first picture into this SVG file and exit.
        self.screenshot = screenshot
        self.failure: str | None = None
        self._saving = False
        self.paused = False
        self.needle = ""
        self.snapshot: Snapshot | None = None
        self._polling = False
        self._busy_scaling = False
        self.polls = 0  # readings drawn (a redraw for a filter or a pause is not one)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Scale keys only on a live target; step keys only in a replay (hidden otherwise)."""
        replay = isinstance(self.source, ReplaySource)
        hidden = self.LIVE_ONLY if replay else self.REPLAY_ONLY
        if action in self.REPLAY_ONLY and isinstance(self.focused, Input):
            return False  # arrows edit the filter while it is open
        return action not in hidden

    # -- layout -------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield BudgetBar(id="budget")
        yield Panel("Capacity", CapacityTable(cursor_type="row", id="capacity"),
                    id="capacity-panel")
        yield Panel("Workers", WorkersTable(cursor_type="row", id="workers"),
                    id="workers-panel")
        yield Panel("Work by tag", WorkTable(cursor_type="row", show_cursor=False, id="work"),
                    id="work-panel")
        yield Panel("Scaling decisions and drift", DecisionLog(id="log"), id="log-panel")
        yield Input(placeholder="filter workers, tags and log lines; Enter keeps, Esc clears",
                    id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(BudgetBar).display = False
        self.query_one("#capacity", CapacityTable).focus()
        if isinstance(self.source, ReplaySource):
            self.sub_title = f"replay of {self.source.run.id}"
            self.show(self.source.poll())
            self.set_interval(0.5, self._play_tick)
        else:
            self.sub_title = f"live: {self.source.target}"
            self.query_one(HeaderBar).update(
                f"scalable {self.source.target}  connecting to the scheduler…")
            self.refresh_now()
            self.set_interval(self.interval, self.refresh_now)

    # -- data -----------------------------------------------------------------------------
    def refresh_now(self) -> None:
        """Start one poll unless paused or one is already running."""
        if self.paused or self._polling or not isinstance(self.source, LiveSource):
            return
        self._polling = True
        self._poll()

    @work(thread=True, group="poll")
    def _poll(self) -> None:
        try:
            snap = self.source.poll()
        except Exception as exc:  # a bug in a reading must not end the dashboard
            with contextlib.suppress(RuntimeError):
                self.call_from_thread(self.notify, f"update failed: {exc}", severity="error")
            return
        finally:
            self._polling = False
        with contextlib.suppress(RuntimeError):  # the app closed meanwhile
            self.call_from_thread(self.show, snap)

    def show(self, snap: Snapshot, *, fresh: bool = True) -> None:
        """Draw a snapshot (on the UI thread); ``fresh``: a new reading, not a redraw."""
        self.snapshot = snap
        if fresh:
            self.polls += 1
        needle = self.needle.lower()
        self.query_one(HeaderBar).show(snap, paused=self.paused, needle=self.needle)
        self.query_one(BudgetBar).show(snap.budget)
        self.query_one(CapacityTable).show(snap.groups)
        self.query_one(WorkersTable).show(snap.workers, needle)
        self.query_one(WorkTable).show(snap.work, needle, approximate=snap.approximate,
                                       waiting=snap.waiting)
        self.query_one(DecisionLog).show(snap.log, needle)
        shown = self.query_one(WorkersTable).row_count
        total = len(snap.workers)
        self.query_one("#workers-panel", Panel).border_title = (
            f"Workers ({total})" if shown == total else f"Workers ({shown} of {total})")
        if self.screenshot is not None and fresh and not self._saving:
            # Live: the second reading, so rates (which need two) are on the picture.
            wanted = 2 if isinstance(self.source, LiveSource) and snap.connected else 1
            if self.polls >= wanted:
                self._saving = True
                self.call_after_refresh(self._save_and_exit)

    def _save_and_exit(self) -> None:
        assert self.screenshot is not None
        try:
            self.save_screenshot(self.screenshot.name, str(self.screenshot.parent or "."))
        except OSError as exc:
            self.failure = f"cannot write {self.screenshot}: {exc}"
        self.exit(0)

    def _redraw(self) -> None:
        if self.snapshot is not None:
            self.show(self.snapshot, fresh=False)

    # -- keys -----------------------------------------------------------------------------
    def action_pause(self) -> None:
        if isinstance(self.source, ReplaySource):
            src = self.source
            if not src.playing and src.at >= src.end:
                src.seek(src.start)
            src.playing = not src.playing
            self.show(src.poll())
            return
        self.paused = not self.paused
        self._redraw()
        if not self.paused:
            self.refresh_now()

    def _play_tick(self) -> None:
        src = self.source
        if isinstance(src, ReplaySource) and src.playing:
            src.seek(src.at + src.duration / PLAY_SECONDS * 0.5)
            if src.at >= src.end:
                src.playing = False
            self.show(src.poll())

    def action_step(self, direction: int) -> None:
        src = self.source
        if isinstance(src, ReplaySource):
            src.seek(src.at + direction * max(1.0, src.duration / 20))
            self.show(src.poll())

    def action_seek(self, fraction: float) -> None:
        src = self.source
        if isinstance(src, ReplaySource):
            src.seek(src.start + fraction * src.duration)
            self.show(src.poll())

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.needle
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self.needle = ""
        box.value = ""
        box.display = False
        self.query_one("#capacity", CapacityTable).focus()
        self._redraw()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.needle = event.value.strip()
        event.input.display = False
        self.query_one("#capacity", CapacityTable).focus()
        self._redraw()

    # -- scaling --------------------------------------------------------------------------
    def selected_group(self) -> str | None:
        table = self.query_one(CapacityTable)
        key = table.selected_key
        if key is not None:
            return key
        snap = self.snapshot
        return snap.groups[0].name if snap is not None and snap.groups else None

    def action_scale(self, delta: int) -> None:
        source = self.source
        if not isinstance(source, LiveSource):
            self.notify("a replay cannot scale anything", severity="warning")
            return
        group = self.selected_group()
        if group is None:
            self.notify("no worker group to scale", severity="warning")
            return
        if self._busy_scaling:
            self.notify("a scale request is already in progress", severity="warning")
            return
        self._busy_scaling = True
        self._preview(source, group, delta)

    @work(thread=True, group="scale")
    def _preview(self, source: LiveSource, group: str, delta: int) -> None:
        from scalable.errors import ScalableError
        from scalable.tui.actions import preview

        try:
            request = preview(source.ws, group, delta)
        except ScalableError as exc:
            self._busy_scaling = False
            text = exc.message + (f" ({exc.hint})" if exc.hint else "")
            source.note(f"scale request refused: {text}", "error")
            self.call_from_thread(self.notify, text, title="Not scaled", severity="warning",
                                  timeout=8)
            self.call_from_thread(self.refresh_now)
            return
        except Exception as exc:
            self._busy_scaling = False
            self.call_from_thread(self.notify, f"cannot plan the change: {exc}",
                                  severity="error")
            return
        self.call_from_thread(self._confirm, request)

    def _confirm(self, request: Any) -> None:
        self.push_screen(ConfirmScale(request.question, request.detail),
                         callback=partial(self._confirmed, request))

    def _confirmed(self, request: Any, yes: bool | None) -> None:
        if not yes:
            self._busy_scaling = False
            self.notify("scale request cancelled")
            return
        assert isinstance(self.source, LiveSource)
        self.source.note(f"scale requested: {request.group} {request.before} → "
                         f"{request.after} workers")
        self._apply(self.source, request)

    @work(thread=True, group="scale")
    def _apply(self, source: LiveSource, request: Any) -> None:
        from scalable.tui.actions import apply

        try:
            text, ok = apply(source.ws, request)
        except Exception as exc:
            text, ok = f"scale request failed: {exc}", False
        finally:
            self._busy_scaling = False
        source.note(text, "note" if ok else "error")
        self.call_from_thread(self.notify, text, severity="information" if ok else "error")
        self.call_from_thread(self.refresh_now)
