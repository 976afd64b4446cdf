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
        return ({"client": client_versions(), "scheduler": self._last.get("scheduler"),
                 "workers": {a: w.get("versions") for a, w in workers.items()}},
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


def _write(path: Path, scheduler: Any, own: dict[str, Any], gone: str | None = None) -> None:
    workers = {addr: {"name": str(ws.name), "versions": ws.versions}
               for addr, ws in scheduler.workers.items() if addr != gone}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"scheduler": own, "workers": workers}, default=str))
    os.replace(tmp, path)


def dask_setup(scheduler: Any) -> None:
    """Preload entry point: ``dask scheduler --preload scalable.roster``."""
    value = os.environ.get(ROSTER_ENV)
    if not value:
        return
    from distributed.diagnostics.plugin import SchedulerPlugin
    from distributed.versions import get_versions

    path, own = Path(value), get_versions()

    class _Roster(SchedulerPlugin):
        name = PLUGIN_NAME

        def add_worker(self, scheduler: Any, worker: str) -> None:
            _write(path, scheduler, own)

        def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
            _write(path, scheduler, own, gone=worker)

    _write(path, scheduler, own)
    scheduler.add_plugin(_Roster(), name=PLUGIN_NAME)
