"""Leak guards (issue 11, item 9): capacity whose state is lost still ends by itself.

Every provider's scheduler runs with Dask's ``--idle-timeout`` (``idle_timeout:``,
default 1 hour) and every worker with ``--death-timeout``: here on the local target with
real processes, the state file deleted (lost) after apply.
"""

from __future__ import annotations

import textwrap
import time

import pytest
from scalable.manifest.loader import load_manifest
from scalable.providers.processes import ProcessRef
from scalable.spec import build_target

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow


def test_with_its_state_lost_local_capacity_ends_when_idle(project: Project) -> None:
    project.write("""
        project: {name: leak}
        targets:
          local:
            provider: local
            max_workers: 2
            idle_timeout: 3s
        """)
    # --no-wait: a 3 s idle scheduler may be gone before its workers register.
    project.run("apply", "--auto-approve", "--no-wait", check=True)
    state = project.state()
    refs = [
        ProcessRef(r["meta"]["pid"], r["meta"]["start_time"])
        for r in state["resources"]
        if "pid" in r["meta"]
    ]
    assert len(refs) == 3 and all(r.alive() for r in refs)
    (project.root / ".scalable" / "local" / "state.json").unlink()  # lost
    deadline = time.monotonic() + 180  # a bound on waiting, not a timing assertion
    while any(r.alive() for r in refs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(r.alive() for r in refs), "the scheduler and workers kept running"
    assert our_processes(project.root) == []


@pytest.mark.parametrize(
    "provider,extra",
    [("local", ""), ("slurm", ""), ("slurm", "scheduler: {placement: job}\n"), ("aws", "")],
)  # GKE's: tests/integration/test_gke_provider.py (needs the fake cluster)
def test_every_providers_scheduler_asks_for_the_idle_timeout(
    tmp_path, provider: str, extra: str
) -> None:
    (tmp_path / "scalable.yaml").write_text(
        f"targets:\n  t:\n    provider: {provider}\n    idle_timeout: 20m\n"
        + textwrap.indent(extra, "    ")
    )
    spec = build_target(load_manifest(tmp_path / "scalable.yaml"), "t")
    assert spec.idle_timeout == 1200.0
    from scalable.providers.base import provider_class

    p = provider_class(provider)(spec, spec.workdir)
    sched = next(r for r in p.desired() if r.address == "scheduler")
    assert sched.attributes["idle_timeout"] == 1200.0  # a change is a planned change
    (tmp_path / "scalable.yaml").write_text(
        f"targets:\n  t:\n    provider: {provider}\n    idle_timeout: false\n"
        + textwrap.indent(extra, "    ")
    )
    off = build_target(load_manifest(tmp_path / "scalable.yaml"), "t")
    assert off.idle_timeout is None
