"""Compiled code for the source libraries generate as they load, kept across runs.

Python keeps a module's bytecode in ``__pycache__``, but not the code made from source
text written at run time, and on CPython 3.11 that text is a quarter of a ``scalable
plan``: each dataclass's ``__init__``, ``__repr__``, ``__eq__``… (``dataclasses`` execs
one string per method: about 500 on the ``plan`` path, pydantic's own and ours), each
string annotation ``typing`` turns into a ``ForwardRef`` (pydantic-core's ``TypedDict``
s, and our postponed annotations as pydantic resolves them), each ``namedtuple``'s
``__new__``. The text is the same on every run, so is its code: this keeps it in one
file per interpreter build and hands it back instead of parsing and compiling again.

Only the console script uses it (``scalable.cli.run``), never a process that imports
scalable as a library. What is looked up is exactly what would be compiled: the key is
the source, the file name, the mode and the optimisation level, and the code is
compiled as those call sites compile it (no inherited ``__future__`` flags: neither
``dataclasses``, ``typing`` nor ``collections`` has one). The file is read only when
this user owns it and its folder and nobody else may write either (it holds code this
process runs); it is written as ``__pycache__`` is, never when ``PYTHONDONTWRITEBYTECODE``
is set, and ``SCALABLE_CODE_CACHE=off`` turns the whole thing off.
"""

from __future__ import annotations

import builtins
import marshal
import os
import sys
from pathlib import Path
from types import CodeType
from typing import Any

# A file over this many entries keeps only what the run that writes it used (upgrades
# leave the old versions' code behind otherwise).
MAX_ENTRIES = 4096
# The file's first item: a file from another format or interpreter build is not read.
_HEADER = ("scalable-code-cache", 1, sys.hexversion, sys.implementation.cache_tag)

Key = tuple[str, str, str, int]  # source, file name, mode, optimisation level


def default_path(command: str) -> Path | None:
    """``$XDG_CACHE_HOME/scalable/code-<python>-<command>.marshal`` (``~/.cache`` by default).

    One file per command: each loads a set of its own (``status`` and ``dashboard`` load
    distributed or Textual as well), and a ``plan`` reads only what a ``plan`` needs."""
    if os.environ.get("SCALABLE_CODE_CACHE", "").lower() in ("0", "off", "false", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None  # no home to speak of: nothing is kept
    tag = sys.implementation.cache_tag or "python"
    return Path(base) / "scalable" / f"code-{tag}-{sys.hexversion:x}-{command}.marshal"


def _trusted(fd: int, folder: Path) -> bool:
    """Ours and writable only by us: the file open at ``fd`` and the folder holding it."""
    if not hasattr(os, "geteuid"):
        return False  # no owners to check (Windows): nothing is read
    uid = os.geteuid()
    return all(st.st_uid == uid and not st.st_mode & 0o022
               for st in (os.fstat(fd), os.stat(folder)))


class CodeCache:
    """Code for generated source, read from ``path`` once and written back when it grew."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[Key, CodeType] = {}
        self.used: set[Key] = set()
        self.added: dict[Key, CodeType] = {}
        self._load()

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return
        try:
            if not _trusted(fd, self.path.parent):
                return
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
            header, entries = marshal.loads(data)
            if header == _HEADER and isinstance(entries, dict):
                self.known = entries
        except (OSError, ValueError, EOFError, TypeError):
            pass  # unreadable or from elsewhere: compiled afresh and rewritten
        finally:
            os.close(fd)

    def code(self, source: str, filename: str, mode: str) -> CodeType:
        key = (source, filename, mode, sys.flags.optimize)
        found = self.known.get(key)
        if found is None:
            found = self.added.get(key)
            if found is None:
                found = builtins.compile(source, filename, mode, dont_inherit=True)
                self.added[key] = found
        else:
            self.used.add(key)
        return found

    def save(self) -> None:
        """Write the file if this run compiled anything new (atomically, mode 0600)."""
        if not self.added or sys.dont_write_bytecode:
            return
        if len(self.known) + len(self.added) > MAX_ENTRIES:
            kept = {k: self.known[k] for k in self.used}
        else:
            kept = dict(self.known)
        kept.update(self.added)
        from scalable.private_files import write_private

        try:
            write_private(self.path, marshal.dumps((_HEADER, kept)))
        except OSError:
            return  # a read-only or full home: the next run compiles again
        self.known, self.added = kept, {}

    # The three call sites' own calls; anything else goes to the builtin as it came. The
    # globals are required: without them the builtin would run in *this* frame's module,
    # not the caller's (dataclasses and namedtuple always pass theirs).
    def exec_(self, source: Any, globals_: Any, locals_: Any = None) -> None:
        if isinstance(source, str):
            source = self.code(source, "<string>", "exec")
        builtins.exec(source, globals_, locals_)

    def eval_(self, source: Any, globals_: Any, locals_: Any = None) -> Any:
        if isinstance(source, str):
            source = self.code(source, "<string>", "eval")
        return builtins.eval(source, globals_, locals_)

    def compile_(self, source: Any, filename: Any, mode: str, flags: int = 0,
                 dont_inherit: bool = False, optimize: int = -1) -> Any:
        if isinstance(source, str) and isinstance(filename, str) and not flags and optimize == -1:
            return self.code(source, filename, mode)
        return builtins.compile(source, filename, mode, flags, dont_inherit, optimize)


# The module globals that shadow a builtin for the one place each generates code.
_SITES = (("dataclasses", "exec", "exec_"), ("typing", "compile", "compile_"),
          ("collections", "eval", "eval_"))
_installed: list[CodeCache] = []


def install(command: str = "scalable", path: Path | None = None) -> CodeCache | None:
    """Serve ``dataclasses``, ``typing`` and ``namedtuple`` their code from ``command``'s
    cache (or the file at ``path``).

    Idempotent; returns the cache in use (None when it is turned off). The file is
    written at exit."""
    if _installed:
        return _installed[0]
    path = path or default_path(command)
    if path is None:
        return None
    import atexit
    import importlib

    cache = CodeCache(path)
    for module, name, method in _SITES:
        setattr(importlib.import_module(module), name, getattr(cache, method))
    _installed.append(cache)
    atexit.register(cache.save)
    return cache


def uninstall() -> None:
    """Give the three modules their builtins back (tests); nothing is written."""
    import atexit
    import importlib

    for cache in _installed:
        atexit.unregister(cache.save)
    _installed.clear()
    for module, name, _ in _SITES:
        vars(importlib.import_module(module)).pop(name, None)
