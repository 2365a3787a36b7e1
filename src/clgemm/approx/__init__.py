"""Approximate products under an error budget (rel_tol=...): TF32 on the tensor cores, randomized
low rank, with a-posteriori estimates and the exact product as fallback."""
