"""Hooks: how the engine and the providers report what they do (Terraform's ``Hook``).

The engine never prints and never writes telemetry itself: it tells its :class:`Hook`.
A hook gets progress lines for people (``progress``), warnings (``warning``) and typed
steps (``event``: the payloads of :mod:`scalable.payloads`). Implementations:

- :class:`LineHook`: progress and warnings as lines, to ``echo`` (human output) or to
  stderr (``--json``: stdout stays the document) — :func:`human` and :func:`json_lines`;
- :class:`LogHook`: to a logger (a session, the detached controller);
- ``StreamHook`` (streaming.py): ``apply --json``/``destroy --json``, every step as a
  Terraform-shaped JSON line the moment it happens;
- ``RunRecorder`` (telemetry/recorder.py): events into the telemetry database;
- :class:`Collect`: keeps everything (the dashboard's scale requests, tests);
- :class:`Hooks`: several at once.

Providers report through ``Provider.hooks``, which the engine points at its own; a
provider used on its own keeps :class:`StderrHook` (stderr keeps ``--json`` clean).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging  # a LogHook's caller has it; the CLI's start need not

    from scalable.payloads import Payload


class Hook:
    """Every method is optional: the base ignores everything."""

    def progress(self, text: str) -> None:
        """A line of progress for people (``3/8 created``, ``workers 5/8 ready``)."""

    def warning(self, text: str) -> None:
        """Something the user should know that does not stop the operation."""

    def event(self, payload: Payload) -> None:
        """A step worth recording (resource created, apply complete, scale decision)."""


class Hooks(Hook):
    """Fan out to several hooks, in order."""

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def progress(self, text: str) -> None:
        for h in self.hooks:
            h.progress(text)

    def warning(self, text: str) -> None:
        for h in self.hooks:
            h.warning(text)

    def event(self, payload: Payload) -> None:
        for h in self.hooks:
            h.event(payload)


class LineHook(Hook):
    """Progress and warnings as text lines to ``write`` (events are not for people)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    def progress(self, text: str) -> None:
        self.write(text)

    def warning(self, text: str) -> None:
        self.write(f"Warning: {text}")


class StderrHook(LineHook):
    def __init__(self) -> None:
        super().__init__(lambda text: print(text, file=sys.stderr, flush=True))


class LogHook(Hook):
    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def progress(self, text: str) -> None:
        self.logger.info(text)

    def warning(self, text: str) -> None:
        self.logger.warning(text)


@dataclass
class Collect(Hook):
    """Keeps what it is told (the dashboard shows the lines; tests read the events)."""

    lines: list[str] = field(default_factory=list)
    events: list[Payload] = field(default_factory=list)

    def progress(self, text: str) -> None:
        self.lines.append(text)

    def warning(self, text: str) -> None:
        self.lines.append(f"Warning: {text}")

    def event(self, payload: Payload) -> None:
        self.events.append(payload)


def human(echo: Callable[[str], None]) -> Hook:
    """The CLI's human output: progress on stdout, between the plan and the summary."""
    return LineHook(echo)


def json_lines(info: Callable[[str], None]) -> Hook:
    """Under ``--json`` progress goes to stderr, so stdout is only the document."""
    return LineHook(info)
