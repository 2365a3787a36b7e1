"""Bad input gets a clgemm error that says what to do."""

from __future__ import annotations

import numpy as np
import pytest

import clgemm
from clgemm import Schedule
from clgemm.runtime import get_runtime

A = np.ones((4, 5), np.float32)
B = np.ones((5, 6), np.float32)


def test_float64_is_refused_with_a_hint():
    with pytest.raises(clgemm.DTypeError, match="astype"):
        clgemm.matmul(A.astype(np.float64), B)


def test_integer_is_refused():
    with pytest.raises(clgemm.DTypeError):
        clgemm.matmul(A, B.astype(np.int32))


def test_shape_mismatch():
    with pytest.raises(clgemm.ShapeError, match="inner dimensions"):
        clgemm.matmul(A, A)
    with pytest.raises(clgemm.ShapeError, match="2-D"):  # batches are 3-D, nothing more
        clgemm.matmul(np.ones((2, 2, 2, 2), np.float32), B)
    with pytest.raises(clgemm.ShapeError, match="C has shape"):
        clgemm.matmul(A, B, C=np.ones((4, 5), np.float32))


def test_beta_needs_c():
    with pytest.raises(clgemm.ShapeError, match="beta"):
        clgemm.matmul(A, B, beta=1.0)


def test_contract_arguments_are_validated():
    for bad in (0.0, 1.5, -1e-3, "x"):
        with pytest.raises(clgemm.ContractError):
            clgemm.matmul(A, B, rel_tol=bad)
    with pytest.raises(clgemm.ContractError):
        clgemm.matmul(A, B, check="yes")
    with pytest.raises(clgemm.ContractError):
        clgemm.matmul(A, B, nonfinite="ignore")
    with pytest.raises(clgemm.NonFiniteError):
        clgemm.matmul(A, B, alpha=float("nan"))


def test_nonfinite_policy():
    bad = A.copy()
    bad[1, 2] = np.nan
    with pytest.raises(clgemm.NonFiniteError, match="propagate"):
        clgemm.matmul(bad, B, nonfinite="raise")
    out = clgemm.matmul(bad, B)  # default: IEEE propagation, as in BLAS
    assert np.isnan(out[1]).all() and np.isfinite(np.delete(out, 1, axis=0)).all()
    inf = B.copy()
    inf[0, 3] = np.inf
    out = clgemm.matmul(A, inf)
    assert np.isposinf(out[:, 3]).all() and np.isfinite(np.delete(out, 3, axis=1)).all()


def test_unknown_device():
    with pytest.raises(clgemm.NoDeviceError, match="available"):
        clgemm.matmul(A, B, device="no such device anywhere")
    with pytest.raises(clgemm.NoDeviceError, match="out of range"):
        clgemm.get_device(99)


def test_invalid_schedule():
    too_big = Schedule(wg_m=32, wg_n=32, out_m=16, out_n=16)
    with pytest.raises(clgemm.ScheduleError, match="registers"):
        clgemm.matmul(A, B, schedule=too_big)


def test_compile_failure_is_a_clgemm_error():
    rt = get_runtime()
    with pytest.raises(clgemm.CompileError) as info:
        rt.build("__kernel void broken(__global float* x) { x[0] = undefined_name; }",
                 use_disk_cache=False)
    assert "undefined_name" in info.value.log or info.value.log == ""


def test_compiler_that_does_not_know_the_cpu_says_what_to_do(monkeypatch):
    """PoCL whose LLVM does not know the host CPU rejects every kernel ('unknown target
    CPU'): the error names the cause and another device to use."""
    import pyopencl as cl

    rt = get_runtime()

    class Refusing:
        def __init__(self, context, source):
            pass

        def build(self, options, devices):
            raise cl.Error("clBuildProgram failed: BUILD_PROGRAM_FAILURE")

        def get_build_info(self, device, what):
            return "error: unknown target CPU 'generic'"

    monkeypatch.setattr(cl._cl, "_Program", Refusing)
    with pytest.raises(clgemm.CompileError, match="does not know this host CPU.*rusticl"):
        rt.build("__kernel void fine(__global float* x) { x[0] = 1.0f; }",
                 use_disk_cache=False)


def test_allocation_too_large():
    rt = get_runtime()
    with pytest.raises(clgemm.OutOfDeviceMemoryError, match="split"):
        rt.buffer(rt.device.max_alloc_bytes + 4, what="test")


def test_mixed_host_and_device_operands():
    with pytest.raises(clgemm.ShapeError, match="all operands"):
        clgemm.matmul(clgemm.to_device(A), B)
