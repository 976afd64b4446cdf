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
