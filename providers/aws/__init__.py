"""AWS provider: EC2 and Fargate."""
