"""The guard: ABFT checksums (check=True) and approximate products under an error budget
(rel_tol=...)."""
