"""Versions that match, with real Dask processes on the local target.

One group's workers load ``tests/integration/preloads/fake_versions.py`` (``--preload``):
that worker process reports a different ``distributed`` (or ``msgpack``) to
``Client.get_versions()`` — a stand-in for a worker image built with other versions,
since a second environment per test would be too slow. Everything else is real: the
session applies, the workers register, and the check runs before any work is submitted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import scalable
from scalable import ScalableSession
from scalable.versions import VersionMismatch

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow

PRELOAD = Path(__file__).parent / "preloads" / "fake_versions.py"


def manifest(fake: dict[str, str]) -> str:
    return f"""
        project: {{name: versions}}
        targets:
          local:
            provider: local
            env: {{SCALABLE_TEST_FAKE_VERSIONS: '{json.dumps(fake)}'}}
            groups:
              cpu: {{tags: [cpu], max_workers: 1}}
              odd: {{tags: [odd], max_workers: 1, worker_extra_args: [--preload, "{PRELOAD}"]}}
        """


def test_a_worker_with_another_distributed_stops_the_session_before_work(
        project: Project) -> None:
    import distributed

    project.write(manifest({"distributed": "2000.1.0"}))
    with (ScalableSession.from_yaml(project.root / "scalable.yaml") as session,
          pytest.raises(VersionMismatch) as err):
        session.start()
    assert err.value.message.endswith(
        f"distributed: client {distributed.__version__}, scheduler {distributed.__version__}"
        f", workers 2000.1.0 (workers.odd[0]), {distributed.__version__} (workers.cpu[0])")
    assert our_processes(project.root) == []  # the session's capacity is gone again


def test_cli_apply_says_so_and_a_harmless_difference_only_warns(
        project: Project, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(manifest({"distributed": "2000.1.0"}))
    out = project.run("apply", "--auto-approve")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Apply complete!" in out.stdout  # the capacity is there, and in state
    assert ("Error: the client, scheduler and workers run versions that cannot exchange "
            "tasks: distributed: client") in out.stderr
    assert "Traceback" not in out.stderr
    project.run("destroy", "--auto-approve", check=True)

    project.write(manifest({"msgpack": "0.0.1"}))
    out = project.run("apply", "--auto-approve", check=True)
    assert "Warning: versions differ (harmless for pickling): msgpack:" in out.stdout
    assert "0.0.1 (workers.odd[0])" in out.stdout
    # Attaching to the CLI's capacity checks again: a warning in the scalable logger.
    monkeypatch.chdir(project.root)
    with caplog.at_level("WARNING", logger="scalable"):
        with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
            session.start()
            assert session.attached
        with scalable.connect("local") as client:
            assert client.submit(lambda: 6 * 7).result(timeout=30) == 42
    warned = [r.getMessage() for r in caplog.records if "harmless" in r.getMessage()]
    assert len(warned) == 2 and all("msgpack" in w for w in warned)
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []
