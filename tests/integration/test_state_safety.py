"""State that must not lie (issue 11, items 5 and 6), with real `scalable` processes.

- A target whose provider changed refuses every command, naming the recorded provider
  and the way out; nothing is reported deleted and the state is left as it was.
- ``state rm ADDR`` forgets: the next plans and a destroy leave the resource alone,
  although it still carries the state's lineage.
"""

from __future__ import annotations

import json

import pytest
from scalable.providers.processes import ProcessRef, terminate

from tests.conftest import Project

pytestmark = pytest.mark.slow

LOCAL = """\
project: {name: itest}
targets:
  t:
    provider: local
    max_workers: 1
    threads_per_worker: 1
"""


def state(project: Project) -> dict:
    return json.loads((project.root / ".scalable" / "t" / "state.json").read_text())


def test_a_changed_provider_is_refused_by_every_command(project: Project) -> None:
    folder = project.root / ".scalable" / "t"
    folder.mkdir(parents=True)
    recorded = {
        "format_version": 1,
        "scalable_version": "0.1.0",
        "serial": 4,
        "lineage": "0123abcd-4567-89ef-0123-456789abcdef",
        "target": "t",
        "provider": "aws",
        "manifest_digest": "",
        "owner": "cli",
        "scale": {},
        "outputs": {"scheduler_address": "tls://198.51.100.7:8786"},
        "resources": [
            {
                "address": "scheduler",
                "type": "aws.ec2_instance",
                "status": "ready",
                "idempotency_key": "0123abcd-scheduler-aaaa",
                "id": "i-0123456789abcdef0",
            },
            {
                "address": "workers.default[0]",
                "type": "aws.ec2_instance",
                "status": "ready",
                "idempotency_key": "0123abcd-w-bbbb",
                "id": "i-0fedcba9876543210",
                "depends_on": ["scheduler"],
            },
        ],
    }
    text = json.dumps(recorded, indent=2)
    (folder / "state.json").write_text(text)
    project.write(LOCAL)
    for args in (
        ["plan"],
        ["apply", "--auto-approve"],
        ["destroy", "--auto-approve"],
        ["state", "list"],
        ["output"],
        ["state", "rm", "scheduler"],
    ):
        r = project.run(*args, "-t", "t")
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        err = r.stderr.splitlines()
        assert err[0].startswith("Error: target 't': its state"), (args, r.stderr)
        assert "made by provider 'aws'" in err[0] and "now says provider 'local'" in err[0]
        assert err[1].startswith("  hint: to tear them down, set `provider: aws` back")
        assert "Destruction complete" not in r.stdout and "complete!" not in r.stdout
        assert "Traceback" not in r.stderr
    assert (folder / "state.json").read_text() == text  # never emptied, never rewritten

    # The way out: the recorded provider's destroy. (Here: an empty state is taken over.)
    recorded["resources"] = []
    recorded["outputs"] = {}
    (folder / "state.json").write_text(json.dumps(recorded))
    assert "Plan: 2 to add" in project.run("plan", "-t", "t", check=True).stdout


def test_state_rm_forgets_for_good(project: Project) -> None:
    project.write(LOCAL.replace("max_workers: 1", "max_workers: 2"))
    project.run("apply", "--auto-approve", "-t", "t", check=True)
    before = {r["address"]: r for r in state(project)["resources"]}
    kept = before["workers.default[1]"]
    ref = ProcessRef(kept["meta"]["pid"], kept["meta"]["start_time"])
    assert ref.alive()

    out = project.run("state", "rm", "workers.default[1]", "-t", "t", check=True).stdout
    assert "scalable will not touch it again" in out
    after = state(project)
    assert "workers.default[1]" not in {r["address"] for r in after["resources"]}
    assert [(f["address"], f["id"], f["idempotency_key"]) for f in after["forgotten"]] == [
        ("workers.default[1]", kept["id"], kept["idempotency_key"])
    ]

    try:
        plan = project.run("plan", "-t", "t", check=True).stdout
        # Found by its lineage tag, yet not an orphan to delete: it is forgotten.
        assert "orphan" not in plan and "destroy" not in plan.split("Plan:")[0], plan
        assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan  # a new [1]
        # (Not asserted alive after this apply: the new [1] registers under the same Dask
        # worker name, and Dask, not scalable, settles such a clash.)
        project.run("apply", "--auto-approve", "-t", "t", check=True)
        planned = project.run("plan", "--destroy", "-t", "t", check=True).stdout
        assert (
            "orphan" not in planned and "Plan: 0 to add, 0 to change, 3 to destroy." in planned
        ), planned
        destroyed = project.run("destroy", "--auto-approve", "-t", "t", check=True).stdout
        # The scheduler and the two recorded workers; not the forgotten one (its Dask
        # worker ends with the scheduler it joined: Dask's doing, not a delete of ours).
        assert "Resources: 0 added, 0 changed, 3 destroyed." in destroyed
        assert "workers.default[1]: Destruction complete" in destroyed  # the new [1]
        assert destroyed.count("Destruction complete") == 3
        assert state(project)["resources"] == []
        assert len(state(project)["forgotten"]) == 1  # kept across the destroy
    finally:
        terminate(ref, grace=2)


def test_scaling_up_without_the_tls_material_is_refused_before_anything_is_made(
    project: Project,
) -> None:
    project.write(LOCAL + "    tls: true\n")
    project.run("apply", "--auto-approve", "-t", "t", check=True)
    before = (project.root / ".scalable" / "t" / "state.json").read_text()
    tls = project.root / ".scalable" / "t" / "tls"
    moved = project.root / "tls-elsewhere"
    tls.rename(moved)  # a CI runner with the state but not the keys
    try:
        project.write(LOCAL.replace("max_workers: 1", "max_workers: 3") + "    tls: true\n")
        r = project.run("apply", "--auto-approve", "-t", "t")
        assert r.returncode == 1, r.stdout + r.stderr
        err = r.stderr.splitlines()
        assert err[0].startswith(
            "Error: target 't': its scheduler runs with TLS, but this "
            "machine lacks ca.pem, node.pem, node-key.pem"
        ), r.stderr
        assert "new workers could never join it; nothing was changed" in err[0]
        assert err[1].startswith("  hint: copy ") and "from the machine that applied" in err[1]
        assert (project.root / ".scalable" / "t" / "state.json").read_text() == before
        assert not tls.exists()  # no new CA made behind the user's back
    finally:
        moved.rename(tls)
    # With the material back, the same apply converges; destroy needs none of it.
    out = project.run("apply", "--auto-approve", "-t", "t", check=True).stdout
    assert "workers 3/3 ready" in out
    project.run("destroy", "--auto-approve", "-t", "t", check=True)
