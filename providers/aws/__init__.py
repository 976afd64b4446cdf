"""AWS provider: Dask on EC2 instances or Fargate tasks (boto3 is imported lazily)."""

from scalable.providers.aws.provider import AwsProvider

__all__ = ["AwsProvider"]
