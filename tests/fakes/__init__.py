"""Small, honest fakes of services no test machine can have (GKE, a Kubernetes API)."""
