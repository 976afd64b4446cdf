"""A moto server (boto3's real HTTP path, moto's fake AWS) for the AWS provider's tests.

One ``ThreadedMotoServer`` on 127.0.0.1 per test session; every test starts from a clean
account (``POST /moto-api/reset``) with ECS task states pinned (moto otherwise advances a
task one lifecycle step per DescribeTasks call). The CLI under test reaches it through
``AWS_ENDPOINT_URL`` only, as it would any AWS-compatible endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .motoaws import REGION, MotoAws


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    pytest.importorskip("moto", reason="moto is in the test extra: pip install -e '.[test]'")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> MotoAws:
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        # moto never reports DependencyViolation; keep any unexpected wait short.
        "SCALABLE_AWS_DELETE_TIMEOUT": "30",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    moto = MotoAws(moto_server, env)
    moto.post("/moto-api/reset")
    moto.post("/moto-api/state-manager/set-transition",
              {"model_name": "ecs::task",
               "transition": {"progression": "manual", "times": 1000000}})
    return moto

