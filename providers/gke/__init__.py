"""GKE provider: node pools through google-cloud-container."""
