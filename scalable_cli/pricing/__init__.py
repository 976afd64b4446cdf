"""Price catalogs and the estimator."""
