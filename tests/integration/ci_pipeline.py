"""Run the CI examples' steps (docs/examples/ci/) the way a runner does, against moto's S3.

Used by tests/integration/aws/test_ci_pipeline.py and, as a script, to write the
transcript the docs keep (docs/examples/ci/TRANSCRIPT.md)::

    python -m tests.integration.ci_pipeline docs/examples/ci/TRANSCRIPT.md

A step is one workflow ``run:`` (GitHub) or one job's ``script`` (GitLab), run with
``bash -e`` in the project folder; after a failed step only the steps that always run
(GitHub's ``if: always()``, GitLab's ``when: always``) still run, as on a real runner.
The target is the local one (named ``ci``, as the workflow expects) and the state is in
an S3 bucket on a moto server, so the state lock and its lease are the real S3 backend's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "ci"
BIN = Path(sys.executable).parent
BUCKET = "scalable-ci-state"


@dataclass
class Step:
    name: str
    script: str
    always: bool = False  # runs even after a failed step


@dataclass
class Ran:
    step: Step
    returncode: int | None  # None: skipped after an earlier failure
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


def github_steps() -> tuple[list[Step], dict[str, str]]:
    wf = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    steps = [Step(s.get("name", s["run"]), s["run"], s.get("if") == "always()")
             for s in wf["jobs"]["capacity"]["steps"]
             if "run" in s and s.get("id") != "install"]  # scalable is installed here
    return steps, {k: str(v) for k, v in wf["env"].items()}


def gitlab_steps() -> tuple[list[Step], dict[str, str]]:
    ci = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    jobs = [(n, j) for n, j in ci.items() if isinstance(j, dict) and "stage" in j]
    jobs.sort(key=lambda nj: ci["stages"].index(nj[1]["stage"]))
    steps = [Step(n, "\n".join(j["script"]), j.get("when") == "always") for n, j in jobs]
    return steps, {k: str(v) for k, v in ci["variables"].items()}


def manifest(workers: int = 2, bucket: str = BUCKET) -> str:
    """The pipeline's target ``ci``: local processes here, its state in S3."""
    return textwrap.dedent(f"""\
        project: {{name: ci-example}}
        state: {{backend: s3, bucket: {bucket}, key: pipelines, region: us-east-1}}
        targets:
          ci:
            provider: local
            max_workers: {workers}
            threads_per_worker: 1
        """)


def run_pipeline(root: Path, steps: list[Step], env: dict[str, str], *,
                 after: Callable[[Ran], None] | None = None, timeout: float = 300,
                 ) -> list[Ran]:
    """Run ``steps`` in order in ``root``; ``after`` sees each result as it comes."""
    # `scalable` is this interpreter's (an env's own PATH, if it sets one, comes first).
    full = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env, "CI": "1"}
    out: list[Ran] = []
    failed = False
    for step in steps:
        if failed and not step.always:
            ran = Ran(step, None)
        else:
            start = time.monotonic()
            p = subprocess.run(["bash", "-e", "-c", step.script], cwd=root, env=full,
                               capture_output=True, text=True, timeout=timeout)
            ran = Ran(step, p.returncode, p.stdout, p.stderr, time.monotonic() - start)
            failed = failed or p.returncode != 0
        out.append(ran)
        if after is not None:
            after(ran)
    return out


@contextmanager
def moto_s3(bucket: str = BUCKET) -> Iterator[dict[str, str]]:
    """A moto server on 127.0.0.1 with ``bucket``; yields the environment to reach it."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()


# -- the transcript ---------------------------------------------------------------------

def _trim(text: str, keep: int = 60) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= keep:
        return "\n".join(lines)
    head = keep - 10
    return "\n".join([*lines[:head], f"… ({len(lines) - keep} lines trimmed) …",
                      *lines[-10:]])


def _block(ran: Ran) -> str:
    cmd = "\n".join(f"$ {line}" for line in ran.step.script.strip().splitlines())
    if ran.returncode is None:
        return f"### {ran.step.name}\n\n```text\n{cmd}\n(skipped: an earlier step failed)\n```\n"
    body = _trim("\n".join(x for x in (ran.stdout.rstrip(), ran.stderr.rstrip()) if x))
    return (f"### {ran.step.name}\n\n```text\n{cmd}\n{body}\n[exit {ran.returncode}, "
            f"{ran.seconds:.1f} s]\n```\n")


def transcript(path: Path) -> None:
    import tempfile

    from scalable.state.s3 import S3Store

    parts = [
        "# The CI example, run end to end\n",
        "Written by `python -m tests.integration.ci_pipeline docs/examples/ci/TRANSCRIPT.md`"
        " (do not edit by hand). The `run:` steps of `github-actions.yml`, in order, by "
        "`bash -e` as a runner runs them; the target `ci` is local Dask processes and the "
        "state is in S3 (a moto server on 127.0.0.1), so the state lock is the S3 "
        "backend's. Times are of this machine (2 cores, shared).\n",
    ]
    steps, env = github_steps()
    with moto_s3() as aws, tempfile.TemporaryDirectory(prefix="scalable-ci-") as tmp:
        env = {**env, **aws}
        os.environ.update(aws)  # S3Store below reaches moto too
        root = Path(tmp)
        (root / "scalable.yaml").write_text(manifest())
        parts.append(f"Manifest (`scalable.yaml`):\n\n```yaml\n{manifest()}```\n")
        parts.append("## 1. A run that succeeds\n")
        parts += [_block(r) for r in run_pipeline(root, steps, env)]

        parts.append(
            "## 2. Two runs at once: the second cannot take the state\n\n"
            "The workflow's `concurrency` group keeps a second run waiting; if one gets "
            "through anyway (another workflow, a manual run), the S3 state lock stops it. "
            "Here another holder has the lock while the pipeline runs; it lets go once the "
            "apply has failed, so the `destroy` that always runs (`--lock-timeout 5m`) "
            "gets it.\n")
        lock = S3Store(BUCKET, "pipelines/ci/state.json", "us-east-1").lock(
            "apply (another CI run)")
        lock.__enter__()
        held = [True]

        def release(ran: Ran) -> None:
            if held[0] and ran.returncode not in (0, None):
                lock.__exit__(None, None, None)
                held[0] = False

        try:
            parts += [_block(r) for r in run_pipeline(root, steps, env, after=release)]
        finally:
            if held[0]:
                lock.__exit__(None, None, None)

        parts.append("## 3. The client fails: destroy still runs\n\n"
                     "(`python` on the runner exits 1 here.)\n")
        fake = root / "fakebin"
        fake.mkdir()
        (fake / "python").write_text("#!/bin/sh\necho 'client: simulated failure' >&2\nexit 1\n")
        (fake / "python").chmod(0o755)
        broken = {**env, "PATH": f"{fake}:{BIN}:{os.environ['PATH']}"}
        parts += [_block(r) for r in run_pipeline(root, steps, broken)]
    text = "\n".join(parts).replace(str(root), "<project>")
    path.write_text(text)


if __name__ == "__main__":
    transcript(Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES / "TRANSCRIPT.md")
