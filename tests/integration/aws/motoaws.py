"""A handle on the moto server the AWS tests run against."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"


@dataclass
class MotoAws:
    url: str
    env: dict[str, str]

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION,
        ).client(service, endpoint_url=self.url)

    def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=30).read()

    def live_instances(self, lineage: str | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"]}]
        if lineage:
            filters.append({"Name": "tag:scalable:lineage", "Values": [lineage]})
        else:
            filters.append({"Name": "tag-key", "Values": ["scalable:lineage"]})
        res = self.client("ec2").describe_instances(Filters=filters)["Reservations"]
        return [i for r in res for i in r["Instances"]]


class SlowProxy:
    """An HTTP proxy in front of moto that holds back the answers to some API actions.

    The request reaches moto at once (the resource exists), the answer comes late: the
    window in which a crashed client has created something it never recorded.
    """

    def __init__(self, upstream: str, slow: dict[str, float],
                 fail: dict[str, str] | None = None,
                 answer: dict[str, str] | None = None) -> None:
        """``fail``: request-body fragment → EC2 error code answered instead of moto's
        (e.g. ``{"InstanceType=c5.xlarge": "InsufficientInstanceCapacity"}``): the
        errors moto cannot produce, injected before the request reaches it.
        ``answer``: request-body fragment → a JSON body answered with 200 instead of
        moto's (an ECS ``RunTask`` with ``failures``: a capacity-provider shortfall)."""
        import http.client
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        up = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                for fragment, text in (answer or {}).items():
                    if fragment.encode() in body:
                        self.failed.append(fragment)
                        data = text.encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/x-amz-json-1.1")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                for fragment, code in (fail or {}).items():
                    if fragment.encode() in body:
                        self.failed.append(fragment)
                        err = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
                               f"<Code>{code}</Code><Message>We currently do not have "
                               f"sufficient capacity (injected).</Message></Error></Errors>"
                               f"<RequestID>injected</RequestID></Response>").encode()
                        self.send_response(500)  # what EC2 answers for a capacity error
                        self.send_header("Content-Length", str(len(err)))
                        self.end_headers()
                        self.wfile.write(err)
                        return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = up.netloc
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                for action, delay in slow.items():
                    if f"Action={action}".encode() in body:
                        time.sleep(delay)
                try:
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection",
                                             "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed while we held its answer back

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.failed: list[str] = []
        Handler.failed = self.failed  # type: ignore[attr-defined]
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
