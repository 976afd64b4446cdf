"""Process identity through psutil (issue 11 item 20): real child processes, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from scalable.providers import procfs
from scalable.providers.processes import (
    ProcessRef,
    _group_members,
    spawn,
    start_time,
    tagged,
    terminate,
)


def test_start_time_is_psutils_and_never_zero() -> None:
    me = os.getpid()
    st = start_time(me)
    assert st is not None and st > 0
    assert st == round(psutil.Process(me).create_time() * 1000)
    assert start_time(2**22 + 12345) is None  # beyond pid_max: no such process


@pytest.mark.skipif(not procfs.AVAILABLE, reason="procfs reads Linux's /proc")
def test_procfs_agrees_with_psutil_on_every_live_process(tmp_path: Path) -> None:
    """The facts plan and destroy read from /proc are psutil's, on every process here;
    one of them named to trip a naive parser of /proc/<pid>/stat."""
    code = "open('/proc/self/comm', 'w').write('a) Z 1 (b'); import time; time.sleep(30)"
    tags = {"SCALABLE_LINEAGE": "l=1;$(x)", "ODD": "a\nb=c"}
    ref = spawn([sys.executable, "-c", code], log=tmp_path / "n.log", tags=tags)
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(ref.pid).name() != "a) Z 1 (b":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        checked = set()
        for proc in psutil.process_iter():
            try:
                with proc.oneshot():
                    zombie = proc.status() == psutil.STATUS_ZOMBIE
                    want = (round(proc.create_time() * 1000), zombie, os.getpgid(proc.pid))
                env = proc.environ()
            except (psutil.Error, OSError):
                continue  # exited meanwhile
            got = procfs.stat(proc.pid)
            if got is not None:
                assert (got.start_ms, got.zombie, got.pgrp) == want, proc
                assert procfs.environ(proc.pid) == env, proc
                checked.add(proc.pid)
        assert ref.pid in checked and len(checked) > 5
        assert [r for r, _ in tagged("l=1;$(x)")] == [ref]
        assert procfs.boot_time() == psutil.boot_time()
        assert procfs.stat(2**22 + 12345) is None
    finally:
        terminate(ref, grace=2)


def test_ref_tells_our_process_from_a_reused_pid(tmp_path: Path) -> None:
    ref = spawn(
        [sys.executable, "-c", "import time; time.sleep(30)"], log=tmp_path / "a.log", tags={}
    )
    try:
        assert ref.start > 0 and ref.alive()
        assert not ProcessRef(ref.pid, ref.start + 5000).alive()  # same pid, other start
        # A record written before psutil (clock ticks since boot) is still recognised.
        ticks = round(
            (psutil.Process(ref.pid).create_time() - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")
        )
        assert ProcessRef(ref.pid, ticks).alive()
    finally:
        terminate(ref, grace=2)
    assert not ref.alive()


def test_terminate_signals_the_group_of_a_zombie_leader(tmp_path: Path) -> None:
    """The leader exits (a zombie until reaped) while its child lives on: the group is
    still ours and must be stopped."""
    pidfile = tmp_path / "child.pid"
    ref = spawn(
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exit 0"], log=tmp_path / "z.log", tags={}
    )
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = int(pidfile.read_text())
    while psutil.Process(ref.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not ref.alive() and list(_group_members(ref.pid)) == [child]
    terminate(ref, grace=5)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"


def test_terminate_never_signals_a_stranger() -> None:
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        real = start_time(stranger.pid)
        assert real is not None
        terminate(ProcessRef(stranger.pid, real - 60_000), grace=0.5)  # a recycled pid
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


LEADER = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", CHILD])  # same process group
def close(*_):  # like a nanny: close the child gracefully, then go
    child.send_signal(signal.SIGUSR1)
    child.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, close)
time.sleep(60)
"""
CHILD = """
import signal, sys, time
out = sys.argv[1] if len(sys.argv) > 1 else OUT
def note(what):
    def handler(*_):
        open(out, "w").write(what)
        sys.exit(0)
    return handler
signal.signal(signal.SIGTERM, note("sigterm"))
signal.signal(signal.SIGUSR1, note("graceful"))
open(out + ".up", "w").write("up")
time.sleep(60)
"""


def _wait_up(out: Path) -> None:
    """Until the child has installed its SIGTERM handler (it writes ``<out>.up``)."""
    deadline = time.monotonic() + 20
    while not Path(f"{out}.up").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_terminate_asks_the_leader_so_it_closes_its_children_itself(tmp_path: Path) -> None:
    """A ``dask worker`` nanny closes its worker gracefully on SIGTERM; a SIGTERM sent to
    the worker itself too would kill it mid-close (telemetry: ``lost``). Only the leader
    is asked; the group is killed only if it outlives the grace."""
    out = tmp_path / "child.out"
    child = CHILD.replace("OUT", repr(str(out)))
    ref = spawn([sys.executable, "-c", f"CHILD = {child!r}\n{LEADER}"],
                log=tmp_path / "l.log", tags={})
    _wait_up(out)
    terminate(ref, grace=10)
    assert out.read_text() == "graceful"
    assert list(_group_members(ref.pid)) == []


def test_terminate_asks_the_orphans_of_a_leader_that_went(tmp_path: Path) -> None:
    """A leader that dies on SIGTERM without passing it on (bwrap) leaves its group
    behind: the rest is asked with SIGTERM too, not killed after the grace."""
    out = tmp_path / "orphan.out"
    child = CHILD.replace("OUT", repr(str(out)))
    script = tmp_path / "child.py"
    script.write_text(child)
    ref = spawn(["sh", "-c", f"{sys.executable} {script} & wait"], log=tmp_path / "o.log",
                tags={})
    _wait_up(out)
    terminate(ref, grace=30)
    assert out.read_text() == "sigterm"
    assert list(_group_members(ref.pid)) == []


def test_nannies_fork_their_workers_unless_the_manifest_or_caller_says_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from scalable.providers.commands import WORKER_START_ENV
    from scalable.providers.scheduler_process import process_env

    monkeypatch.delenv(WORKER_START_ENV, raising=False)
    target = SimpleNamespace(env={}, name="t", project="p")
    assert process_env(target, "local", tmp_path)[WORKER_START_ENV] == "fork"
    assert WORKER_START_ENV not in process_env(target, "local", tmp_path, fork_workers=False)
    target.env = {WORKER_START_ENV: "spawn"}  # the manifest's env wins
    assert process_env(target, "local", tmp_path)[WORKER_START_ENV] == "spawn"
    target.env = {}
    monkeypatch.setenv(WORKER_START_ENV, "forkserver")  # so does the caller's environment
    assert WORKER_START_ENV not in process_env(target, "local", tmp_path)


@pytest.mark.parametrize(("body", "code", "out", "err"), [
    ("print('done', end='')", 0, "done", ""),  # buffered output is still written
    ("import sys; sys.exit(3)", 3, "", ""),
    ("import sys; print('x', end=''); sys.exit('bad flag')", 1, "x", "bad flag\n"),
    ("raise RuntimeError('boom')", 1, "", "RuntimeError: boom"),
    ("import sys; assert __name__ == '__main__' and sys.argv[1:] == ['--a', 'b']", 0, "", ""),
])
def test_quick_exit_runs_a_module_as_python_m_and_keeps_its_exit_code(
        tmp_path: Path, body: str, code: int, out: str, err: str) -> None:
    (tmp_path / "mod_under_test.py").write_text(body + "\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run(
        [sys.executable, "-m", "scalable.providers.quick_exit", "mod_under_test", "--a", "b"],
        capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == code, res.stderr
    assert res.stdout == out
    assert err in res.stderr
