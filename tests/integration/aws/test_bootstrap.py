"""moto never runs user data: run the generated scripts here, with real Dask.

The EC2 user data and the Fargate container command that the provider sent to (moto's)
AWS are read back through the API and run on this machine unchanged, except for the
variables the scripts document for running elsewhere (working folder, interpreter,
ports, the scheduler's address, and what to do instead of powering off).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scalable.providers.aws.ec2 import user_data_of
from scalable.tls import security_from_outputs

from .motoaws import MotoAws

pytestmark = [pytest.mark.aws, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Launched:
    """Processes started by the scripts, stopped by process group at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        fh = open(log, "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=fh, stderr=fh,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def launched() -> Iterator[Launched]:
    lp = Launched()
    yield lp
    lp.stop()


def wait_for(pred, timeout: float, what: str, logs: list[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            tail = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            raise AssertionError(f"{what} not reached in {timeout}s\n{tail}")
        time.sleep(0.2)


def test_ec2_user_data_starts_a_worker_that_joins_and_leak_guards_fire(
    project, aws: MotoAws, launched: Launched, tmp_path: Path
) -> None:
    ami = aws.client("ec2").describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    project.write(f"""
        version: 1
        targets:
          cloud:
            provider: aws
            region: us-east-1
            image: {ami}          # native mode: the AMI brings Python and Dask
            idle_timeout: 30s
            max_workers: 1
            threads_per_worker: 2
    """)
    project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True)
    st = project.state("cloud")
    recs = {r["address"]: r for r in st["resources"]}
    ec2 = aws.client("ec2")
    sched_script = tmp_path / "scheduler-user-data.sh"
    sched_script.write_text(user_data_of(ec2, recs["scheduler"]["id"]))
    worker_script = tmp_path / "worker-user-data.sh"
    worker_script.write_text(user_data_of(ec2, recs["workers.default[0]"]["id"]))
    assert "python3" in sched_script.read_text() and "docker" not in sched_script.read_text()

    port = free_port()
    sdir, wdir = tmp_path / "sched", tmp_path / "worker"
    slog, wlog = sdir / "dask.log", wdir / "dask.log"
    common = {"SCALABLE_PYTHON": sys.executable, "DASK_SCHEDULER_ADDRESS": ""}
    sched = launched.run(["bash", str(sched_script)], {
        **common, "SCALABLE_DIR": str(sdir), "SCALABLE_PORT": str(port),
        "SCALABLE_DASHBOARD_PORT": str(free_port()),
        "SCALABLE_ON_EXIT": f"touch {sdir}/powered-off"}, tmp_path / "sched-boot.log")
    sched.wait(timeout=30)  # the script itself returns at once; Dask runs on
    assert sched.returncode == 0
    # The TLS material arrived through the user data, private key mode 0600.
    assert (sdir / "tls/node-key.pem").stat().st_mode & 0o777 == 0o600
    launched.run(["bash", str(worker_script)], {
        **common, "SCALABLE_DIR": str(wdir),
        "SCALABLE_SCHEDULER_ADDRESS": f"tls://127.0.0.1:{port}",
        "SCALABLE_ON_EXIT": f"touch {wdir}/powered-off"}, tmp_path / "worker-boot.log")

    from distributed import Client

    security = security_from_outputs(st["outputs"])
    assert security is not None  # TLS by default: the client uses the target's client cert
    wait_for(lambda: "Scheduler at" in (slog.read_text() if slog.exists() else ""), 60,
             "scheduler start", [slog])
    with Client(f"tls://127.0.0.1:{port}", security=security, timeout=30) as client:
        client.wait_for_workers(1, timeout=90)
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == {"workers.default[0]"}
        info = next(iter(client.scheduler_info()["workers"].values()))
        assert info["nthreads"] == 2
        assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    # The preemption preload travelled in the user data and the worker's nanny runs it.
    from scalable.providers.aws.bootstrap import PREEMPTION_FILE, preemption_source

    assert (wdir / PREEMPTION_FILE).read_text() == preemption_source()
    assert f"Run preload setup: {wdir / PREEMPTION_FILE}" in wlog.read_text()
    # A plain-TCP client is refused: the scheduler only speaks TLS.
    with pytest.raises(OSError):
        Client(f"tcp://127.0.0.1:{port}", timeout=3)

    # Leak guards: idle for 30 s, the scheduler exits and the script "powers off"; the
    # worker, its scheduler gone, exits and powers off too.
    wait_for(lambda: (sdir / "powered-off").exists(), 90, "scheduler idle shutdown", [slog])
    assert "dask exited with status" in slog.read_text()
    wait_for(lambda: (wdir / "powered-off").exists(), 120, "worker exit", [wlog])


def test_fargate_command_starts_a_worker_that_joins(
    project, aws: MotoAws, launched: Launched, tmp_path: Path
) -> None:
    project.write("""
        version: 1
        targets:
          fg:
            provider: aws
            launch_type: fargate
            region: us-east-1
            tags: {team: climate}   # AWS tags
            groups:
              io:
                max_workers: 1
                processes: 2
                tags: [io]          # Dask worker tags
    """)
    project.run("apply", "--auto-approve", "--no-wait", env=aws.env, check=True)
    st = project.state("fg")
    recs = {r["address"]: r for r in st["resources"]}
    ecs = aws.client("ecs")

    def container(address: str) -> tuple[list[str], dict[str, str]]:
        task = ecs.describe_tasks(cluster=recs[address]["meta"]["cluster"],
                                  tasks=[recs[address]["id"]])["tasks"][0]
        override = task["overrides"]["containerOverrides"][0]
        # The container sees what ECS gives it: the task definition's environment (the
        # worker's carries the preemption preload), then the RunTask overrides on top.
        td = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        env = {e["name"]: e["value"]
               for e in td["taskDefinition"]["containerDefinitions"][0].get("environment", [])}
        env.update({e["name"]: e["value"] for e in override["environment"]})
        return override["command"], env

    port = free_port()
    sdir, wdir = tmp_path / "sched", tmp_path / "worker"
    command, env = container("scheduler")
    assert command[:2] == ["sh", "-c"]
    launched.run(command, {**env, "SCALABLE_PYTHON": sys.executable, "SCALABLE_DIR": str(sdir),
                           "SCALABLE_PORT": str(port),
                           "SCALABLE_DASHBOARD_PORT": str(free_port())},
                 tmp_path / "sched.log")
    command, env = container("workers.io[0]")
    # The worker joins the address it was given; here that is the local scheduler.
    env["SCALABLE_SCHEDULER_ADDRESS"] = f"tls://127.0.0.1:{port}"
    launched.run(command, {**env, "SCALABLE_PYTHON": sys.executable, "SCALABLE_DIR": str(wdir),
                           "DASK_SCHEDULER_ADDRESS": ""}, tmp_path / "worker.log")

    from distributed import Client

    security = security_from_outputs(st["outputs"])
    logs = [tmp_path / "sched.log", tmp_path / "worker.log"]
    wait_for(lambda: "Scheduler at" in (logs[0].read_text() if logs[0].exists() else ""), 60,
             "scheduler start", logs)
    with Client(f"tls://127.0.0.1:{port}", security=security, timeout=30) as client:
        client.wait_for_workers(2, timeout=90)
        workers = client.scheduler_info()["workers"].values()
        assert sorted(w["name"] for w in workers) == ["workers.io[0]-0", "workers.io[0]-1"]
        assert all(w["resources"] == {"tag-io": 1.0} for w in workers)
        fut = client.submit(lambda: "ran", resources={"tag-io": 1})
        assert fut.result(timeout=30) == "ran"
    assert (wdir / "tls/node-key.pem").stat().st_mode & 0o777 == 0o600
    # The preload came from the task definition's environment and both nannies ran it.
    from scalable.providers.aws.bootstrap import PREEMPTION_FILE, preemption_source

    assert (wdir / PREEMPTION_FILE).read_text() == preemption_source()
    assert logs[1].read_text().count(f"Run preload setup: {wdir / PREEMPTION_FILE}") == 2
