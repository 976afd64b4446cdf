"""Parsing of sizes, durations and Slurm walltimes as users write them."""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_size(value: str | int | float) -> int:
    """Bytes from ``4GiB``, ``512MiB``, ``4 GB``, ``2e9`` or a plain number of bytes."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a size such as '4GiB'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a size must be a finite number")
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (examples: '4GiB', '512MiB', '4 GB')")
    size = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if not math.isfinite(size):
        raise ValueError(f"{value!r} is too large")
    return int(size)


def format_size(nbytes: int) -> str:
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor:
            return f"{nbytes / factor:g}{unit}"
    return f"{nbytes}B"


def parse_duration(value: str | int | float) -> float:
    """Seconds from ``30s``, ``5m``, ``2h``, ``1d`` or a plain number of seconds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration such as '30s'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be a finite number")
        return float(value)
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a duration (examples: '30s', '5m', '2h')")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_walltime(value: str | int) -> int:
    """Seconds from Slurm's time formats.

    ``minutes``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``. A plain
    integer is minutes, as sbatch reads it. (An unquoted ``04:00:00`` never reaches here
    as 14400: the manifest loader keeps YAML 1.1 sexagesimal numbers as strings.)
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a walltime such as '04:00:00'")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("walltime must be positive")
        return value * 60
    text = value.strip()
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            raise ValueError(f"{value!r} is not a walltime (examples: '04:00:00', '1-12:00:00')")
        days = int(d)
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) > 3:
            raise ValueError(f"{value!r} is not a walltime")
        nums = [int(p) for p in parts] + [0] * (3 - len(parts))
        h, mi, s = nums
    else:
        parts = text.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) > 3 or not text:
            raise ValueError(
                f"{value!r} is not a walltime (examples: '04:00:00', '90', '1-12:00:00')"
            )
        nums = [int(p) for p in parts]
        if len(nums) == 1:
            h, mi, s = 0, nums[0], 0
        elif len(nums) == 2:
            h, mi, s = 0, nums[0], nums[1]
        else:
            h, mi, s = nums
    total = days * 86400 + h * 3600 + mi * 60 + s
    if total <= 0:
        raise ValueError("walltime must be positive")
    return total


def format_walltime(seconds: int) -> str:
    """Slurm's ``[D-]HH:MM:SS``."""
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    core = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{d}-{core}" if d else core


def format_duration(seconds: float) -> str:
    """Short human duration: ``12.4s``, ``5m03s``, ``2h31m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m}m{s:02d}s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h}h{rest // 60:02d}m"
