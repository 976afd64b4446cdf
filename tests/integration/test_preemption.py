"""Interruptions handled: the real preemption preload on a real local Dask cluster.

A scheduler and two ``dask worker`` processes (each with a nanny) run on loopback. The
preload is loaded from its file (as a cloud worker without scalable installed loads it).
An IMDS emulator per worker serves the real IMDSv2 paths and token flow; the worker that
gets a notice holds results the client still needs, and they must survive it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import scalable.preemption as preemption
from distributed import Client
from scalable.events import WORKER_PREEMPTED
from scalable.payloads import WorkerPreempted
from scalable.telemetry.store import PULL_HANDLER

TOKEN = "emulated-imdsv2-token"


class ImdsEmulator:
    """EC2 instance metadata, IMDSv2 only: a GET without a valid token is refused (401)."""

    def __init__(self) -> None:
        self.notice: dict[str, str] | None = None
        self.token_puts: list[str] = []
        self.gets: list[str | None] = []
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token" or not ttl:
                    return self._send(400)
                emu.token_puts.append(ttl)
                self._send(200, TOKEN)

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token")
                emu.gets.append(token)
                if token != TOKEN:
                    return self._send(401)
                if self.path != "/latest/meta-data/spot/instance-action" or emu.notice is None:
                    return self._send(404)
                self._send(200, json.dumps(emu.notice))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def interrupt(self, seconds: int = 120) -> None:
        at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self.notice = {"action": "terminate", "time": at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        env = {**os.environ, "SCALABLE_TELEMETRY": "memory"}
        sched_file = tmp / "scheduler.json"
        with open(tmp / "scheduler.log", "wb") as log:  # the child keeps its own copy
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--no-dashboard",
                        "--scheduler-file",
                        str(sched_file),
                        "--preload",
                        "scalable.telemetry.plugin",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(sched_file.read_text())["address"]

    def worker(self, name: str, env: dict[str, str],
               preload: str | None = None) -> subprocess.Popen[bytes]:
        with open(self.tmp / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    self.address,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--death-timeout",
                    "60s",
                    "--preload-nanny",
                    preload or preemption.__file__,
                ],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _pid_tagged(i: int) -> tuple[int, int]:
    import os as _os

    return i, _os.getpid()


def _by_name(client: Client) -> dict[str, str]:
    return {w["name"]: a for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}


def _wait(cond: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _preempt_and_check(
    cluster: Cluster, victim: subprocess.Popen[bytes], notify: Any, reason: str
) -> dict[str, Any]:
    with Client(cluster.address, timeout=30) as client:
        client.wait_for_workers(2, timeout=120)
        addr = _by_name(client)["victim"]
        # Results held only by the victim: the client still needs every one of them.
        futures = [client.submit(_pid_tagged, i, workers=[addr], pure=False) for i in range(20)]
        before = client.gather(futures)
        victim_pid = before[0][1]
        assert {pid for _, pid in before} == {victim_pid}
        assert set(client.who_has(futures)[futures[0].key]) == {addr}

        notify()

        _wait(lambda: "victim" not in _by_name(client), "the victim to leave")
        _wait(lambda: victim.poll() is not None, "the victim process to exit")
        # The same results (computed by the victim's pid), now held by the survivor.
        assert client.gather(futures) == before
        survivor = _by_name(client)["survivor"]
        holders = {a for f in futures for a in client.who_has([f])[f.key]}
        assert holders == {survivor}

        events = client.get_events(preemption.PREEMPTION_TOPIC)
        assert len(events) == 1
        msg = events[0][1]
        assert msg["reason"] == reason and msg["worker"] == addr and msg["retired"] is True
        pulled = client.run_on_scheduler(_pull)
        kinds = [e for e in pulled["events"] if e[1] == WORKER_PREEMPTED]
        assert len(kinds) == 1 and kinds[0][2] == "victim"
        recorded = WorkerPreempted.from_data(kinds[0][3], kinds[0][2])
        assert recorded.reason == reason and recorded.retired
        return msg


def _pull(dask_scheduler: Any) -> dict[str, Any]:
    result: dict[str, Any] = dask_scheduler.handlers[PULL_HANDLER](since_events=0)
    return result


def test_spot_notice_retires_the_worker_and_its_data_survives(cluster: Cluster) -> None:
    victim_imds, survivor_imds = ImdsEmulator(), ImdsEmulator()
    try:
        watch = {"SCALABLE_PREEMPTION_WATCH": "ec2", "SCALABLE_IMDS_POLL": "0.2"}
        victim = cluster.worker("victim", {**watch, "SCALABLE_IMDS_URL": victim_imds.url})
        cluster.worker("survivor", {**watch, "SCALABLE_IMDS_URL": survivor_imds.url})
        msg = _preempt_and_check(
            cluster, victim, victim_imds.interrupt, preemption.SPOT_INTERRUPTION
        )
        assert msg["instance_action"] == "terminate"
        assert 0 < msg["notice_seconds"] <= 120
        # IMDSv2: a token was asked for with a TTL, and every poll carried it.
        assert victim_imds.token_puts and victim_imds.token_puts[0] == str(preemption.TOKEN_TTL)
        assert victim_imds.gets and set(victim_imds.gets) == {TOKEN}
        assert survivor_imds.gets  # the survivor watches too, and got no notice
    finally:
        victim_imds.close()
        survivor_imds.close()


@pytest.mark.parametrize(
    ("platform", "reason"),
    [("", preemption.PLATFORM_STOP), ("fargate", "fargate-sigterm"), ("gke", "gke-sigterm")],
)
def test_sigterm_takes_the_same_path(cluster: Cluster, platform: str, reason: str) -> None:
    """Fargate stopping a task or GKE draining a spot node: SIGTERM to the worker's
    container, with the platform's grace as the notice; the reason names the platform."""
    env = {"SCALABLE_TERMINATION_GRACE": "30", "SCALABLE_PLATFORM": platform}
    victim = cluster.worker("victim", env)
    cluster.worker("survivor", env)
    msg = _preempt_and_check(
        cluster, victim, lambda: victim.send_signal(signal.SIGTERM), reason
    )
    assert msg["notice_seconds"] == 30


def test_a_worker_retired_on_purpose_is_not_a_preemption(cluster: Cluster) -> None:
    victim = cluster.worker("victim", {})
    cluster.worker("survivor", {})
    with Client(cluster.address, timeout=30) as client:
        client.wait_for_workers(2, timeout=120)
        client.retire_workers(workers=[_by_name(client)["victim"]], close_workers=True)
        _wait(lambda: victim.poll() is not None, "the retired worker to exit")
        assert client.get_events(preemption.PREEMPTION_TOPIC) == ()


def test_controller_replaces_a_preempted_worker_at_once(project: Any) -> None:
    """The adaptive controller reads the preemption and re-creates the worker's resource
    as soon as the worker is gone (without it, nothing would until the next apply)."""
    import psutil
    from scalable import ScalableSession

    project.write("""
        project: {name: preempt}
        targets:
          local:
            provider: local
            adaptive: {minimum: 2, maximum: 2, interval: 0.5s}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        controller = session.controller
        assert controller is not None
        client.wait_for_workers(2, timeout=120)
        workers = client.scheduler_info(n_workers=-1)["workers"]
        addr, info = sorted(workers.items())[0]
        pid = client.run(os.getpid, workers=[addr])[addr]
        # The platform takes the machine: its notice reaches the scheduler's log, then
        # the worker and its nanny are gone.
        client.log_event(
            preemption.PREEMPTION_TOPIC,
            {
                "action": "worker-preempted",
                "worker": addr,
                "name": info["name"],
                "reason": preemption.SPOT_INTERRUPTION,
                "notice_seconds": 120.0,
                "retired": True,
            },
        )
        victim = psutil.Process(pid)
        for p in [victim.parent(), victim]:
            if p is not None and p.pid != os.getpid():
                p.kill()
        _wait(
            lambda: addr not in client.scheduler_info(n_workers=-1)["workers"],
            "the worker to leave",
        )
        _wait(
            lambda: len(client.scheduler_info(n_workers=-1)["workers"]) == 2, "a replacement worker"
        )
        assert controller.replacements >= 1
        assert [m["name"] for m in controller.preemptions] == [info["name"]]


def test_fargate_worker_command_ships_the_preload_a_stock_image_lacks(
        cluster: Cluster, tmp_path: Path) -> None:
    """The Fargate worker's own container command, run here with ``sh`` (the image has no
    scalable): it writes the preemption preload from the task definition's environment
    and the nanny loads it, so ECS stopping the task (SIGTERM, 30 s) retires the worker
    with its data moved and the reason ``fargate-sigterm``."""
    from scalable.manifest.loader import load_manifest
    from scalable.providers.aws.bootstrap import (
        PREEMPTION_ENV,
        PREEMPTION_NATIVE,
        container_command,
        container_environment,
        packed,
        preemption_source,
        worker_dask_args,
    )
    from scalable.spec import build_target

    (tmp_path / "scalable.yaml").write_text("targets:\n  t:\n    provider: local\n")
    group = build_target(load_manifest(tmp_path / "scalable.yaml"), "t").group("default")
    args = worker_dask_args(group, name="victim", processes=1, tls_dir=None,
                            preload_nanny=PREEMPTION_NATIVE)
    args += ["--host", "127.0.0.1", "--no-dashboard"]  # the test listens on loopback only
    command = container_command(role="worker", dask_args=args, tls=False, preemption=True)
    env = {e["name"]: e["value"] for e in container_environment(
        tls=None, scheduler_address=cluster.address,
        extra={"SCALABLE_PLATFORM": "fargate", "SCALABLE_TERMINATION_GRACE": "30"})}
    env[PREEMPTION_ENV] = packed(preemption_source())  # as the task definition holds it
    env |= {"SCALABLE_DIR": str(tmp_path / "task"), "SCALABLE_PYTHON": sys.executable,
            # The command runs in $SCALABLE_DIR; the tasks pickled by reference live in
            # this repository's tests package.
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open(tmp_path / "victim.log", "wb") as log:
        victim = subprocess.Popen(command, env={**os.environ, **env},
                                  stdout=subprocess.DEVNULL, stderr=log)
    cluster.procs.append(victim)
    cluster.worker("survivor", {})
    # exec: the task's first process is the dask worker itself, which ECS signals.
    msg = _preempt_and_check(cluster, victim, lambda: victim.send_signal(signal.SIGTERM),
                             "fargate-sigterm")
    assert msg["notice_seconds"] == 30
    shipped = tmp_path / "task" / "scalable_preemption.py"
    assert shipped.read_text() == preemption_source()


def test_gke_preload_as_text_takes_the_same_path(cluster: Cluster) -> None:
    """GKE ships the preload as its text in the pod's args (the image has no scalable):
    Dask runs a --preload-nanny value holding a space as a script, and a drained spot
    node's SIGTERM is reported as gke-sigterm with the pod's grace as the notice."""
    env = {"SCALABLE_TERMINATION_GRACE": "30", "SCALABLE_PLATFORM": "gke"}
    victim = cluster.worker("victim", env, preload=preemption.source())
    cluster.worker("survivor", {})
    msg = _preempt_and_check(cluster, victim, lambda: victim.send_signal(signal.SIGTERM),
                             "gke-sigterm")
    assert msg["notice_seconds"] == 30
