"""The local target end to end: real `scalable` subprocesses, real Dask processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from distributed import Client
from scalable.providers.processes import ProcessRef, terminate

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow


def manifest(workers: int, processes: bool = True, **extra: object) -> str:
    """A local target; ``extra`` keys are added to it (values as YAML flow text)."""
    keys = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    return (
        "project: {name: itest}\n"
        "targets:\n"
        "  local:\n"
        "    provider: local\n"
        f"    max_workers: {workers}\n"
        "    threads_per_worker: 1\n"
        f"    processes: {str(processes).lower()}\n"
        + keys
    )


def names(project: Project) -> set[str]:
    with Client(project.state()["outputs"]["scheduler_address"], timeout=10) as c:
        return {str(w["name"]) for w in c.scheduler_info(n_workers=-1)["workers"].values()}


def test_apply_compute_resize_and_destroy(project: Project) -> None:
    project.write(manifest(4))
    first = project.run("plan", "--detailed-exitcode")
    assert first.returncode == 2, first.stderr
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in first.stdout

    out = project.run("apply", "--auto-approve", check=True).stdout
    assert "workers 4/4 ready" in out
    assert "Apply complete! Resources: 5 added, 0 changed, 0 destroyed." in out
    addr = project.run("output", "scheduler_address", "--raw", check=True).stdout.strip()
    assert addr.startswith("tcp://127.0.0.1:")
    with Client(addr, timeout=10) as c:
        assert sum(c.gather(c.map(lambda x: x + 1, range(100)))) == 5050

    again = project.run("plan", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout

    # 4 → 6: two more workers.
    project.write(manifest(6))
    grow = project.run("plan", "--detailed-exitcode")
    assert grow.returncode == 2
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in grow.stdout
    assert '+ local.process "workers.default[5]"' in grow.stdout
    project.run("apply", "--auto-approve", check=True)
    assert names(project) == {f"workers.default[{i}]" for i in range(6)}

    # Keep data on a worker that is about to go: graceful retirement moves it first.
    with Client(addr, timeout=10) as c:
        victim = next(a for a, w in c.scheduler_info(n_workers=-1)["workers"].items()
                      if w["name"] == "workers.default[5]")
        fut = c.submit(lambda: list(range(1000)), workers=[victim], pure=False)
        fut.result()
        # 6 → 2: four retire.
        project.write(manifest(2))
        shrink = project.run("plan")
        assert "Plan: 0 to add, 0 to change, 4 to destroy." in shrink.stdout
        out = project.run("apply", "--auto-approve", check=True).stdout
        assert "retiring 4 worker(s) gracefully" in out
        assert fut.result(timeout=10)[-1] == 999  # still there: moved, not lost
    assert names(project) == {"workers.default[0]", "workers.default[1]"}
    assert len(project.state()["resources"]) == 3

    out = project.run("destroy", "--auto-approve", check=True).stdout
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in out
    assert our_processes(project.root) == []
    st = project.state()
    assert st["resources"] == [] and st["outputs"] == {}


def test_threaded_host_runs_all_workers_in_one_process(project: Project) -> None:
    project.write(manifest(3, processes=False))
    project.run("apply", "--auto-approve", check=True)
    st = project.state()
    host = next(r for r in st["resources"] if r["address"] == "workers.default[0]")
    assert host["attributes"]["workers"] == 3
    with Client(st["outputs"]["scheduler_address"], timeout=10) as c:
        pids = c.run(os.getpid)
    assert len(pids) == 3 and set(pids.values()) == {host["meta"]["pid"]}
    project.write(manifest(4, processes=False))
    plan = project.run("plan").stdout
    assert "must be replaced" in plan and "workers: 3 → 4" in plan
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_drift_worker_killed_and_scheduler_killed(project: Project) -> None:
    project.write(manifest(2))
    project.run("apply", "--auto-approve", check=True)
    st = project.state()
    worker = next(r for r in st["resources"] if r["address"] == "workers.default[1]")
    os.killpg(worker["meta"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    plan = project.run("plan", "--detailed-exitcode")
    assert plan.returncode == 2
    assert "Note: Objects have changed outside of scalable" in plan.stdout
    assert f"workers.default[1] (local.process) is gone: process {worker['meta']['pid']} exited" \
        in plan.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    project.run("apply", "--auto-approve", check=True)
    assert names(project) == {"workers.default[0]", "workers.default[1]"}

    sched = project.state()["resources"][0]
    assert sched["address"] == "scheduler"
    os.killpg(sched["meta"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    plan = project.run("plan").stdout
    assert "scheduler (local.process) is gone" in plan
    assert "Plan: 3 to add, 0 to change, 2 to destroy." in plan  # workers follow it
    out = project.run("apply", "--auto-approve", check=True).stdout
    assert "workers 2/2 ready" in out
    new_addr = project.state()["outputs"]["scheduler_address"]
    with Client(new_addr, timeout=10) as c:
        assert c.submit(sum, [1, 2, 3]).result() == 6
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


@pytest.mark.parametrize("delay", [0.15, 0.6, 1.2, "after-scheduler"])
def test_kill_9_during_apply_loses_nothing(project: Project, delay: float | str) -> None:
    project.write(manifest(3))
    env = {**os.environ, "CI": "1", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalable", "apply", "--auto-approve"],
        cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    if delay == "after-scheduler":
        assert proc.stdout is not None
        for line in proc.stdout:
            if "created (scheduler)" in line:
                break
    else:
        time.sleep(float(delay))
    proc.kill()
    proc.wait()
    # The next plan is consistent: no error, and it converges.
    plan = project.run("plan")
    assert plan.returncode == 0, plan.stderr
    project.run("apply", "--auto-approve", check=True)
    st = project.state()
    assert all(r["status"] == "ready" for r in st["resources"])
    assert names(project) == {f"workers.default[{i}]" for i in range(3)}
    # Nothing unrecorded: every live process of ours is in state.
    recorded = {r["meta"]["pid"] for r in st["resources"]}
    leaders = {ref.pid for ref in our_processes(project.root) if os.getpgid(ref.pid) == ref.pid}
    assert leaders == recorded
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []


def test_concurrent_applies_take_turns(project: Project) -> None:
    project.write(manifest(2))
    env = {**os.environ, "CI": "1", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "scalable", "apply", "--auto-approve", "--lock-timeout", "90s"]
    procs = [subprocess.Popen(cmd, cwd=project.root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    texts = [o[0] for o in outs]
    assert sum("Resources: 3 added" in t for t in texts) == 1
    assert sum("No changes." in t for t in texts) == 1
    assert len(project.state()["resources"]) == 3

    # A holder that keeps the lock: the other fails fast, naming it, state intact.
    before = project.state()
    from scalable.state import LocalStore

    store = LocalStore(project.root / ".scalable" / "local")
    with store.lock("apply") as held:
        res = project.run("apply", "--auto-approve", "--lock-timeout", "1s")
    assert res.returncode == 1
    assert "Error: the state of this target is locked" in res.stderr
    assert held.id in res.stderr and "Operation: apply" in res.stderr
    assert project.state() == before
    project.run("destroy", "--auto-approve", check=True)


def test_saved_plan_applies_exactly_and_goes_stale(project: Project) -> None:
    project.write(manifest(1))
    project.run("plan", "-o", "one.plan", check=True)
    project.write(manifest(2))  # the manifest changes after the plan was saved
    stale = project.run("apply", "one.plan")
    assert stale.returncode == 1 and "Saved plan is stale: the manifest changed" in stale.stderr
    project.run("plan", "-o", "two.plan", check=True)
    out = project.run("apply", "two.plan", check=True).stdout  # a saved plan is approval
    assert "Resources: 3 added" in out
    again = project.run("apply", "two.plan")
    assert again.returncode == 1 and "Saved plan is stale" in again.stderr
    project.run("destroy", "--auto-approve", check=True)


def test_approval_rules(project: Project) -> None:
    project.write(manifest(1))
    res = project.run("apply")  # CI=1 and no TTY: refuse
    assert res.returncode == 1
    assert res.stderr.startswith("Error: approval needed")
    assert "--auto-approve" in res.stderr
    assert not (project.root / ".scalable" / "local" / "state.json").exists()
    assert our_processes(project.root) == []


def test_env_lets_a_bare_client_connect(project: Project) -> None:
    project.write(manifest(1))
    project.run("apply", "--auto-approve", check=True)
    exports = project.run("env", check=True).stdout
    code = (
        f"{exports.replace('export ', '').replace(chr(10), '; ')}\n"
        "from distributed import Client\n"
        "with Client(timeout=10) as c: print(c.submit(lambda: 41 + 1).result())\n"
    )
    env_lines = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
    res = subprocess.run(
        [sys.executable, "-c", code.split("\n", 1)[1]], capture_output=True, text=True,
        env={**os.environ, **{k: v.strip("'") for k, v in env_lines.items()}}, timeout=60,
    )
    assert res.stdout.strip() == "42", res.stderr
    status = project.run("status", "--json", check=True)
    doc = json.loads(status.stdout)
    assert [w["name"] for w in doc["workers"]] == ["workers.default[0]"]
    assert {r["observed"] for r in doc["resources"]} == {"alive"}
    project.run("destroy", "--auto-approve", check=True)


def test_state_commands(project: Project) -> None:
    project.write(manifest(1))
    project.run("apply", "--auto-approve", check=True)
    assert project.run("state", "list", check=True).stdout.split() == [
        "scheduler", "workers.default[0]"]
    shown = json.loads(project.run("state", "show", "workers.default[0]", check=True).stdout)
    assert shown["status"] == "ready" and shown["id"].startswith("pid:")
    pid = shown["meta"]["pid"]
    missing = project.run("state", "show", "nope")
    assert missing.returncode == 1 and "Error: no resource 'nope'" in missing.stderr
    project.run("state", "rm", "workers.default[0]", check=True)
    forgotten = ProcessRef(pid, shown["meta"]["start_time"])
    assert forgotten.alive()  # forgotten, not deleted
    # Tagged with our lineage but forgotten: never an orphan to delete (Terraform's
    # meaning of state rm); the manifest's worker is created anew.
    plan = project.run("plan").stdout
    assert "orphan" not in plan and "Plan: 1 to add, 0 to change, 0 to destroy." in plan
    out = project.run("destroy", "--auto-approve", check=True).stdout
    assert "Resources: 0 added, 0 changed, 1 destroyed." in out  # the scheduler only
    terminate(forgotten, grace=5)  # ours to clean up here, not scalable's
    assert our_processes(project.root) == []
    bad = project.run("state", "force-unlock", "abc")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: no lock is held")


def test_a_worker_that_cannot_start_is_a_partial_apply(project: Project) -> None:
    project.write(manifest(1, worker_extra_args='["--no-such-flag"]'))
    res = project.run("apply", "--auto-approve")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "Apply partially complete!" in res.stdout
    assert "workers.default[0] did not come up: process" in res.stderr
    assert "No such option" in res.stderr  # the worker's own error, from its log
    st = project.state()
    assert {r["address"] for r in st["resources"]} == {"scheduler", "workers.default[0]"}
    project.run("destroy", "--auto-approve", check=True)
    assert our_processes(project.root) == []
