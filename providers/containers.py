"""Container runtimes: each one a small template from (container, worker argv) to the
argv that runs that worker inside the container.

Every provider starts its workers through :func:`wrap`: local processes, Slurm and batch
job scripts, EC2 user data. The result is always an argv list; where a script carries it
(a job script, user data), each item is quoted with ``shlex.quote`` by the caller. Nothing
from a manifest is ever joined into shell text here.

Two kinds of bind reach a container:

- ``system`` paths, bound at the same place inside: the target's state folder (TLS
  material, the scheduler file, logs) and a job's local directory. The worker's command
  line names these paths, so they must mean the same inside and out.
- the group's own ``binds`` (host path → container path).

Templates (``IMAGE`` the group's image, ``ARGV`` the worker command):

- apptainer / singularity: ``apptainer exec --bind SRC[:DST]… --env K=V… OPTIONS IMAGE ARGV``
  (the host environment passes through, as apptainer does by default).
- docker / podman: ``docker run --rm --network host -v SRC:DST… -e NAME… -e K=V… OPTIONS
  IMAGE ARGV``. The host network, because workers and the scheduler find each other by
  the host's addresses. ``-e NAME`` (no value) copies the provider's variables from the
  runtime's own environment, so their values never appear on a command line.
- bwrap (bubblewrap): the image is a root filesystem folder, mounted read-only as ``/``
  (``/`` = this host's own root, with this interpreter's paths under /tmp bound back);
  a fresh ``/dev``, ``/proc`` and a private ``/tmp``,
  a new PID namespace (when bwrap ends, everything inside ends), then ``--bind SRC DST``
  per bind and ``--setenv K V``. A bind's container path must exist in the image, or
  lie under ``/tmp``. Not ``--die-with-parent``: a worker outlives the ``scalable
  apply`` that started it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from scalable.manifest.schema import ContainerConfig
from scalable.providers.base import ProviderError
from scalable.spec import GroupSpec

APPTAINER = ("apptainer", "singularity")
OCI = ("docker", "podman")
RUNTIMES = ("none", *APPTAINER, *OCI, "bwrap")


def wrap(
    container: ContainerConfig | None,
    argv: Sequence[str],
    *,
    system: Sequence[str] = (),
    passthrough: Sequence[str] = (),
    gpus: int = 0,
) -> list[str]:
    """``argv`` as run inside ``container`` (unchanged without one).

    ``system``: paths bound at the same place inside (the state folder…); ``passthrough``:
    names of environment variables the worker needs from the runtime's environment
    (only OCI runtimes start from an empty environment, so only they use it); ``gpus``:
    the worker's GPUs, which apptainer only passes in with ``--nv``."""
    if container is None or not container.enabled:
        return list(argv)
    rt, image = container.runtime, str(container.image)
    binds = list(container.binds.items())
    env = list(container.env.items())
    if rt in APPTAINER:
        out = [rt, "exec", *(["--nv"] if gpus else [])]
        for p in _unique(system):
            out += ["--bind", p]
        for src, dst in binds:
            out += ["--bind", f"{src}:{dst}"]
        for k, v in env:
            out += ["--env", f"{k}={v}"]
        return [*out, *container.options, image, *argv]
    if rt in OCI:
        out = [rt, "run", "--rm", "--network", "host"]
        for p in _unique(system):
            out += ["-v", f"{p}:{p}"]
        for src, dst in binds:
            out += ["-v", f"{src}:{dst}"]
        for name in _unique(passthrough):
            if name not in container.env:
                out += ["-e", name]
        for k, v in env:
            out += ["-e", f"{k}={v}"]
        return [*out, *container.options, image, *argv]
    if rt == "bwrap":
        out = ["bwrap", "--unshare-pid",
               "--ro-bind", image, "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp"]
        if image == "/":
            # This host's own files, but a private /tmp: an interpreter or packages this
            # process runs from under /tmp (a virtualenv there) would vanish; bind them
            # back, read-only.
            for p in _under_tmp([sys.prefix, *sys.path]):
                out += ["--ro-bind", p, p]
        for p in _unique(system):
            out += ["--bind", p, p]
        for src, dst in binds:
            out += ["--bind", src, dst]
        for k, v in env:
            out += ["--setenv", k, v]
        return [*out, *container.options, *argv]
    raise ValueError(f"unknown container runtime {rt!r}")  # the schema allows no other


def _under_tmp(paths: Sequence[str]) -> list[str]:
    """The outermost of ``paths`` that exist under /tmp (each once, none inside another)."""
    from pathlib import Path

    found = sorted({str(Path(p).resolve()) for p in paths
                    if p and Path(p).is_dir() and Path(p).resolve().is_relative_to("/tmp")
                    and Path(p).resolve() != Path("/tmp")})
    out: list[str] = []
    for p in found:
        if not any(Path(p).is_relative_to(q) for q in out):
            out.append(p)
    return out


def oci_flags(container: ContainerConfig | None) -> list[str]:
    """The group's own ``docker run`` flags (binds, env, options), for providers that
    write the rest of the command themselves (EC2 user data)."""
    if container is None or not container.enabled:
        return []
    out: list[str] = []
    for src, dst in container.binds.items():
        out += ["-v", f"{src}:{dst}"]
    for k, v in container.env.items():
        out += ["-e", f"{k}={v}"]
    return [*out, *container.options]


def python_for(container: ContainerConfig | None, default: str) -> str:
    """The interpreter a worker runs: ``default`` (this one) where the container shares
    this host's files (no container, or bwrap over ``/``), else the image's ``python3``."""
    if container is None or not container.enabled:
        return default
    if container.runtime == "bwrap" and container.image == "/":
        return default
    return "python3"


def missing_binds(container: ContainerConfig | None) -> list[str]:
    """Host paths of the binds that do not exist here (checked at plan)."""
    if container is None:
        return []
    from pathlib import Path

    return [src for src in container.binds if not Path(src).exists()]


def check_binds(groups: Sequence[GroupSpec], *, on: str = "this machine") -> None:
    """Refuse (at plan) a bind whose host path does not exist ``on`` the machine that
    checks, or that bwrap could not mount; name the group and the path."""
    for g in groups:
        missing = missing_binds(g.container)
        if missing:
            raise ProviderError(
                f"group {g.name}: container bind {missing[0]!r} does not exist on {on}",
                hint="create it, or fix the host side of the bind (binds: {host: container})",
            )
        bad = unmountable(g.container)
        if bad:
            raise ProviderError(
                f"group {g.name}: bwrap cannot mount on {bad[0]!r}: it is not in the image "
                f"{g.container.image if g.container else ''} and not under /tmp",
                hint="bind under a folder that exists in the image, or under /tmp",
            )


def unmountable(container: ContainerConfig | None) -> list[str]:
    """bwrap's container paths that it cannot mount on: neither in the image (a folder
    on this host) nor under the private /tmp. Empty for other runtimes (their images
    are not folders here)."""
    if container is None or container.runtime != "bwrap" or not container.image:
        return []
    from pathlib import Path

    root = Path(container.image)
    out = []
    for dst in container.binds.values():
        inside = PurePosixPath(dst)
        if inside == PurePosixPath("/tmp") or PurePosixPath("/tmp") in inside.parents:
            continue
        if not (root / inside.relative_to("/")).exists():
            out.append(dst)
    return out


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def describe(container: ContainerConfig | None) -> Mapping[str, object] | None:
    """The container as a plan shows it (None: plain processes)."""
    return container.summary() if container is not None and container.enabled else None
