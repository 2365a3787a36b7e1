"""Fresh random input sets for one shape, the float64 reference and the accuracy figures."""

from __future__ import annotations

import numpy as np


class InputSets:
    """`count` independent (A, B) pairs of standard-normal float32 (never zeros), row-major.
    Set 0 is the one whose result is checked against float64."""

    def __init__(self, m: int, n: int, k: int, count: int, rng: np.random.Generator) -> None:
        self.shape = (m, n, k)
        self.sets = []
        for _ in range(max(1, count)):
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            self.sets.append((a, b))
        self._ref = None
        self._numpy_err = None

    def __len__(self) -> int:
        return len(self.sets)

    @property
    def reference(self) -> np.ndarray:
        """float64 product of set 0."""
        if self._ref is None:
            a, b = self.sets[0]
            self._ref = a.astype(np.float64) @ b.astype(np.float64)
        return self._ref

    @property
    def numpy_error(self) -> float:
        """numpy float32's relative Frobenius error on set 0 (the contract's yardstick)."""
        if self._numpy_err is None:
            a, b = self.sets[0]
            self._numpy_err = rel_frobenius(a @ b, self.reference)
        return self._numpy_err

    def accuracy(self, result) -> dict:
        """Accuracy block of a result computed from set 0 into a NaN-poisoned C."""
        result = np.asarray(result)
        written = bool(np.isfinite(result).all())
        ref = self.reference
        if written:
            diff = np.abs(result.astype(np.float64) - ref)
            max_abs = float(diff.max()) if diff.size else 0.0
            rel = rel_frobenius(result, ref)
        else:
            max_abs = rel = None
        np_err = self.numpy_error
        return {
            "max_abs_error": max_abs,
            "rel_frobenius_error": rel,
            "numpy_f32_rel_error": np_err,
            "ratio_to_numpy": (rel / np_err if np_err > 0 else None) if rel is not None else None,
            "all_written": written,
            "unwritten": int((~np.isfinite(result)).sum()),
            "poison": "nan",
        }


def rel_frobenius(x, ref: np.ndarray) -> float:
    denom = float(np.linalg.norm(ref))
    diff = float(np.linalg.norm(np.asarray(x, np.float64) - ref))
    return diff / denom if denom > 0 else diff
