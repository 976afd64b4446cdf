"""A fake GKE cluster: the ClusterManager gRPC fake plus the Kubernetes API fake on it."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fakes.gke import FakeGke
from tests.fakes.kube import FakeKube


@contextmanager
def fake_cluster(root: Path, **gke_options: Any) -> Iterator[tuple[FakeGke, FakeKube]]:
    """A running fake cluster whose ``get_cluster`` names the fake API server's endpoint
    and CA, as GKE names its control plane's."""
    gke = FakeGke(**gke_options)
    kube = FakeKube(gke, root).start()
    gke.cluster.endpoint = kube.endpoint
    gke.cluster.master_auth.cluster_ca_certificate = kube.ca_b64
    gke.start()
    try:
        yield gke, kube
    finally:
        kube.stop()
        gke.stop()


def gke_manifest(gke: FakeGke, extra: str = "", *, project: str = "demo",
                 target: str = "gke", workers: int = 2) -> str:
    """A manifest for one GKE target on the fake cluster."""
    body = textwrap.dedent(f"""\
        project: {{name: {project}}}
        targets:
          {target}:
            provider: gke
            project: {gke.project}
            location: {gke.location}
            cluster: {gke.cluster_name}
            machine_type: e2-standard-4
            image: ghcr.io/dask/dask:2026.8.0
            max_workers: {workers}
            allowed_cidrs: ["127.0.0.1/32"]
        """)
    if extra:
        body += textwrap.indent(textwrap.dedent(extra), "    ")
    return body


def eventually(check: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something true (and return that)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}")
        time.sleep(0.2)
