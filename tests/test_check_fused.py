"""check=True with C's block sums taken inside the 3xTF32 product (render_tc's block_sums,
guard/deferred.FUSED_SUMS): on the CPU device, the tensor cores' PTX emulated, with tiles of
16 rows and checksum blocks of 16 rows. The sums equal abft_cblock's; chained checks into
one C and into fresh outputs settle clean with right results; a fault made inside the
product is found when the verdict settles and the result repaired; a product waits for the
judges that read its set of sums."""

from __future__ import annotations

import time

import numpy as np
import pyopencl as cl
import pytest

import clgemm
from clgemm import route
from clgemm.guard import abft, deferred
from clgemm.guard.device import View, guard_device
from clgemm.kernels.tensorcore import TcSchedule
from clgemm.lanes.mma import TcKernel
from clgemm.operands import Operand
from clgemm.runtime import get_runtime
from conftest import (assert_close_to_reference, emulate_tensor_cores, rand, reference,
                      side_queue_held)

ROWS16 = TcSchedule.from_key("tc-3xtf32-b16x16x16-w1x2-s2-f3-a1-r1")
SHAPE = (70, 45, 340)  # over guard/elementwise's tiny size; 70 rows: a last block of 6


@pytest.fixture
def fused(monkeypatch):
    """The promoted 3xTF32 lane on 16-row tiles, checksum blocks of 16 rows, the fused sums
    on; counts the products that took C's block sums."""
    rt = get_runtime()
    if rt.device.type == "GPU":  # the emulation's stand-ins race between a GPU's warps
        pytest.skip("the emulated tensor-core kernels are for CPU devices")
    emulate_tensor_cores(monkeypatch, rt)
    monkeypatch.setattr(route, "exact_schedule", lambda rt, m, n, k: ROWS16)
    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "16")
    monkeypatch.setattr(deferred, "FUSED_SUMS", True)
    taken = []
    enqueue = TcKernel.enqueue

    def counted(self, *args, **kw):
        if kw.get("sums"):
            taken.append(self.schedule.key())
        return enqueue(self, *args, **kw)

    monkeypatch.setattr(TcKernel, "enqueue", counted)
    if not guard_device(rt).fp64:
        pytest.skip("the fused sums are double (cl_khr_fp64)")
    return taken


def test_the_products_sums_are_the_block_sums_kernels(rng, fused):
    m, n, k = SHAPE
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.matmul(a, b, check=True)
    (v,) = clgemm.settle()
    assert v.ok and not v.detected and fused == [ROWS16.key()]
    rt = get_runtime()
    ck = abft.block_check(guard_device(rt), m, n, k)
    assert ck.bs == 16
    with ck.lock:
        s_fused, q_fused, _ = ck._fused[0]
        ck._cblock(View(c.base_data, 0, n, False, m, n), ck.Sc, ck.Qc, ck.Sac, queue=rt.queue)
        rt.queue.finish()
        got = [np.empty(ck.nb * n) for _ in range(4)]
        for host, buf in zip(got, (s_fused, q_fused, ck.Sc, ck.Qc)):
            cl.enqueue_copy(rt.queue, host, buf, is_blocking=True)
    np.testing.assert_allclose(got[0], got[2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], got[3], rtol=1e-12)
    # and they are C's block sums: rows 0-15, ..., 64-69
    C = c.get().astype(np.float64)
    want = np.add.reduceat(C, np.arange(0, m, 16), axis=0).ravel()
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-9)


def test_chained_checks_settle_clean_and_right(rng, fused):
    """Products into one C and into outputs the calls allocate, alternating the two sets of
    sums; every verdict clean, every result within the exact contract."""
    m, n, k = SHAPE
    B = rand(rng, (k, n))
    b = clgemm.to_device(B)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    As = [rand(rng, (m, k)) for _ in range(5)]
    outs = []
    for A in As:
        a = clgemm.to_device(A)
        clgemm.matmul(a, b, C=c, check=True)
        outs.append(clgemm.matmul(a, b, check=True))
    verdicts = clgemm.settle()
    assert len(verdicts) == 10 and all(v.ok and not v.detected for v in verdicts)
    assert len(fused) == 10
    for A, out in zip(As, outs):
        ref, np_err = reference(A, B)
        assert_close_to_reference(out.get(), ref, np_err)
    ref, np_err = reference(As[-1], B)
    assert_close_to_reference(c.get(), ref, np_err, "the one C")


def test_a_fault_inside_the_product_is_found_and_repaired(rng, fused, monkeypatch):
    """The product that takes the sums reads an A with one entry off (a fault of the
    device's arithmetic, as the sums see it): the expected sums, from the true A, disagree;
    the settle recomputes through the waiting check, which finds and repairs it."""
    m, n, k = SHAPE
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    bad = A.copy()
    bad[9, 17] += 50.0
    rt = get_runtime()
    bad_buf = cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                        hostbuf=bad)
    enqueue = TcKernel.enqueue

    def faulty(self, m_, n_, k_, alpha, beta, a, b, c, *args, **kw):
        if kw.get("sums"):
            a = Operand(bad_buf, 0, a.ld, a.transposed)
        return enqueue(self, m_, n_, k_, alpha, beta, a, b, c, *args, **kw)

    monkeypatch.setattr(TcKernel, "enqueue", faulty)
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.matmul(a, b, check=True)
    (v,) = clgemm.settle()
    assert v.detected and v.ok and "recheck" in v.attempts, v.as_dict()
    ref, np_err = reference(A, B)
    assert_close_to_reference(c.get(), ref, np_err)


def test_tiles_that_are_not_the_checks_blocks_keep_the_block_sums_kernel(rng, fused,
                                                                          monkeypatch):
    monkeypatch.setenv("CLGEMM_ABFT_BLOCK", "32")
    m, n, k = SHAPE
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    c = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B), check=True)
    (v,) = clgemm.settle()
    assert v.ok and not fused
    ref, np_err = reference(A, B)
    assert_close_to_reference(c.get(), ref, np_err)


def test_a_product_waits_for_the_judges_that_read_its_set_of_sums(rng, fused):
    """The judges held on the guard's second queue while five checked products are enqueued:
    the third product writes the set of sums the first check's judges have not read yet, so
    it waits for them on the device (a race would judge one product with another's sums)."""
    m, n, k = SHAPE
    B = rand(rng, (k, n))
    b = clgemm.to_device(B)
    clgemm.matmul(clgemm.to_device(rand(rng, (m, k))), b, check=True)  # buffers made
    clgemm.settle()
    As = [rand(rng, (m, k)) for _ in range(5)]
    a_s = [clgemm.to_device(A) for A in As]  # (an upload waits for the queue: before)
    with side_queue_held():
        outs = [clgemm.matmul(a, b, check=True) for a in a_s]
        time.sleep(1.0)  # the products run as far as they may before the judges do
    verdicts = clgemm.settle()
    assert len(verdicts) == 5 and all(v.ok and not v.detected for v in verdicts), [
        v.as_dict() for v in verdicts if not v.ok or v.detected]
    for A, out in zip(As, outs):
        ref, np_err = reference(A, B)
        assert_close_to_reference(out.get(), ref, np_err)
