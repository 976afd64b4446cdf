"""Do the client, the scheduler and the workers run software that can talk and unpickle
each other's tasks? Compared from Dask's own ``Client.get_versions()``.

What breaks, and is an error before any work is submitted (docs/guides/worker-groups.rst,
"Versions that match"):

- Python major.minor: pickled functions and code objects are not portable across them;
- cloudpickle major: its pickle format changes between majors;
- dask or distributed at all: the graph spec, the task protocol and the scheduler's
  messages change between releases, patch releases included.

What is only a warning: a different Python patch, cloudpickle minor/patch, msgpack (the
wire format is stable across its releases), a package missing on one side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scalable.errors import ScalableError

PACKAGES = ("python", "dask", "distributed", "cloudpickle", "msgpack")
MISSING = "missing"


class VersionMismatch(ScalableError):
    """Client, scheduler and workers run versions that cannot exchange tasks."""


@dataclass(frozen=True)
class Difference:
    package: str
    client: str | None
    scheduler: str | None
    workers: dict[str, str]  # version → a worker (name or address) that has it
    fatal: bool

    def line(self) -> str:
        """``distributed: client 2025.1.0, scheduler 2025.1.0, workers 2000.1.0 (w-0)``."""
        ws = ", ".join(f"{v} ({who})" for v, who in sorted(self.workers.items()))
        return (f"{self.package}: client {self.client or 'missing'}, scheduler "
                f"{self.scheduler or 'missing'}, workers {ws or '-'}")


@dataclass
class Report:
    differences: list[Difference] = field(default_factory=list)

    @property
    def errors(self) -> list[Difference]:
        return [d for d in self.differences if d.fatal]

    @property
    def warnings(self) -> list[Difference]:
        return [d for d in self.differences if not d.fatal]


def _parts(v: str | None) -> tuple[str, ...]:
    return tuple((v or "").split("."))


def fatal(package: str, a: str | None, b: str | None) -> bool:
    """Whether two versions of ``package`` cannot exchange pickled tasks."""
    if a is None or b is None or a == b:
        return False
    if package == "python":
        return _parts(a)[:2] != _parts(b)[:2]
    if package == "cloudpickle":
        return _parts(a)[:1] != _parts(b)[:1]
    return package in ("dask", "distributed")


def _packages(info: Mapping[str, Any] | None) -> dict[str, str | None]:
    packages = (info or {}).get("packages") or {}
    return {p: (str(packages[p]) if packages.get(p) is not None else None) for p in PACKAGES}


def compare(versions: Mapping[str, Any], names: Mapping[str, str] | None = None) -> Report:
    """Differences between the client, the scheduler and each worker
    (``versions``: what ``Client.get_versions()`` returns; ``names``: address → name)."""
    client = _packages(versions.get("client"))
    scheduler = _packages(versions.get("scheduler"))
    workers = {(names or {}).get(addr, addr): _packages(info)
               for addr, info in (versions.get("workers") or {}).items()}
    report = Report()
    for pkg in PACKAGES:
        ref = client[pkg]
        by_version: dict[str, str] = {}  # version → the first worker that has it
        for who, pk in sorted(workers.items()):
            by_version.setdefault(pk[pkg] or MISSING, who)
        others = [scheduler[pkg], *(None if v == MISSING else v for v in by_version)]
        if all(o == ref for o in others):
            continue
        report.differences.append(Difference(
            package=pkg, client=ref, scheduler=scheduler[pkg], workers=by_version,
            fatal=any(fatal(pkg, ref, o) for o in others)))
    return report


def check(client: Any, hook: Any = None) -> Report:
    """Compare ``client``'s versions with its scheduler's and workers'; raise
    :class:`VersionMismatch` on a fatal difference, warn through ``hook`` otherwise."""
    from scalable.roster import ClientRoster

    versions, names = ClientRoster(client).versions()
    return check_versions(versions, names, hook)


def check_versions(versions: Mapping[str, Any], names: Mapping[str, str],
                   hook: Any = None) -> Report:
    """:func:`check` on versions already gathered (``versions`` as
    ``Client.get_versions()`` returns them; ``names``: worker address → name)."""
    report = compare(versions, names)
    if report.errors:
        raise VersionMismatch(
            "the client, scheduler and workers run versions that cannot exchange tasks: "
            + "; ".join(d.line() for d in report.errors),
            hint="run the workers in an image/environment with the client's versions "
                 "(the default images follow this machine's distributed and Python); "
                 "see docs/guides/worker-groups.rst, 'Versions that match'",
        )
    if hook is not None:
        for d in report.warnings:
            hook.warning(f"versions differ (harmless for pickling): {d.line()}")
    return report
