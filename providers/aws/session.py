"""boto3 clients for one target, and AWS errors turned into one-line ProviderErrors.

boto3 is imported here, lazily: never at CLI start-up. Clients use botocore's
``standard`` retry mode (throttling and 5xx are retried with backoff) and honour
``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_EC2`` …) through boto3's
own configuration chain, so the whole provider runs against any AWS-compatible endpoint.
Credentials come from boto3's standard chain: environment, profiles, SSO, instance and
task roles.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scalable.providers.base import ProviderError

RETRY_ATTEMPTS = 8


def configured_region(explicit: str | None) -> str | None:
    """The region from the manifest, else the environment, else the active profile."""
    if explicit:
        return explicit
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import botocore.session

        region = botocore.session.Session().get_config_variable("region")
    except Exception:  # a broken profile file is reported by validate(), not here
        return None
    return str(region) if region else None


def _clean(message: str) -> str:
    """One line, no HTML (some AWS-compatible endpoints answer 5xx with a web page)."""
    text = re.sub(r"<[^>]+>", " ", message)
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: BaseException, what: str) -> ProviderError:
    """A botocore exception as a ProviderError with a hint where we know one."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return ProviderError(
            f"{what}: no AWS credentials found",
            hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run where an instance or task role is available",
        )
    if isinstance(exc, bx.NoRegionError):
        return ProviderError(f"{what}: no AWS region",
                             hint="set `region:` in the target, or AWS_REGION")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return ProviderError(f"{what}: cannot reach the AWS endpoint ({exc})",
                             hint="check the network, AWS_ENDPOINT_URL and the region")
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        message = _clean(str(err.get("Message", "")) or str(exc))
        hint = None
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            hint = "the credentials lack a permission: see the IAM policy in docs/guides/aws"
        elif code in ("AuthFailure", "InvalidClientTokenId", "ExpiredToken",
                      "UnrecognizedClientException", "SignatureDoesNotMatch"):
            hint = "the AWS credentials are invalid or expired"
        elif code in ("VcpuLimitExceeded", "InstanceLimitExceeded"):
            hint = "raise the EC2 vCPU quota (Service Quotas) or ask for fewer workers"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        label = code or f"HTTP {status}"
        return ProviderError(f"{what}: {label}: {message}", hint=hint)
    if isinstance(exc, bx.BotoCoreError):
        return ProviderError(f"{what}: {_clean(str(exc))}")
    return ProviderError(f"{what}: {type(exc).__name__}: {_clean(str(exc))}")


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
