"""AWS provider: Dask on EC2 instances or Fargate tasks (boto3 is imported lazily)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalable.providers.aws.provider import AwsProvider

__all__ = ["AwsProvider"]


def __getattr__(name: str) -> Any:
    # The provider is imported when asked for: the manifest imports this package's
    # config module alone (registry.BUILTIN_MODELS) for a target no command runs.
    if name == "AwsProvider":
        from scalable.providers.aws.provider import AwsProvider

        return AwsProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
