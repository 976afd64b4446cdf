"""AWS plumbing shared by the AWS provider and the S3 state backend.

It lives below both so that imports point one way: ``scalable.state`` never imports
``scalable.providers`` (the S3 backend needs the region chain and the error wording,
not the provider). botocore is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import os
import re


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


def clean(message: str) -> str:
    """One line, no HTML (some AWS-compatible endpoints answer 5xx with a web page)."""
    text = re.sub(r"<[^>]+>", " ", message)
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def describe(exc: BaseException, what: str) -> tuple[str, str | None]:
    """A botocore exception as one line and a hint where we know one."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return (
            f"{what}: no AWS credentials found",
            "set AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run where an instance or task role is available",
        )
    if isinstance(exc, bx.NoRegionError):
        return f"{what}: no AWS region", "set `region:` in the target, or AWS_REGION"
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return (
            f"{what}: cannot reach the AWS endpoint ({exc})",
            "check the network, AWS_ENDPOINT_URL and the region",
        )
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        message = clean(str(err.get("Message", "")) or str(exc))
        hint = None
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            hint = "the credentials lack a permission: see the IAM policy in docs/guides/aws"
        elif code in (
            "AuthFailure",
            "InvalidClientTokenId",
            "ExpiredToken",
            "UnrecognizedClientException",
            "SignatureDoesNotMatch",
        ):
            hint = "the AWS credentials are invalid or expired"
        elif code in ("VcpuLimitExceeded", "InstanceLimitExceeded"):
            hint = "raise the EC2 vCPU quota (Service Quotas) or ask for fewer workers"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        label = code or f"HTTP {status}"
        return f"{what}: {label}: {message}", hint
    if isinstance(exc, bx.BotoCoreError):
        return f"{what}: {clean(str(exc))}", None
    return f"{what}: {type(exc).__name__}: {clean(str(exc))}", None
