"""boto3 clients for one target, and AWS errors turned into one-line ProviderErrors.

boto3 is imported here, lazily: never at CLI start-up. Clients use botocore's
``standard`` retry mode (throttling and 5xx are retried with backoff) and honour
``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_EC2`` …) through boto3's
own configuration chain, so the whole provider runs against any AWS-compatible endpoint.
Credentials come from boto3's standard chain: environment, profiles, SSO, instance and
task roles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scalable.awserrors import configured_region, describe, error_code
from scalable.providers.base import ProviderError

__all__ = ["AwsSession", "aws_errors", "configured_region", "error_code", "translate"]

RETRY_ATTEMPTS = 8


def translate(exc: BaseException, what: str) -> ProviderError:
    """A botocore exception as a ProviderError with a hint where we know one."""
    message, hint = describe(exc, what)
    return ProviderError(message, hint=hint)


@contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore exceptions inside the block into ProviderErrors."""
    try:
        yield
    except ProviderError:
        raise
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, BotoCoreError | ClientError):
            raise translate(exc, what) from None
        raise


class AwsSession:
    """One boto3 session per target; clients are created once and shared by threads."""

    def __init__(self, region: str | None) -> None:
        self.region = region
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _boto(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.region)
        return self._session

    def check(self) -> None:
        """One clear error for a missing region or missing credentials (no API call)."""
        if not self.region:
            raise ProviderError(
                "no AWS region for this target",
                hint="set `region:` in the target, or AWS_REGION / a profile region",
            )
        try:
            creds = self._boto().get_credentials()
        except Exception as exc:  # a malformed profile, an unknown AWS_PROFILE…
            raise translate(exc, "reading AWS credentials") from None
        if creds is None:
            raise ProviderError(
                "no AWS credentials found",
                hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "or run where an instance or task role is available",
            )

    def client(self, service: str) -> Any:
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                from botocore.config import Config
                from scalable._version import __version__

                config = Config(
                    retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS},
                    user_agent_extra=f"scalable/{__version__}",
                    connect_timeout=10,
                    read_timeout=60,
                )
                with aws_errors(f"opening an AWS {service} client"):
                    found = self._boto().client(service, region_name=self.region, config=config)
                self._clients[service] = found
            return found

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def ecs(self) -> Any:
        return self.client("ecs")

    @property
    def logs(self) -> Any:
        return self.client("logs")
