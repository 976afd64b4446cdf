"""Issue 11 item 1: nothing the local target starts listens beyond loopback, unless asked.

Every listening socket of every process scalable started (and their children: nannies'
workers) is inspected through psutil after a real apply.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import psutil
import pytest

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow


def listeners(root: Path) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of our processes and their children."""
    procs: dict[int, psutil.Process] = {}
    for ref in our_processes(root):
        try:
            top = psutil.Process(ref.pid)
            for p in [top, *top.children(recursive=True)]:
                procs[p.pid] = p
        except psutil.NoSuchProcess:
            continue
    out = []
    for pid, p in procs.items():
        try:
            conns = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out += [(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


@pytest.mark.parametrize("processes", [True, False])
def test_every_listener_is_loopback_after_apply(project: Project, processes: bool) -> None:
    # The repository's own scalable.yaml, with each value of `processes`.
    default = (Path(__file__).parents[2] / "scalable.yaml").read_text()
    assert "processes: false" in default
    project.write(default.replace("processes: false", f"processes: {str(processes).lower()}"))
    project.run("apply", "--auto-approve", check=True)
    try:
        found = listeners(project.root)
        pids = {pid for pid, _, _ in found}
        # scheduler (+ its dashboard) and at least one worker process were seen listening
        assert len(pids) >= 2, found
        exposed = [
            (pid, ip, port) for pid, ip, port in found if not ipaddress.ip_address(ip).is_loopback
        ]
        assert not exposed, f"listening beyond loopback: {exposed}"
    finally:
        project.run("destroy", "--auto-approve", check=True)


@pytest.mark.parametrize("asked", [False, True])
def test_worker_dashboards_only_when_asked(project: Project, asked: bool) -> None:
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from distributed import Client

    project.write(f"""
        targets:
          local: {{provider: local, max_workers: 1, processes: true,
                  worker_dashboard: {str(asked).lower()}}}
        """)
    project.run("apply", "--auto-approve", check=True)
    try:
        outputs = project.state()["outputs"]
        assert "dashboard_url" in outputs  # the scheduler's is served either way
        with Client(outputs["scheduler_address"], timeout=10) as c:
            (worker,) = c.scheduler_info(n_workers=-1)["workers"].values()
        url = f"http://127.0.0.1:{worker['services']['dashboard']}/status"
        try:
            with urlopen(url, timeout=10) as resp:
                status = resp.status
        except HTTPError as exc:
            status = exc.code
        assert status == (200 if asked else 404)
    finally:
        project.run("destroy", "--auto-approve", check=True)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_validate_refuses_a_non_loopback_host_without_tls(project: Project, host: str) -> None:
    project.write(f"""
        targets:
          local: {{provider: local, max_workers: 1, host: "{host}"}}
        """)
    for cmd in (("validate",), ("plan",)):
        res = project.run(*cmd)
        assert res.returncode == 1, res.stdout + res.stderr
        err = res.stderr.strip().splitlines()
        assert err[0].startswith("Error:") and "host" in err[0], res.stderr
        assert "tls: true" in res.stderr and "allow_insecure_listen" in res.stderr
        assert "Traceback" not in res.stderr
    assert not (project.root / ".scalable" / "local" / "state.json").exists()


@pytest.mark.parametrize("extra", ["tls: true", "allow_insecure_listen: true"])
def test_validate_accepts_tls_or_the_explicit_opt_out(project: Project, extra: str) -> None:
    project.write(f"""
        targets:
          local:
            provider: local
            max_workers: 1
            host: 0.0.0.0
            {extra}
        """)
    res = project.run("validate")
    assert res.returncode == 0, res.stderr


def test_scheduler_dashboard_off_when_asked(project: Project) -> None:
    """`dashboard: false`: no dashboard_url, no bokeh in the scheduler; its HTTP server
    still answers health checks, on loopback."""
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from distributed import Client

    project.write("""
        targets:
          local: {provider: local, max_workers: 1, processes: true, dashboard: false}
        """)
    assert "dashboard_url" not in project.run("plan", check=True).stdout
    project.run("apply", "--auto-approve", check=True)
    try:
        outputs = project.state()["outputs"]
        assert "dashboard_url" not in outputs
        assert "dashboard_url" not in project.run("output", check=True).stdout
        with Client(outputs["scheduler_address"], timeout=10) as c:
            port = c.scheduler_info()["services"]["dashboard"]
            assert c.run_on_scheduler(lambda: "bokeh" in __import__("sys").modules) is False

        def status(path: str) -> int:
            try:
                with urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                    return int(resp.status)
            except HTTPError as exc:
                return exc.code

        assert status("/health") == 200 and status("/status") == 404
        assert all(ipaddress.ip_address(ip).is_loopback for _, ip, _ in listeners(project.root))
    finally:
        project.run("destroy", "--auto-approve", check=True)


def test_scheduler_dashboard_is_attached_once_the_scheduler_listens(project: Project) -> None:
    """The default: the scheduler starts without bokeh on its critical path and attaches
    the dashboard to its HTTP server right after (late_dashboard); the URL serves it."""
    import json
    import time
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    import psutil

    project.write("""
        targets:
          local: {provider: local, max_workers: 1, processes: true}
        """)
    project.run("apply", "--auto-approve", check=True)
    try:
        url = project.state()["outputs"]["dashboard_url"]
        sched = next(r for r in project.state()["resources"] if r["address"] == "scheduler")
        argv = psutil.Process(sched["meta"]["pid"]).cmdline()
        assert "--no-dashboard" in argv and "scalable.providers.late_dashboard" in argv

        def page() -> tuple[int, str]:
            try:
                with urlopen(url, timeout=10) as resp:
                    return int(resp.status), resp.read().decode(errors="replace")
            except HTTPError as exc:
                return exc.code, ""
            except URLError:
                return 0, ""

        deadline = time.monotonic() + 30
        while (got := page())[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert got[0] == 200 and "Dask" in got[1], got[0]
        log = (project.root / ".scalable" / "local" / "logs" / "scheduler.log").read_text()
        assert "dashboard attached" in log
        info = json.loads((project.root / ".scalable" / "local" / "scheduler.json").read_text())
        assert url.endswith(f":{info['services']['dashboard']}/status")
    finally:
        project.run("destroy", "--auto-approve", check=True)
