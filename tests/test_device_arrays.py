"""The device-array path: chained products without host copies."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla
import pytest

import clgemm
from conftest import assert_close_to_reference, rand, reference


def test_chain_on_device(rng):
    A, B, D = rand(rng, (40, 50)), rand(rng, (50, 30)), rand(rng, (30, 20))
    a, b, d = clgemm.to_device(A), clgemm.to_device(B), clgemm.to_device(D)
    ab = clgemm.matmul(a, b)
    assert isinstance(ab, cla.Array) and ab.shape == (40, 30)
    abd = clgemm.matmul(ab, d)
    ref = A.astype(np.float64) @ B.astype(np.float64) @ D.astype(np.float64)
    np_err = np.linalg.norm((A @ B) @ D - ref) / np.linalg.norm(ref)
    assert_close_to_reference(abd.get(), ref, np_err)


def test_device_transposes_and_beta(rng):
    A, B, C0 = rand(rng, (33, 21)), rand(rng, (45, 33)), rand(rng, (21, 45))
    c = clgemm.to_device(C0)
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c, alpha=0.5, beta=2.0,
                        trans_a=True, trans_b=True)
    assert out is c
    ref, np_err = reference(A, B, C0, 0.5, 2.0, True, True)
    assert_close_to_reference(out.get(), ref, np_err)


def test_device_column_major_output(rng):
    A, B = rand(rng, (17, 23)), rand(rng, (23, 29))
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    c = cla.empty(rt.queue, (17, 29), np.float32, order="F")
    c.fill(np.float32(np.nan))
    out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), C=c)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out.get(), ref, np_err)


def test_output_sharing_an_operand_is_refused(rng):
    """C aliasing A or B (the same device array, or an overlapping view) would be read after
    it is overwritten: a clear error, nothing written; disjoint views of one buffer are fine."""
    from clgemm.errors import ShapeError

    A = clgemm.to_device(rng.standard_normal((64, 64)).astype(np.float32))
    B = clgemm.to_device(rng.standard_normal((64, 64)).astype(np.float32))
    before = A.get()
    for kw in (dict(C=A), dict(C=B), dict(C=A[8:40])):
        with pytest.raises(ShapeError, match="shares device memory"):
            clgemm.matmul(A if kw["C"].shape == (64, 64) else A[8:40], B, **kw)
    assert np.array_equal(A.get(), before)
    big = clgemm.to_device(np.zeros((128, 64), np.float32))
    top, bottom = big[:64], big[64:]
    top.set(rng.standard_normal((64, 64)).astype(np.float32))
    out = clgemm.matmul(top, B, C=bottom)  # disjoint halves of one buffer
    ref = top.get().astype(np.float64) @ B.get().astype(np.float64)
    assert np.abs(out.get() - ref).max() < 1e-4 * np.abs(ref).max()
