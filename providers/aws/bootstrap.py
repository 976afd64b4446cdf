"""What runs on the instance or in the container: EC2 user data and the Fargate command.

Nothing is installed at boot (no pip, no conda): the image brings Python and Dask.
On EC2 that is either an AMI with ``distributed`` installed (``image: ami-…``, *native*
mode) or a container image run with Docker on the ECS-optimised Amazon Linux AMI
(*container* mode, the default, with ``ghcr.io/dask/dask`` matching the local Dask and
Python versions). On Fargate it is the container image.

Leak guards live here: workers run with ``--death-timeout`` (they exit when their
scheduler is gone), the scheduler with ``--idle-timeout``; on EC2 the script powers the
machine off when Dask exits, and ``InstanceInitiatedShutdownBehavior=terminate`` turns
that into a termination. On Fargate the task stops when its only container exits.

TLS: the CA certificate and the node certificate and key travel in the user data (EC2)
or in the task's environment overrides (Fargate). That is readable by whoever may call
``ec2:DescribeInstanceAttribute`` / ``ecs:DescribeTasks`` in the account, and by any
process on the instance through the metadata service (IMDSv2 is required). The client
key and the CA's key never leave this machine (the CA key is not even kept). See
docs/guides/aws.rst for the trade-off and the alternative (Secrets Manager).

The scripts read a few variables so they can run elsewhere unchanged — the tests run
the real generated script on this machine against a local scheduler:
``SCALABLE_DIR`` (working folder), ``SCALABLE_PYTHON`` (interpreter),
``SCALABLE_SCHEDULER_ADDRESS`` (workers), ``SCALABLE_PORT`` / ``SCALABLE_DASHBOARD_PORT``
(scheduler) and ``SCALABLE_ON_EXIT`` (what to do when Dask exits; default: power off).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scalable.providers.commands import dask_image, export_lines, scheduler_argv, worker_argv
from scalable.spec import GroupSpec

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DEATH_TIMEOUT = 300.0  # long enough for a scheduler instance to boot first
PEM_NAMES = ("ca.pem", "node.pem", "node-key.pem")
ENV_PEMS = {"ca.pem": "SCALABLE_TLS_CA", "node.pem": "SCALABLE_TLS_CERT",
            "node-key.pem": "SCALABLE_TLS_KEY"}
_TOKEN = re.compile(r"(@[A-Z_]+@)")


def default_container_image() -> str:
    """``ghcr.io/dask/dask`` at this machine's Dask and Python versions (they must match)."""
    return dask_image()


def is_ami(image: str | None) -> bool:
    return bool(image) and str(image).startswith("ami-")


@dataclass(frozen=True)
class TlsPems:
    """PEM text of the CA certificate and the node certificate and key."""

    ca: str
    cert: str
    key: str

    @classmethod
    def load(cls, ca_file: Path, cert: Path, key: Path) -> TlsPems:
        return cls(ca_file.read_text(), cert.read_text(), key.read_text())

    def by_name(self) -> dict[str, str]:
        return {"ca.pem": self.ca, "node.pem": self.cert, "node-key.pem": self.key}


def tls_args(folder: str) -> list[str]:
    return ["--tls-ca-file", f"{folder}/ca.pem", "--tls-cert", f"{folder}/node.pem",
            "--tls-key", f"{folder}/node-key.pem"]


def sh_arg(arg: str) -> str:
    """Shell-quote one argument; ``@NAME@`` tokens become ``${NAME}`` expansions."""
    if not _TOKEN.search(arg):
        return shlex.quote(arg)
    out = ['"']
    for part in _TOKEN.split(arg):
        m = re.fullmatch(r"@([A-Z_]+)@", part)
        if m:
            out.append("${" + m.group(1) + "}")
        else:
            out.append(re.sub(r'([\\"$`])', r"\\\1", part))
    out.append('"')
    return "".join(out)


def sh_join(argv: Sequence[str]) -> str:
    return " ".join(sh_arg(a) for a in argv)


def scheduler_dask_args(*, tls_dir: str | None, idle_timeout: float | None) -> list[str]:
    """``-m distributed.cli.dask_scheduler …`` listening on every interface of the host."""
    argv = scheduler_argv(
        host="0.0.0.0", port=SCHEDULER_PORT, dashboard=True,
        tls_args=tls_args(tls_dir) if tls_dir else (), idle_timeout=idle_timeout,
    )[1:]
    argv[argv.index("--port") + 1] = "@PORT@"
    argv[argv.index("--dashboard-address") + 1] = ":@DASHBOARD_PORT@"
    return argv


def worker_dask_args(group: GroupSpec, *, name: str, processes: int, tls_dir: str | None,
                     preload_nanny: str | None = None) -> list[str]:
    """``-m distributed.cli.dask_worker $SCHED …`` with the group's sizes and tags."""
    argv = worker_argv(
        group, "@SCHED@", name=name, nworkers=processes,
        death_timeout=WORKER_DEATH_TIMEOUT,
        tls_args=tls_args(tls_dir) if tls_dir else (),
    )[1:]
    if preload_nanny:
        argv += ["--preload-nanny", preload_nanny]
    return argv


# The preemption preload travels as a file (the image has no scalable): its path in native
# mode and inside the container.
PREEMPTION_FILE = "scalable_preemption.py"
PREEMPTION_NATIVE = f"@D@/{PREEMPTION_FILE}"
PREEMPTION_CONTAINER = f"/scalable/{PREEMPTION_FILE}"


def preemption_source() -> str:
    """The source of :mod:`scalable.preemption` (standard library and distributed only)."""
    from scalable import preemption

    return preemption.source()


# Fargate: the preload rides in the worker task definition's environment (RunTask's
# overrides are capped at 8 KB, which the TLS PEMs already use half of).
PREEMPTION_ENV = "SCALABLE_PREEMPTION_GZ64"


def packed(text: str) -> str:
    """gzip + base64: the user data is capped at 16 KB and the PEMs use a third of it."""
    import base64
    import gzip

    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


def _shipped_file(text: str, path: str) -> list[str]:
    return [f"echo {packed(text)} | base64 -d | gunzip > \"{path}\""]


# -- EC2 user data ---------------------------------------------------------------------

def _heredocs(pems: Mapping[str, str], folder: str) -> list[str]:
    lines: list[str] = []
    for name in PEM_NAMES:
        text = pems[name].strip("\n")
        if "SCALABLE_PEM" in text:  # pragma: no cover - PEM text never holds it
            raise ValueError("unexpected PEM content")
        lines += [f'cat > "{folder}/{name}" <<\'SCALABLE_PEM\'', text, "SCALABLE_PEM"]
    return lines


def ec2_user_data(
    *,
    role: str,
    address: str,
    target: str,
    dask_args: Sequence[str],
    scheduler_address: str | None,
    tls: TlsPems | None,
    container_image: str | None,
    env: Mapping[str, str] | None = None,
    preemption: bool = False,
    gpus: bool = False,
    docker_args: Sequence[str] = (),
) -> str:
    """A bash script for cloud-init: write the TLS files, start Dask, power off after it.

    ``container_image`` None means native mode (the AMI has Python and distributed);
    otherwise Dask runs in that image with Docker (host networking). ``preemption``
    writes the preemption preload next to Dask (``dask_args`` name it).
    ``docker_args``: the group's container flags (binds, env, options from
    ``providers/containers.py``), each one argv item, each quoted here.
    """
    from scalable._version import __version__

    lines = [
        "#!/bin/bash",
        f"# scalable {__version__}: Dask {role} {address!r} of target {target!r}.",
        "# Installs nothing. Powers the machine off when Dask exits (idle timeout on the",
        "# scheduler, death timeout on workers); the instance then terminates.",
        'D="${SCALABLE_DIR:-/run/scalable}"',
        'ON_EXIT="${SCALABLE_ON_EXIT:-shutdown -h now}"',
    ]
    if role == "scheduler":
        lines += [f'PORT="${{SCALABLE_PORT:-{SCHEDULER_PORT}}}"',
                  f'DASHBOARD_PORT="${{SCALABLE_DASHBOARD_PORT:-{DASHBOARD_PORT}}}"']
    else:
        lines.append(f'SCHED="${{SCALABLE_SCHEDULER_ADDRESS:-{scheduler_address}}}"')
    lines += export_lines(env or {})
    lines += ["umask 077", 'mkdir -p "$D/tls"']
    if tls is not None:
        lines += _heredocs(tls.by_name(), "$D/tls")
    if preemption:
        lines += _shipped_file(preemption_source(), f"$D/{PREEMPTION_FILE}")
    lines.append('cd "$D"')
    if container_image is None:
        lines.append('PY="${SCALABLE_PYTHON:-python3}"')
        command = '"$PY" ' + sh_join(dask_args)
    else:
        lines += [
            "# The ECS agent of the ECS-optimised AMI is not used: Docker runs Dask directly.",
            "systemctl stop ecs >/dev/null 2>&1 || true",
        ]
        mounts = '-v "$D/tls:/scalable/tls:ro" '
        if preemption:
            mounts += f'-v "$D/{PREEMPTION_FILE}:{PREEMPTION_CONTAINER}:ro" '
        # ``-e NAME`` (no value) hands the container the value exported above: the
        # manifest's env: reaches Dask, and its values are quoted only once.
        env_flags = "".join(f"-e {shlex.quote(k)} " for k in (env or {}))
        group_flags = "".join(f"{shlex.quote(a)} " for a in docker_args)
        command = (
            "docker run --rm --network host --name scalable-dask "
            + ("--gpus all " if gpus else "")  # the instance's GPUs, all of them
            + mounts + env_flags + group_flags
            + f"{shlex.quote(container_image)} python " + sh_join(dask_args)
        )
    lines += [
        "run_dask() {",
        f"  {command}",
        "  status=$?",
        '  echo "scalable: dask exited with status $status; running: $ON_EXIT"',
        '  sh -c "$ON_EXIT"',
        "}",
        'run_dask >> "$D/dask.log" 2>&1 < /dev/null &',
        'echo $! > "$D/dask.pid"',
        "",
    ]
    return "\n".join(lines)


# -- Fargate ---------------------------------------------------------------------------

def container_command(*, role: str, dask_args: Sequence[str], tls: bool,
                      preemption: bool = False) -> list[str]:
    """The container's command: write the TLS files (and, with ``preemption``, the
    preemption preload from :data:`PREEMPTION_ENV`) from the environment, exec Dask."""
    lines = ["set -eu", 'D="${SCALABLE_DIR:-/tmp/scalable}"', "umask 077", 'mkdir -p "$D/tls"']
    if tls:
        for name in PEM_NAMES:
            lines.append(f"printf '%s\\n' \"${ENV_PEMS[name]}\" > \"$D/tls/{name}\"")
    if role == "scheduler":
        lines += [f'PORT="${{SCALABLE_PORT:-{SCHEDULER_PORT}}}"',
                  f'DASHBOARD_PORT="${{SCALABLE_DASHBOARD_PORT:-{DASHBOARD_PORT}}}"']
    else:
        lines.append('SCHED="$SCALABLE_SCHEDULER_ADDRESS"')
    if preemption:
        lines.append(f'printf \'%s\' "${PREEMPTION_ENV}" | base64 -d | gunzip '
                     f'> "$D/{PREEMPTION_FILE}"')
    lines += ["unset SCALABLE_TLS_KEY", 'cd "$D"',
              'exec "${SCALABLE_PYTHON:-python}" ' + sh_join(dask_args)]
    return ["sh", "-c", "\n".join(lines)]


def container_environment(
    *, tls: TlsPems | None, scheduler_address: str | None, extra: Mapping[str, str]
) -> list[dict[str, str]]:
    env = dict(extra)
    if scheduler_address:
        env["SCALABLE_SCHEDULER_ADDRESS"] = scheduler_address
    if tls is not None:
        for name, text in tls.by_name().items():
            env[ENV_PEMS[name]] = text
    return [{"name": k, "value": v} for k, v in env.items()]
