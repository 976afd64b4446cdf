"""Connecting any Dask client to a target's scheduler."""

from __future__ import annotations

import os
from typing import Any

import yaml
from scalable.errors import ScalableError
from scalable.outputs import SCHEDULER_ADDRESS
from scalable.private_files import write_private
from scalable.spec import TargetSpec

TLS_OUTPUTS = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def client_config(outputs: dict[str, str]) -> dict[str, Any]:
    """The Dask config a client needs: the address and, where used, TLS file paths."""
    cfg: dict[str, Any] = {"scheduler-address": outputs[SCHEDULER_ADDRESS]}
    if all(k in outputs for k in TLS_OUTPUTS):
        cfg["distributed"] = {
            "comm": {
                "require-encryption": True,
                "tls": {
                    "ca-file": outputs["tls_ca_file"],
                    "client": {"cert": outputs["tls_client_cert"],
                               "key": outputs["tls_client_key"]},
                },
            }
        }
    return cfg


def client_env(spec: TargetSpec, outputs: dict[str, str]) -> dict[str, str]:
    """DASK_SCHEDULER_ADDRESS, plus DASK_CONFIG naming a file with the TLS settings."""
    env = {"DASK_SCHEDULER_ADDRESS": outputs[SCHEDULER_ADDRESS]}
    cfg = client_config(outputs)
    if "distributed" in cfg:
        path = spec.workdir / "dask-client.yaml"
        write_private(path, yaml.safe_dump(cfg))
        env["DASK_CONFIG"] = str(path)
    return env


def connect(target: str | None = None, file: str | os.PathLike[str] | None = None,
            **client_kwargs: Any) -> Any:
    """A ``ScalableClient`` connected to an applied target (``scalable.connect("hpc")``)."""
    from scalable.client import ScalableClient
    from scalable.workspace import Workspace

    ws = Workspace.open(file, target)
    state = ws.store.read()
    if state is None or SCHEDULER_ADDRESS not in state.outputs:
        raise ScalableError(
            f"target {ws.spec.name!r} is not applied", hint=f"scalable apply -t {ws.spec.name}"
        )
    client = ScalableClient(
        state.outputs[SCHEDULER_ADDRESS],
        spec=ws.spec,
        security=ws.provider.client_security(state.outputs),
        **client_kwargs,
    )
    import logging

    from scalable.hooks import LogHook
    from scalable.versions import VersionMismatch, check

    try:  # before any work is submitted: versions that cannot exchange tasks
        check(client, LogHook(logging.getLogger("scalable")))
    except VersionMismatch:
        client.close()
        raise
    return client


