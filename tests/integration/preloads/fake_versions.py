"""A ``dask worker --preload`` for tests only: this worker process reports other package
versions to ``Client.get_versions()`` than it has, so a version mismatch can be tested
with a real worker without building a second environment. The versions come from
``SCALABLE_TEST_FAKE_VERSIONS`` (JSON, e.g. ``{"distributed": "2000.1.0"}``); nothing
else in the process changes."""

from __future__ import annotations

import json
import os

import distributed.versions as versions

_FAKE: dict[str, str] = json.loads(os.environ.get("SCALABLE_TEST_FAKE_VERSIONS", "{}"))
# Dask may import a preload file more than once in a process: keep the original.
_real = getattr(versions, "_scalable_real_version_cached", versions._version_cached)
versions._scalable_real_version_cached = _real  # type: ignore[attr-defined]


def _faked(pkg: str) -> str | None:
    return _FAKE.get(pkg) or _real(pkg)


versions._version_cached = _faked  # type: ignore[assignment]
