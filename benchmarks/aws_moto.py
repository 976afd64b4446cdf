"""AWS provider figures against a local moto server: wall time and API calls.

    .venv/bin/python benchmarks/aws_moto.py [--workers 10 50]

Prints, for EC2 and Fargate targets of N workers: plan, apply (``--no-wait``: moto's
instances run nothing) and destroy wall times, the AWS API calls each made (by
operation), and apply with creates in parallel (10 in flight) versus one at a time.
Then the S3 lock's acquire+release round trip. moto answers in a millisecond or so where
AWS takes 100–500 ms per call, so the call counts carry over to AWS, the times do not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

MANIFEST = """
version: 1
project: {{name: bench}}
targets:
  t:
    provider: aws
    region: us-east-1
    launch_type: {launch}
    max_workers: {n}
"""


def _count_calls(provider: Any) -> Counter[str]:
    calls: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    for service in ("ec2", "ecs", "logs"):
        provider.aws.client(service).meta.events.register("before-call", hook)
    return calls


def run_target(launch: str, n: int, parallel: int) -> dict[str, Any]:
    from scalable.providers.aws import provider as aws_provider
    from scalable.workspace import Workspace

    aws_provider.PARALLEL = parallel
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scalable.yaml"
        path.write_text(textwrap.dedent(MANIFEST.format(launch=launch, n=n)))
        ws = Workspace.open(path, "t")
        calls = _count_calls(ws.provider)
        engine = ws.engine()
        out: dict[str, Any] = {}
        with engine.locked("bench"):
            t = time.perf_counter()
            ws.provider.validate()
            plan = engine.plan()
            out["plan_s"] = time.perf_counter() - t
            out["plan_calls"] = sum(calls.values())
            calls.clear()
            t = time.perf_counter()
            result = engine.execute(plan, wait=False)
            out["apply_s"] = time.perf_counter() - t
            assert not result.errors, result.errors
            out["apply_calls"] = dict(calls)
            calls.clear()
            t = time.perf_counter()
            result = engine.execute(engine.plan(destroy=True), wait=False)
            out["destroy_s"] = time.perf_counter() - t
            assert not result.errors, result.errors
            out["destroy_calls"] = sum(calls.values())
        return out


def s3_lock_round_trip(samples: int = 20) -> list[float]:
    import boto3
    from scalable.state.s3 import S3Store

    boto3.client("s3").create_bucket(Bucket="bench-state")
    store = S3Store("bench-state", "bench/t/state.json", "us-east-1")
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        with store.lock("bench"):
            pass
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 50])
    args = parser.parse_args()

    import logging
    import urllib.request

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    pin = (b'{"model_name":"ecs::task","transition":{"progression":"manual",'
           b'"times":1000000}}')
    urllib.request.urlopen(urllib.request.Request(
        url + "/moto-api/state-manager/set-transition", data=pin, method="POST"))
    try:
        run_target("ec2", 1, 10)  # warm moto's region data once
        print(f"{'target':10} {'N':>4} {'par':>4} {'plan s':>7} {'apply s':>8} "
              f"{'destroy s':>9} {'plan calls':>10} {'apply calls':>11} {'destroy calls':>13}")
        for launch in ("ec2", "fargate"):
            for n in args.workers:
                for parallel in (10, 1):
                    r = run_target(launch, n, parallel)
                    print(f"{launch:10} {n:>4} {parallel:>4} {r['plan_s']:7.2f} "
                          f"{r['apply_s']:8.2f} {r['destroy_s']:9.2f} {r['plan_calls']:>10} "
                          f"{sum(r['apply_calls'].values()):>11} {r['destroy_calls']:>13}")
                    if parallel == 10 and n == args.workers[-1]:
                        top = ", ".join(f"{k} {v}" for k, v in
                                        sorted(r["apply_calls"].items(), key=lambda kv: -kv[1]))
                        print(f"{'':10} apply calls by operation: {top}")
        lock = s3_lock_round_trip()
        print(f"S3 lock acquire+release: median {statistics.median(lock) * 1000:.1f} ms, "
              f"max {max(lock) * 1000:.1f} ms over {len(lock)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
