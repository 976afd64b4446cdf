"""The Slurm provider against a real Slurm (``sudo scripts/slurm-dev.sh up``).

Every test drives the real CLI in a subprocess, checks Slurm itself with ``squeue``, and
connects a plain ``distributed.Client`` to the emitted address with the emitted TLS files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project


def _no_slurm_reason() -> str | None:
    if shutil.which("sbatch") is None:
        return "no Slurm client commands on PATH (run: sudo scripts/slurm-dev.sh up)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if " is UP" not in ping.stdout:
        return f"the Slurm controller is not up (scontrol ping: {ping.stdout.strip()})"
    return None


_REASON = _no_slurm_reason()
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.skipif(_REASON is not None, reason=_REASON or ""),
]


def squeue_rows() -> list[dict[str, str]]:
    out = subprocess.run(
        ["squeue", "-h", "--me", "-t", "all", "-O", "JobID:\x1f,Name:\x1f,State:\x1f,Comment:"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        jid, name, state, comment = (x.strip() for x in line.split("\x1f", 3))
        rows.append({"id": jid, "name": name, "state": state.split()[0], "comment": comment})
    return rows


ACTIVE = {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}


def our_jobs(lineage: str, active: bool = True) -> list[dict[str, str]]:
    return [r for r in squeue_rows() if f"lineage={lineage};" in r["comment"]
            and (not active or r["state"] in ACTIVE)]


def lineage_of(project: Project, target: str = "hpc") -> str:
    return str(project.state(target)["lineage"])


def job_records(project: Project, target: str = "hpc") -> dict[str, dict]:
    return {r["address"]: r for r in project.state(target)["resources"]
            if r["type"] == "slurm.job"}


def client(project: Project, target: str = "hpc") -> Any:
    from distributed import Client
    from distributed.security import Security

    out = project.state(target)["outputs"]
    return Client(out["scheduler_address"], timeout=30, set_as_default=False,
                  security=Security(tls_ca_file=out["tls_ca_file"],
                                    tls_client_cert=out["tls_client_cert"],
                                    tls_client_key=out["tls_client_key"],
                                    require_encryption=True))


def wait_for(pred: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def hpc(project: Project) -> Iterator[Project]:
    """A project whose leftover jobs are cancelled (and reported) after the test."""
    yield project
    state = project.root / ".scalable" / "hpc" / "state.json"
    if state.exists():
        lineage = json.loads(state.read_text())["lineage"]
        left = our_jobs(lineage)
        if left:
            subprocess.run(["scancel", *[r["id"] for r in left]], check=False)


MANIFEST = """
project: {name: slurmtest}
targets:
  hpc:
    provider: slurm
    queue: batch
    walltime: "00:10:00"
    processes: 2
    max_workers: 3
    interface: eth0
"""


def test_apply_compute_drift_replace_destroy(hpc: Project) -> None:
    hpc.write(MANIFEST)
    started = time.monotonic()
    out = hpc.run("apply", "--auto-approve", check=True)
    apply_seconds = time.monotonic() - started
    assert "workers 3/3 ready" in out.stdout
    assert re.search(r'scheduler_address = "tls://', out.stdout)
    lineage = lineage_of(hpc)
    jobs = job_records(hpc)
    assert sorted(jobs) == ["workers.default[0]", "workers.default[1]"]
    live = {r["id"]: r for r in our_jobs(lineage)}
    assert set(live) == {j["id"] for j in jobs.values()}
    assert all(r["state"] == "RUNNING" for r in live.values())
    assert {r["name"] for r in live.values()} == {f"scalable-{lineage[:8]}-default-0",
                                                  f"scalable-{lineage[:8]}-default-1"}
    # A plain distributed.Client on the emitted address (TLS from the outputs) computes.
    with client(hpc) as c:
        names = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {"workers.default[0]-0", "workers.default[0]-1", "workers.default[1]"}
        assert sum(c.gather(c.map(lambda x: x * x, range(200)))) == sum(x * x for x in range(200))

    assert "No changes." in hpc.run("plan", check=True).stdout

    # scancel from outside: plan shows the drift with Slurm's reason, apply replaces it.
    victim = jobs["workers.default[1]"]["id"]
    subprocess.run(["scancel", victim], check=True)
    wait_for(lambda: all(r["id"] != victim for r in our_jobs(lineage)), 30, "the cancel")
    plan = hpc.run("plan", "--detailed-exitcode")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "Objects have changed outside of scalable" in plan.stdout
    assert f"workers.default[1] (slurm.job) is gone: Slurm job {victim} CANCELLED" in plan.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 3/3 ready" in out.stdout
    new_id = job_records(hpc)["workers.default[1]"]["id"]
    assert new_id != victim
    assert {r["id"] for r in our_jobs(lineage)} == {jobs["workers.default[0]"]["id"], new_id}
    with client(hpc) as c:
        assert c.submit(lambda: 41 + 1).result(timeout=30) == 42

    # destroy: nothing of ours left in the queue, the scheduler process is gone.
    sched = next(r for r in hpc.state("hpc")["resources"] if r["address"] == "scheduler")
    from scalable.providers.processes import ProcessRef

    ref = ProcessRef(sched["meta"]["pid"], sched["meta"]["start_time"])
    assert ref.alive()
    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "Destroy complete! Resources: 0 added, 0 changed, 3 destroyed." in out.stdout
    assert our_jobs(lineage) == []
    states = {r["id"]: r["state"] for r in our_jobs(lineage, active=False)}
    assert states[new_id] == "CANCELLED"
    assert hpc.state("hpc")["resources"] == []
    assert not ref.alive()
    print(f"apply of 2 jobs / 3 workers took {apply_seconds:.1f}s")


def test_pending_capacity_is_not_drift_and_destroy_cancels_it(hpc: Project) -> None:
    # Fill the node so that one of our two jobs has to wait.
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-p", "batch", "-c", "7", "-t", "5", "-J", "blocker",
         "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True, cwd=hpc.root,
    ).stdout.strip()
    try:
        wait_for(lambda: any(r["id"] == blocker and r["state"] == "RUNNING"
                             for r in squeue_rows()), 30, "the blocker to run")
        hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3",
                                   "processes: 1\n    max_workers: 2"))
        hpc.run("apply", "--auto-approve", "--no-wait", check=True)
        lineage = lineage_of(hpc)
        wait_for(lambda: sorted(r["state"] for r in our_jobs(lineage)) == ["PENDING", "RUNNING"],
                 30, "one job running, one pending")
        plan = hpc.run("plan", "--detailed-exitcode")
        assert plan.returncode == 0, plan.stdout  # pending is capacity on its way, not drift
        assert "Capacity on its way (1 pending):" in plan.stdout
        assert re.search(r"Slurm job \d+ PENDING \((Resources|Priority)\)", plan.stdout)
        assert "No changes." in plan.stdout

        out = hpc.run("destroy", "--auto-approve", check=True)
        assert "3 destroyed" in out.stdout
        assert our_jobs(lineage) == []
    finally:
        subprocess.run(["scancel", blocker], check=False)


def test_walltime_expiry_mid_computation_loses_nothing(hpc: Project) -> None:
    hpc.write("""
        project: {name: slurmtest}
        targets:
          hpc:
            provider: slurm
            queue: batch
            interface: eth0
            groups:
              short: {max_workers: 1, walltime: 1}
              long: {max_workers: 1, walltime: 10}
    """)
    plan = hpc.run("plan", "--show-scripts", check=True).stdout
    assert "--lifetime 45s --lifetime-stagger 3s" in plan  # 1 minute, margin capped at 15 s
    hpc.run("apply", "--auto-approve", check=True)
    lineage = lineage_of(hpc)
    short_id = job_records(hpc)["workers.short[0]"]["id"]

    import distributed

    def slow(x: int) -> int:
        time.sleep(0.5)
        return x * 2

    events: list[str] = []
    started = time.monotonic()
    with client(hpc) as c:
        futures = c.map(slow, range(240), pure=False)
        # Results stay on the workers until the end: the retiring worker must hand its
        # results over, or they are recomputed — either way none is lost.
        wait_for(lambda: not any(r["id"] == short_id and r["state"] in ACTIVE
                                 for r in our_jobs(lineage, active=False)),
                 150, "the 1-minute job to end")
        events.append(f"short job ended after {time.monotonic() - started:.0f}s")
        assert not all(f.done() for f in futures), "computation finished before the expiry"
        results = c.gather(futures)
        assert results == [2 * x for x in range(240)]
        left = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert left == {"workers.long[0]"}
        assert isinstance(c, distributed.Client)
    short = next(r for r in our_jobs(lineage, active=False) if r["id"] == short_id)
    # The worker retired itself (lifetime) before Slurm's limit: the job COMPLETED.
    assert short["state"] == "COMPLETED", short
    plan = hpc.run("plan").stdout
    assert f"workers.short[0] (slurm.job) is gone: Slurm job {short_id} COMPLETED" in plan
    assert "Plan: 1 to add" in plan
    hpc.run("destroy", "--auto-approve", check=True)
    assert our_jobs(lineage) == []


SLOW_SBATCH = """#!/usr/bin/env bash
# A slow controller: one submission at a time, 3 s each.
exec 9>"{lock}"
flock 9
echo start >> "{log}"
sleep 3
"{real}" "$@"
rc=$?
echo end >> "{log}"
exit $rc
"""


def test_kill9_between_submissions_adopts_or_cancels(hpc: Project, tmp_path: Path) -> None:
    bindir = tmp_path / "slowbin"
    bindir.mkdir()
    log = tmp_path / "sbatch.log"
    wrapper = bindir / "sbatch"
    wrapper.write_text(SLOW_SBATCH.format(lock=tmp_path / "sbatch.lock", log=log,
                                          real=shutil.which("sbatch")))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3",
                               "processes: 1\n    max_workers: 3"))
    env = {**os.environ, "CI": "1", "NO_COLOR": "1",
           "PATH": f"{bindir}:{os.environ['PATH']}"}
    # Keep validate's `sbatch --test-only` fast: only apply's submissions go slow.
    proc = subprocess.Popen([sys.executable, "-m", "scalable", "apply", "--auto-approve"],
                            cwd=hpc.root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    state = hpc.root / ".scalable" / "hpc" / "state.json"
    try:
        def first_job() -> bool:
            if not state.exists():
                return False
            return len(our_jobs(json.loads(state.read_text())["lineage"])) >= 1

        wait_for(first_job, 120, "the first submission", every=0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    lineage = lineage_of(hpc)
    creating = [r for r in hpc.state("hpc")["resources"] if r["status"] == "creating"]
    assert creating, "the kill came after apply had recorded everything"
    # Submissions already in flight finish on their own (a killed CLI does not stop them).
    wait_for(lambda: log.read_text().count("start") == log.read_text().count("end"), 60,
             "in-flight sbatch calls")
    live = our_jobs(lineage)
    assert 1 <= len(live) <= 3

    plan = hpc.run("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    adopted = re.findall(r"(workers\.default\[\d\]) \(slurm\.job\) adopted", plan.stdout)
    assert len(adopted) == len(live), plan.stdout
    out = hpc.run("apply", "--auto-approve", check=True)
    assert "workers 3/3 ready" in out.stdout
    recorded = job_records(hpc)
    assert {r["id"] for r in our_jobs(lineage)} == {r["id"] for r in recorded.values()}
    assert len(recorded) == 3

    # A job carrying our lineage that state does not hold (as if its record were lost):
    # the next plan deletes it.
    script = hpc.root / "orphan.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/usr/bin/env bash
        #SBATCH -J scalable-{lineage[:8]}-default-9
        #SBATCH --comment=scalable;lineage={lineage};address=workers.default[9];key=lost-key
        #SBATCH -p batch
        #SBATCH -o /dev/null
        sleep 300
    """))
    orphan = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True,
                            text=True, check=True, cwd=hpc.root).stdout.strip()
    plan = hpc.run("plan")
    assert f"{orphan} carries this state's lineage but is not recorded" in plan.stdout
    assert "orphan left by an interrupted apply" in plan.stdout
    hpc.run("apply", "--auto-approve", check=True)
    assert orphan not in {r["id"] for r in our_jobs(lineage)}
    hpc.run("destroy", "--auto-approve", check=True)
    assert our_jobs(lineage) == []


def test_clear_errors(hpc: Project, tmp_path: Path) -> None:
    # walltime over the partition's MaxTime (debug: 30 minutes), caught at plan time
    hpc.write(MANIFEST.replace("queue: batch", "queue: debug").replace("00:10:00", "01:00:00"))
    out = hpc.run("plan")
    assert out.returncode == 1
    assert ("Error: group default: walltime 01:00:00 is over partition debug's MaxTime "
            "00:30:00 (from sinfo)") in out.stderr
    assert "Traceback" not in out.stderr

    # unknown partition: Slurm's own words
    hpc.write(MANIFEST.replace("queue: batch", "queue: nosuch"))
    out = hpc.run("plan")
    assert out.returncode == 1
    assert "invalid partition specified: nosuch" in out.stderr

    # an interface this host lacks: the scheduler falls back to 127.0.0.1, and says so
    hpc.write(MANIFEST.replace("interface: eth0", "interface: nosuch0"))
    out = hpc.run("plan")
    assert out.returncode == 0, out.stderr
    assert ("Warning: interface 'nosuch0' is not present on this host: the scheduler binds "
            "127.0.0.1") in out.stderr

    # no Slurm on PATH
    hpc.write(MANIFEST)
    out = hpc.run("plan", env={"PATH": str(Path(sys.executable).parent)})
    assert out.returncode == 1
    assert "Error: sbatch not found" in out.stderr and "hint:" in out.stderr

    # a controller that does not answer: a client config pointing at a dead port
    conf = tmp_path / "slurm.conf"
    text = Path("/etc/slurm/slurm.conf").read_text()
    conf.write_text(text + "\nSlurmctldPort=1\n")
    out = hpc.run("plan", env={"SLURM_CONF": str(conf)}, timeout=120)
    assert out.returncode == 1
    assert "Slurm controller is not answering" in out.stderr
    assert "Traceback" not in out.stderr


def test_shown_script_is_what_sbatch_accepts(hpc: Project) -> None:
    hpc.write(MANIFEST)
    out = hpc.run("plan", "--show-scripts", check=True).stdout
    scripts = re.findall(r"# ---- (workers\.default\[\d\]): batch script ----\n(.*?)\n(?=\n# [-<])",
                         out, flags=re.S)
    assert [a for a, _ in scripts] == ["workers.default[0]", "workers.default[1]"]
    for _, text in scripts:
        path = hpc.root / "shown.sh"
        path.write_text(text + "\n")
        test = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True,
                              text=True, cwd=hpc.root)
        assert test.returncode == 0, test.stderr
        assert "in partition batch" in test.stderr
        assert "#SBATCH -p batch" in text and text.splitlines()[-1].startswith(sys.executable)


def test_a_scheduler_that_fails_leaves_no_jobs(hpc: Project, tmp_path: Path) -> None:
    # Jobs are submitted while the scheduler starts; if it then fails, they are cancelled.
    sabotage = tmp_path / "sabotage"
    sabotage.mkdir()
    (sabotage / "sitecustomize.py").write_text(textwrap.dedent("""\
        import os, sys
        if os.environ.get("SCALABLE_ADDRESS") == "scheduler":
            sys.stderr.write("scheduler sabotaged by the test\\n")
            sys.stderr.flush()
            os._exit(3)
    """))
    hpc.write(MANIFEST + f"    env: {{PYTHONPATH: {sabotage}}}\n")
    out = hpc.run("apply", "--auto-approve")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "job cancelled: the Dask scheduler did not start" in out.stderr
    assert "scheduler sabotaged by the test" in out.stderr
    lineage = lineage_of(hpc)
    wait_for(lambda: our_jobs(lineage) == [], 60, "the submitted jobs to be cancelled")
    assert len(our_jobs(lineage, active=False)) == 2  # they were submitted, then cancelled
    assert not job_records(hpc)
    plan = hpc.run("plan").stdout
    assert "scheduler (local.process) is gone" in plan
    hpc.run("destroy", "--auto-approve", check=True)


def test_destroy_from_another_login_node_stops_the_scheduler_over_tls(hpc: Project) -> None:
    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3",
                               "processes: 1\n    max_workers: 1"))
    hpc.run("apply", "--auto-approve", check=True)
    lineage = lineage_of(hpc)
    state_path = hpc.root / ".scalable" / "hpc" / "state.json"
    state = json.loads(state_path.read_text())
    sched = next(r for r in state["resources"] if r["address"] == "scheduler")
    from scalable.providers.processes import ProcessRef

    ref = ProcessRef(sched["meta"]["pid"], sched["meta"]["start_time"])
    # As if apply had run on another login node: its PID means nothing from here.
    sched["meta"]["host"] = "login-other"
    state_path.write_text(json.dumps(state))
    plan = hpc.run("plan", check=True).stdout
    assert "No changes." in plan  # alive, checked over the network
    out = hpc.run("destroy", "--auto-approve", check=True)
    assert "2 destroyed" in out.stdout
    wait_for(lambda: not ref.alive(), 30, "the scheduler to shut down")
    assert our_jobs(lineage) == []


def test_scheduler_in_a_job(hpc: Project) -> None:
    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3",
                               "processes: 1\n    max_workers: 2\n"
                               "    scheduler: {placement: job}"))
    hpc.run("apply", "--auto-approve", check=True)
    lineage = lineage_of(hpc)
    state = hpc.state("hpc")
    sched = next(r for r in state["resources"] if r["address"] == "scheduler")
    assert sched["type"] == "slurm.job"
    live = {r["name"]: r for r in our_jobs(lineage)}
    assert live[f"scalable-{lineage[:8]}-scheduler"]["id"] == sched["id"]
    assert len(live) == 3 and all(r["state"] == "RUNNING" for r in live.values())
    with client(hpc) as c:
        assert c.submit(lambda: 6 * 7).result(timeout=30) == 42
        assert len(c.scheduler_info(n_workers=-1)["workers"]) == 2
    # The scheduler's job ends outside scalable: everything depending on it is re-created.
    subprocess.run(["scancel", sched["id"]], check=True)
    wait_for(lambda: all(r["id"] != sched["id"] for r in our_jobs(lineage)), 30, "the cancel")
    plan = hpc.run("plan").stdout
    assert f"scheduler (slurm.job) is gone: Slurm job {sched['id']} CANCELLED" in plan
    assert "Plan: 3 to add, 0 to change, 2 to destroy." in plan
    hpc.run("destroy", "--auto-approve", check=True)
    assert our_jobs(lineage) == []


def test_the_example_manifest_plans(hpc: Project) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "slurm.yaml"
    hpc.write(example.read_text())
    out = hpc.run("plan", "--show-scripts", check=True).stdout
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in out
    assert "core-hours over the horizon: 2" in out
    assert "over the 0.5 h horizon: $0.04" in out
    assert "#SBATCH --mem=2048M" in out and "--memory-limit 1073741824" in out
    assert "--lifetime 1680s --lifetime-stagger 30s" in out


def test_the_dashboard_listens_on_loopback_only_and_the_scheduler_has_a_leak_guard(
        hpc: Project) -> None:
    """TLS on, scheduler on the login node's routable address: its dashboard (plain HTTP,
    no login) still listens on 127.0.0.1 only (users tunnel to it); the scheduler exits
    when idle (``idle_timeout``)."""
    import psutil

    hpc.write(MANIFEST.replace("processes: 2\n    max_workers: 3",
                               "processes: 1\n    max_workers: 1\n    idle_timeout: 45m"))
    hpc.run("apply", "--auto-approve", check=True)
    state = hpc.state("hpc")
    out = state["outputs"]
    assert out["scheduler_address"].startswith("tls://")
    sched_host = out["scheduler_address"].split("://")[1].rpartition(":")[0]
    assert sched_host != "127.0.0.1"  # the scheduler itself is on the routable address
    assert out["dashboard_url"].startswith("http://127.0.0.1:")
    dash_port = int(out["dashboard_url"].rsplit(":", 1)[1].split("/")[0])
    sched = next(r for r in state["resources"] if r["address"] == "scheduler")
    proc = psutil.Process(sched["meta"]["pid"])
    listening = {(c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", dash_port) in listening, listening
    exposed = {(ip, port) for ip, port in listening if not ip.startswith("127.")}
    sched_port = int(out["scheduler_address"].rsplit(":", 1)[1])
    assert exposed == {(sched_host, sched_port)}, listening  # TLS only, nothing else
    assert "--idle-timeout" in proc.cmdline() and "2700s" in proc.cmdline()
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/health", timeout=30) as r:
        assert r.status == 200  # the tunnel's end of it works
    hpc.run("destroy", "--auto-approve", check=True)
