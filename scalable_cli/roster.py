"""Who has registered with the scheduler: what ``apply`` waits on.

Two sources answer the same two questions (which workers are in, and which package
versions the scheduler and each worker run):

- :class:`FileRoster`: a scheduler on this machine (the local target) runs this module
  as a preload (``--preload scalable.roster``) with :data:`ROSTER_ENV` naming a file,
  and rewrites that file, atomically, as workers arrive and leave. Reading it costs
  ``apply`` nothing like importing distributed and connecting a Client (about 0.8 s of
  CPU, on a machine whose cores are busy starting the workers).
- :class:`ClientRoster`: a Dask Client, for every other scheduler.

Standard library only at import: the CLI imports this module.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

ROSTER_ENV = "SCALABLE_ROSTER"
PRELOAD = "scalable.roster"
PLUGIN_NAME = "scalable-roster"
# Packages compared between client, scheduler and workers (scalable.versions.PACKAGES).
_DISTS = ("dask", "distributed", "cloudpickle", "msgpack")


class Roster(Protocol):
    def names(self) -> set[str]:
        """The names of the workers registered now."""

    def versions(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(what ``Client.get_versions()`` returns, worker address → name)."""

    def close(self) -> None: ...


def client_versions() -> dict[str, Any]:
    """This process's versions, as distributed's ``get_versions()`` reports them (the
    same sources: ``sys.version_info`` and the installed distributions' metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str | None] = {"python": ".".join(map(str, sys.version_info))}
    for dist in _DISTS:
        try:
            packages[dist] = version(dist)
        except PackageNotFoundError:
            packages[dist] = None
    return {"packages": packages}


def read(path: Path) -> dict[str, Any] | None:
    """The roster file's content; None while it is missing (or being replaced)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class FileRoster:
    """The roster a local scheduler writes (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, Any] = {}

    @classmethod
    def wait_for(cls, path: Path, timeout: float) -> FileRoster | None:
        """The roster at ``path`` once its scheduler has written it; None if it does
        not within ``timeout`` (a scheduler started before rosters existed)."""
        deadline = time.monotonic() + timeout
        while read(path) is None:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        return cls(path)

    def _workers(self) -> dict[str, Any]:
        data = read(self.path)
        if data is not None:
            self._last = data
        workers = self._last.get("workers")
        return workers if isinstance(workers, dict) else {}

    def names(self) -> set[str]:
        return {str(w.get("name")) for w in self._workers().values()}

    def versions(self) -> tuple[dict[str, Any], dict[str, str]]:
        workers = self._workers()
        table = self._last.get("versions") or []

        def of(w: dict[str, Any]) -> Any:
            i = w.get("v")
            return table[i] if isinstance(i, int) and 0 <= i < len(table) else None

        return ({"client": client_versions(), "scheduler": self._last.get("scheduler"),
                 "workers": {a: of(w) for a, w in workers.items()}},
                {a: str(w.get("name", a)) for a, w in workers.items()})

    def close(self) -> None:
        pass


class ClientRoster:
    """The same answers from a connected ``distributed.Client``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def names(self) -> set[str]:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {str(w.get("name")) for w in info.values()}

    def versions(self) -> tuple[dict[str, Any], dict[str, str]]:
        versions = self.client.get_versions()
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return versions, {addr: str(w.get("name", addr)) for addr, w in info.items()}

    def close(self) -> None:
        self.client.close()


# -- on the scheduler ----------------------------------------------------------------

# Writes are coalesced: a burst of registrations (an adaptive scale-up of hundreds) costs
# one rewrite per interval, not one per worker.
WRITE_EVERY = 0.1


def snapshot(workers: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The file's content: each distinct versions report once, workers pointing at it."""
    seen: dict[str, int] = {}
    table: list[Any] = []
    entries = {}
    for addr, ws in workers.items():
        key = json.dumps(ws.versions, sort_keys=True, default=str)
        if key not in seen:
            seen[key] = len(table)
            table.append(ws.versions)
        entries[addr] = {"name": str(ws.name), "v": seen[key]}
    return {"scheduler": own, "versions": table, "workers": entries}


def _write(path: Path, data: dict[str, Any]) -> None:
    # Best effort: a roster that cannot be written leaves apply to ask through a Client
    # (it waits for the file two seconds); it never stops the scheduler.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, default=str))
        os.replace(tmp, path)
    except OSError as exc:
        import logging  # a failure's path only; `plan` imports this module

        logging.getLogger(__name__).warning("roster: cannot write %s: %s", path, exc)


def dask_setup(scheduler: Any) -> None:
    """Preload entry point: ``dask scheduler --preload scalable.roster``."""
    value = os.environ.get(ROSTER_ENV)
    if not value:
        return
    import asyncio

    from distributed.diagnostics.plugin import SchedulerPlugin
    from distributed.versions import get_versions

    path, own = Path(value), get_versions()

    class _Roster(SchedulerPlugin):
        name = PLUGIN_NAME

        def __init__(self) -> None:
            self.due = False

        def flush(self) -> None:
            self.due = False
            _write(path, snapshot(scheduler.workers, own))

        def changed(self) -> None:
            if not self.due:
                self.due = True
                asyncio.get_running_loop().call_later(WRITE_EVERY, self.flush)

        def add_worker(self, scheduler: Any, worker: str) -> None:
            self.changed()

        def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
            self.changed()

    _write(path, snapshot(scheduler.workers, own))
    scheduler.add_plugin(_Roster(), name=PLUGIN_NAME)
