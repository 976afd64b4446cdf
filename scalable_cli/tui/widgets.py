"""The dashboard's panels. Each draws one part of a :class:`Snapshot`; none reads data.

Every state is spelled out in words as well as colours (``LIVE``, ``PAUSED``,
``SCHEDULER GONE``; log kinds ``scale`` / ``drift`` / ``error``), so the screen reads
the same with ``NO_COLOR`` set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text
from scalable.pricing.estimator import format_usd
from scalable.tui.model import (
    SPARK_SECONDS,
    BudgetView,
    GroupRow,
    LogLine,
    Snapshot,
    TagRow,
    WorkerRow,
    budget_bar,
    fmt_cache,
    fmt_count,
    fmt_memory,
    fmt_offset,
    fmt_rate,
    fmt_uptime,
    sparkline,
)
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, RichLog, Static


def _matches(needle: str, *values: object) -> bool:
    return not needle or any(needle in str(v).lower() for v in values if v is not None)


class HeaderBar(Static):
    """Target, provider, scheduler, run, uptime, cost so far and $/hour; the status."""

    def show(self, snap: Snapshot, *, paused: bool, needle: str) -> None:
        status = snap.status.upper()
        style = "bold reverse" if not snap.connected and snap.mode == "live" else "bold"
        if paused:
            status = "PAUSED" if snap.mode == "live" else status
        line1 = Text()
        line1.append("scalable ", style="bold")
        line1.append(f"{snap.target}", style="bold")
        line1.append(f" ({snap.provider})  ")
        line1.append(snap.scheduler_address or "no scheduler")
        line1.append("  ")
        line1.append(f" {status} ", style=style)
        if not snap.connected and snap.mode == "live" and snap.extra.get("lost_at"):
            line1.append(" last picture", style="italic")
        if needle:
            line1.append(f"  filter: {needle}", style="italic")
        line2 = Text()
        line2.append(snap.run_id or "no run recorded")
        line2.append(f"  up {fmt_uptime(snap.uptime)}")
        line2.append(f"  cost {format_usd(snap.cost_usd)}")
        hourly = format_usd(snap.hourly_usd)
        line2.append(f"  {hourly}/h" if snap.hourly_usd is not None else "  ?/h")
        if snap.cache is not None and snap.cache[1]:
            line2.append(f"  {fmt_cache(snap.cache)}")
        for line in (line1, line2):
            line.no_wrap = True
            line.overflow = "ellipsis"
        self.update(Text("\n").join([line1, line2]))


BUDGET_WORDS = {
    "ok": "OK",
    "warning": "WARNING: 80% spent",
    "held": "NO SCALE-UP: 90% spent",
}


class BudgetBar(Static):
    """Spend against ``objectives.budget_usd``, live; hidden when the run has no budget.
    The guard's level is spelled out, not only coloured."""

    def show(self, budget: BudgetView | None) -> None:
        self.display = budget is not None
        if budget is None:
            return
        share = budget.share
        if budget.level == "exhausted":
            done = "target destroyed" if budget.on_budget == "destroy" else "workers retired"
            word, style = f"EXHAUSTED: {done}", "bold reverse"
        else:
            word = BUDGET_WORDS.get(budget.level, budget.level.upper())
            style = "bold" if budget.level != "ok" else ""
        spent = budget.guard_spent_usd if budget.level == "exhausted" else budget.spent_usd
        line = Text()
        line.append(f"budget {format_usd(budget.budget_usd)} ")
        line.append(budget_bar(share), style="bold" if budget.level != "ok" else "")
        line.append(f" {format_usd(spent)} spent")
        line.append("" if share is None else f" ({share:.0%})")
        line.append("  ")
        line.append(f" {word} ", style=style)
        line.no_wrap = True
        line.overflow = "ellipsis"
        self.update(line)


class Panel(Vertical):
    """A titled section (the title sits in the top rule, so it costs one line)."""

    def __init__(self, title: str, *children: Any, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        self.border_title = title


class KeyedTable(DataTable[Any]):
    """A DataTable updated in place by row key, keeping the cursor on its row."""

    COLUMNS: tuple[tuple[str, str], ...] = ()

    def on_mount(self) -> None:
        for key, label in self.COLUMNS:
            self.add_column(label, key=key)

    def set_rows(self, rows: Sequence[tuple[str, Sequence[object]]]) -> None:
        keys = [k for k, _ in rows]
        current = [str(k.value) for k in self.rows]
        if keys == current:
            for key, cells in rows:
                for (col, _), value in zip(self.COLUMNS, cells, strict=True):
                    if self.get_cell(key, col) != value:
                        self.update_cell(key, col, value, update_width=True)
            return
        selected = self.selected_key
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:
            return None


class CapacityTable(KeyedTable):
    """Desired vs pending vs ready per group, with the recent worker count."""

    COLUMNS = (("group", "GROUP"), ("mode", "SCALING"), ("desired", "DESIRED"),
               ("pending", "PENDING"), ("ready", "READY"),
               ("spark", f"WORKERS, LAST {SPARK_SECONDS / 60:.0f} MIN"))

    def show(self, groups: Sequence[GroupRow]) -> None:
        top = max([1, *(g.desired or 0 for g in groups), *(v for g in groups for v in g.history)])
        self.set_rows([
            (g.name, [g.name, g.mode, fmt_count(g.desired), fmt_count(g.pending),
                      str(g.ready), sparkline(g.history, top)])
            for g in groups
        ])


class WorkersTable(KeyedTable):
    COLUMNS = (("name", "WORKER"), ("host", "HOST"), ("threads", "THR"),
               ("memory", "MEMORY"), ("processing", "TASKS"), ("cpu", "CPU"))

    def show(self, workers: Sequence[WorkerRow], needle: str) -> None:
        self.set_rows([
            (w.address, [w.name, w.host, str(w.threads), fmt_memory(w.memory, w.memory_limit),
                         fmt_count(w.processing),
                         "-" if w.cpu is None else f"{w.cpu:.0f}%"])
            for w in workers if _matches(needle, w.name, w.host, w.group)
        ])


class WorkTable(KeyedTable):
    COLUMNS = (("tag", "TAG"), ("queued", "QUEUED"), ("processing", "RUNNING"),
               ("done", "DONE"), ("failed", "FAILED"), ("rate", "TASKS/S"))

    def show(self, work: Sequence[TagRow], needle: str, *, approximate: bool = False,
             waiting: int | None = None) -> None:
        rows = [
            (t.tag or "\x00untagged", [t.tag or "(untagged)",
                                       fmt_count(t.queued, approximate),
                                       fmt_count(t.processing, approximate), str(t.done),
                                       str(t.failed), fmt_rate(t.rate)])
            for t in work if _matches(needle, t.tag or "(untagged)")
        ]
        if len(work) > 1 and not needle:
            def total(values: list[int | None]) -> int | None:
                return None if any(v is None for v in values) else sum(v or 0 for v in values)

            rates = [t.rate for t in work]
            rows.append(("\x01all", [
                "all", fmt_count(total([t.queued for t in work]), approximate),
                fmt_count(total([t.processing for t in work]), approximate),
                str(sum(t.done for t in work)), str(sum(t.failed for t in work)),
                fmt_rate(None if any(r is None for r in rates) else sum(r or 0 for r in rates)),
            ]))
        self.set_rows(rows)
        panel = self.parent
        if isinstance(panel, Panel):
            panel.border_title = "Work by tag" + (
                f" ({waiting} more waiting on dependencies)" if waiting else "")


KIND_WORDS = {"scale": "scale", "drift": "drift", "step": "apply", "note": "note",
              "error": "error"}
KIND_STYLES = {"scale": "bold", "drift": "bold", "error": "bold reverse", "step": "dim",
               "note": "italic"}


class DecisionLog(RichLog):
    """Scaling decisions with their reasons, drift, apply steps and the dashboard's notes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, markup=False, min_width=40, max_lines=2000, **kwargs)
        self._keys: list[str] = []
        self._needle = ""

    @staticmethod
    def format_line(line: LogLine) -> Table:
        """Time since the run started, the kind in words, the text (wrapped under itself)."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=7, justify="right", no_wrap=True)
        grid.add_column(width=5, no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_row(fmt_offset(line.offset),
                     Text(KIND_WORDS.get(line.kind, line.kind),
                          style=KIND_STYLES.get(line.kind, "")),
                     line.text)
        return grid

    def show(self, lines: Sequence[LogLine], needle: str) -> None:
        visible = [ln for ln in lines if _matches(needle, ln.text, ln.kind)]
        keys = [ln.key for ln in visible]
        old = self._keys
        start: int | None = None  # where the lines not yet written begin
        if needle == self._needle:
            if not old:
                start = 0
            elif old[-1] in keys:
                # Only added at the end (the oldest may have dropped off): append.
                pos = keys.index(old[-1]) + 1
                if set(keys[:pos]) <= set(old):
                    start = pos
        if start is None:  # a new filter, or a line landed in the middle: redraw
            self.clear()
            start = 0
        for ln in visible[start:]:
            self.write(self.format_line(ln))
        self._keys = keys
        self._needle = needle
        panel = self.parent
        if isinstance(panel, Panel):
            panel.border_title = f"Scaling decisions and drift ({len(visible)})"

    @property
    def plain_lines(self) -> list[str]:
        """The log as plain text, one entry per screen line (for tests and exports)."""
        return [strip.text.rstrip() for strip in self.lines]


class ConfirmScale(ModalScreen[bool]):
    """Asks before a scale request goes to the engine. y / n / Escape."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n", "answer(False)", "No"),
                Binding("escape", "answer(False)", "Cancel", show=False)]

    def __init__(self, question: str, detail: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            yield Static(self.detail, id="detail")
            with Vertical(id="buttons"):
                yield Button("Yes, scale (y)", id="yes", variant="primary")
                yield Button("No (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


HELP = """\
scalable dashboard: live capacity, work and every scaling decision

Keys
  q        quit (the cluster keeps running)
  p        pause / resume updates (replay: play / pause)
  + / -    one worker more / less in the selected adaptive group
           (asks first; applied under the state lock, like apply)
  /        filter workers, tags and log lines (Esc clears)
  tab      move between panels; arrows move the cursor
  ← / →    replay: step back / forward (home / end: start / end)
  ?        this help (any key closes it)

Panels
  Capacity  DESIRED what state asks for, PENDING recorded but not yet
            registered (queued jobs, booting machines), READY registered
            with the scheduler; bars: workers over the last 2 minutes
  Workers   memory in use / limit, TASKS processing, CPU of one core
  Work      per tag: QUEUED (waiting for a thread), RUNNING, DONE,
            FAILED, TASKS/S finished over the last 10 s
  Budget    with objectives.budget_usd: spend so far against the budget and
            the guard's level (warning at 80%, no scale-up at 90%, exhausted)
  Log       scale: decisions and why; drift: lost workers, expired jobs,
            resources the provider finds gone; budget warnings and stops
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static(HELP)

    def on_key(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
