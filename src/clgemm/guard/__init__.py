"""The guard: ABFT checksums (check=True) that verify, locate, repair or recompute a product."""
