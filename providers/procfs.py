"""Linux process facts read from ``/proc``: the few the CLI asks on every command.

``plan`` asks of each recorded process "is PID N still the one we started, and not a
zombie?" and of every process "do you carry this state's lineage?"; ``destroy`` asks
"is anyone left in group G?". psutil answers all three, but importing it costs 15–25 ms
of a ~250 ms ``scalable plan`` on a 2-core machine (it loads socket, its named tuples
and its C extension), so on Linux they are read here and psutil is imported only on
other platforms.

The start time is psutil's own computation (``starttime / CLK_TCK + btime``, psutil 7
``_pslinux``) so a record written with either reads the same; a test holds the two to
each other on live processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import NamedTuple

_PROC = "/proc"
AVAILABLE = sys.platform.startswith("linux") and os.path.exists(f"{_PROC}/self/stat")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_boot_time: float | None = None


class Stat(NamedTuple):
    """What ``/proc/<pid>/stat`` says about one process. (A named tuple: Python 3.11
    builds one ten times faster than a frozen dataclass, and this is on every path.)"""

    state: str  # R, S, D, Z, T, ... (proc(5))
    pgrp: int
    start_ms: int  # start, in milliseconds since the epoch (psutil's create_time × 1000)

    @property
    def zombie(self) -> bool:
        return self.state == "Z"


def boot_time() -> float:
    """The kernel's boot time (``btime`` in /proc/stat), in seconds since the epoch."""
    global _boot_time
    if _boot_time is None:
        with open(f"{_PROC}/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime"):
                    _boot_time = float(line.split()[1])
                    break
            else:
                raise OSError(f"no btime line in {_PROC}/stat")
    return _boot_time


def stat(pid: int) -> Stat | None:
    """The process ``pid``'s state, group and start, or None when there is none (or it
    cannot be read: another user's process under hidepid)."""
    if pid <= 0:
        return None
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name sits in parentheses and may itself hold spaces and ")".
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        start = float(fields[19]) / CLOCK_TICKS + boot_time()
        return Stat(fields[0].decode(), int(fields[2]), round(start * 1000))
    except (IndexError, ValueError):
        return None


def pids() -> Iterator[int]:
    """Every PID /proc lists now."""
    for name in os.listdir(_PROC):
        if name.isdigit():
            yield int(name)


def environ(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with, or None when it cannot be read (gone,
    another user's, a kernel thread has an empty one)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="surrogateescape")] = value.decode(errors="surrogateescape")
    return env
