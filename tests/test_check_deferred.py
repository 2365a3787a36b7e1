"""check=True on device arrays with its verdict read later (guard/deferred.py): the calls
return without waiting, the verdicts settle before anything uses their results, and a fault
is found and repaired at the settle."""

from __future__ import annotations

import time

import numpy as np
import pyopencl as cl
import pytest

import clgemm
from clgemm.guard import deferred
from clgemm.lanes.fp32 import Fp32Lane
from clgemm.runtime import get_runtime
from conftest import QueueGate, assert_close_to_reference, rand, reference, side_queue_held

# Not tiny (m n k > 2^20: tiny products are judged cell by cell, by the waiting check), odd
SHAPE = (131, 117, 93)


@pytest.fixture(autouse=True)
def _settled():
    """Every test starts and ends with no open check (and no verdicts left unread)."""
    clgemm.settle()
    yield
    clgemm.settle()


def _operands(rng, m, n, k, trans_a=False, trans_b=False):
    A = rand(rng, (k, m) if trans_a else (m, k))
    B = rand(rng, (n, k) if trans_b else (k, n))
    return A, B, clgemm.to_device(A), clgemm.to_device(B)


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
def test_deferred_checks_are_right_and_settle_clean(rng, trans_a, trans_b):
    m, n, k = SHAPE
    A, B, a, b = _operands(rng, m, n, k, trans_a, trans_b)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    out = clgemm.matmul(a, b, C=c, alpha=-0.75, trans_a=trans_a, trans_b=trans_b, check=True)
    fresh = clgemm.matmul(a, b, trans_a=trans_a, trans_b=trans_b, check=True)
    assert out is c
    rt = get_runtime()
    assert len(rt.checks_open.open) == 2, "the calls waited for their verdicts"
    verdicts = clgemm.settle()
    assert [v.ok for v in verdicts] == [True, True]
    assert all(v.attempts == ["deferred"] and not v.detected for v in verdicts)
    assert all(v.shape == (m, n, k) for v in verdicts)
    ref, np_err = reference(A, B, alpha=-0.75, trans_a=trans_a, trans_b=trans_b)
    assert_close_to_reference(c.get(), ref, np_err)
    assert_close_to_reference(fresh.get(), ref / -0.75, np_err)
    assert clgemm.settle() == [], "settle() returns each verdict once"


def test_deferred_checked_calls_do_not_wait_on_the_device(rng):
    """Checked calls enqueued behind a command that waits for the test return while it
    waits (tests/test_plan.py's gate); their verdicts settle once it lets go."""
    m, n, k = SHAPE
    A, B, a, b = _operands(rng, m, n, k)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    clgemm.matmul(a, b, C=c, check=True)  # the plan, kernels and guard buffers made first
    warm = [clgemm.matmul(a, b, check=True) for _ in range(3)]
    del warm
    clgemm.settle()
    rt = get_runtime()
    rt.user_queue.finish()
    gate = QueueGate(rt, deadline_s=20.0)
    t0 = time.perf_counter()
    calls = deferred.DEPTH - 2
    last = None
    for _ in range(calls // 2):
        clgemm.matmul(a, b, C=c, check=True)
        last = clgemm.matmul(a, b, check=True)
    calls_s = time.perf_counter() - t0
    opened_by_deadline = not gate.open()
    assert not opened_by_deadline, (
        f"the checked calls took {calls_s:.1f} s: one waited for the queue, which only the "
        "test's deadline let go")
    verdicts = clgemm.settle()
    assert len(verdicts) == 2 * (calls // 2) and all(v.ok for v in verdicts)
    ref, np_err = reference(A, B)
    assert_close_to_reference(last.get(), ref, np_err)


@pytest.fixture
def corrupt_once(monkeypatch):
    """The float32 family's launch on the user queue, followed once by a wrong value in one
    cell of its C (as a fault of the device would leave it); the waiting check's own
    launches (lanes/fp32.enqueue_product) are untouched."""
    state = {"left": 1, "cell": (0, 0)}
    launch = Fp32Lane.enqueue

    def enqueue(self, m, n, k, alpha, beta, a, b, c, queue, *rest, **kw):
        event = launch(self, m, n, k, alpha, beta, a, b, c, queue, *rest, **kw)
        outer = not rest and not kw  # the call's own launch (it calls itself once packed)
        if outer and state["left"] and queue is get_runtime().user_queue:
            state["left"] -= 1
            i, j = state["cell"]
            bad = np.array([1.0e3], np.float32)
            event = cl.enqueue_copy(queue, c.buffer, bad,
                                    dst_offset=4 * (c.offset + i * c.ld + j), is_blocking=False)
        return event

    monkeypatch.setattr(Fp32Lane, "enqueue", enqueue)
    return state


def test_a_fault_is_found_and_repaired_when_the_verdict_settles(rng, corrupt_once):
    m, n, k = SHAPE
    corrupt_once["cell"] = (77, 31)
    A, B, a, b = _operands(rng, m, n, k)
    c = clgemm.matmul(a, b, check=True)
    assert corrupt_once["left"] == 0, "the fixture did not reach the deferred launch"
    (v,) = clgemm.settle()
    assert v.ok and v.detected and v.recomputed, v.as_dict()
    assert v.attempts[:2] == ["deferred", "recheck"]
    ref, np_err = reference(A, B)
    assert_close_to_reference(c.get(), ref, np_err)


def test_a_call_that_reads_an_open_result_settles_it_first(rng, corrupt_once):
    """The next product reads the checked C: it is repaired before that product runs, so
    the fault does not travel (and the verdict is kept for settle())."""
    m, n, k = SHAPE
    A, B, a, b = _operands(rng, m, n, k)
    X = rand(rng, (n, 19))
    c = clgemm.matmul(a, b, check=True)
    y = clgemm.matmul(c, clgemm.to_device(X))  # the exact hot path, after the settle
    assert not get_runtime().checks_open, "the call used an open result"
    ref, _ = reference(A, B)
    ref2, np_err = reference(np.asarray(ref, np.float32), X)
    assert_close_to_reference(y.get(), ref2, 4 * np_err)
    (v,) = clgemm.settle()
    assert v.detected and v.ok


def test_a_call_that_overwrites_an_open_check_does_not_wait_for_it(rng):
    """Writing the C (a loop into one output) or an operand of an open check marks it
    superseded; its clean header settles it later as any other."""
    m, n, k = SHAPE
    _, _, a, b = _operands(rng, m, n, k)
    c = clgemm.matmul(a, b, check=True)
    clgemm.matmul(a, b, C=c, check=True)  # the same C again
    other = clgemm.to_device(rand(rng, (m, 40)))
    clgemm.matmul(other, clgemm.to_device(rand(rng, (40, k))), C=a)  # overwrites A
    rt = get_runtime()
    assert [p.superseded for p in rt.checks_open.open] == [True, True]
    verdicts = clgemm.settle()
    assert [v.ok for v in verdicts] == [True, True]
    assert verdicts[0].attempts == ["deferred"]


def test_a_fault_whose_c_was_overwritten_raises_at_the_settle(rng, corrupt_once):
    m, n, k = SHAPE
    _, _, a, b = _operands(rng, m, n, k)
    c = clgemm.matmul(a, b, check=True)  # corrupted
    clgemm.matmul(a, b, C=c)  # the exact hot path overwrites it: nothing left to repair
    with pytest.raises(clgemm.FaultError, match="overwrote"):
        clgemm.settle()
    (v,) = clgemm.settle()
    assert v.detected and not v.ok and "superseded" in v.attempts


def test_what_the_deferred_check_cannot_serve_waits(rng, monkeypatch):
    m, n, k = SHAPE
    A, B, a, b = _operands(rng, m, n, k)
    c = clgemm.to_device(rand(rng, (m, n)))
    rt = get_runtime()
    clgemm.matmul(a, b, C=c, beta=0.5, check=True)  # beta != 0: C's old values
    _, info = clgemm.matmul(a, b, check=True, return_info=True)  # a reported call
    assert info.checked and "abft" in info.extra
    clgemm.matmul(clgemm.to_device(rand(rng, (20, 30))), clgemm.to_device(rand(rng, (30, 25))),
                  check=True)  # tiny: judged cell by cell
    monkeypatch.setattr(deferred, "ENABLED", False)
    clgemm.matmul(a, b, check=True)
    assert not rt.checks_open
    assert clgemm.settle() == []


def test_open_checks_beyond_the_depth_settle_the_oldest(rng):
    m, n, k = SHAPE
    _, _, a, b = _operands(rng, m, n, k)
    for _ in range(deferred.DEPTH + 3):
        clgemm.matmul(a, b, check=True)
    rt = get_runtime()
    assert len(rt.checks_open.open) <= deferred.DEPTH
    assert len(clgemm.settle()) == deferred.DEPTH + 3


@pytest.mark.parametrize("placement", ["given", "side"])
def test_a_loop_into_one_output_waits_for_each_check_on_the_device(rng, monkeypatch,
                                                                   placement):
    """Checked products written one after another into the same C: C's block sums follow
    each product on its queue and wait on the device for the judges of the check before
    (guard's second queue), which read the sums they overwrite (placement "side": the sums
    and judges on the second queue, and the next product waits until they have read C), so
    no check judges another product's output (a race would flag clean products, or pass a
    wrong one)."""
    monkeypatch.setattr(deferred, "C_SUMS", placement)
    m, n, k = SHAPE
    B = rand(rng, (k, n))
    b = clgemm.to_device(B)
    c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
    As = [rand(rng, (m, k)) for _ in range(deferred.DEPTH - 2)]
    a_s = [clgemm.to_device(A) for A in As]
    clgemm.matmul(a_s[0], b, C=c, check=True)  # the guard's buffers and queue made
    clgemm.settle()
    # The second queue held until every product is enqueued: without the device-side wait
    # the products would all run first and every check would read the last one's C.
    with side_queue_held():
        for a in a_s:
            clgemm.matmul(a, b, C=c, check=True)
    verdicts = clgemm.settle()
    assert len(verdicts) == len(As) and all(v.ok and not v.detected for v in verdicts)
    ref, np_err = reference(As[-1], B)
    assert_close_to_reference(c.get(), ref, np_err)


def test_a_product_into_an_open_checks_operand_waits_for_its_sums(rng):
    """A later product written into the A of an open check waits on the device until the
    check's operand sums have read A (they run on the guard's second queue)."""
    m, n, k = SHAPE
    A, B = rand(rng, (m, k)), rand(rng, (k, n))
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    clgemm.matmul(a, b, check=True)
    clgemm.settle()
    X, Y = rand(rng, (m, 40)), rand(rng, (40, k))
    x, y = clgemm.to_device(X), clgemm.to_device(Y)
    with side_queue_held():
        c = clgemm.matmul(a, b, check=True)
        clgemm.matmul(x, y, C=a)  # overwrites A while the check has not read it
    (v,) = clgemm.settle()
    assert v.ok and not v.detected and "superseded" not in v.attempts[1:], v.as_dict()
    ref, np_err = reference(A, B)
    assert_close_to_reference(c.get(), ref, np_err)


def test_a_fault_left_open_at_exit_is_reported(tmp_path):
    """A program that ends with a faulty check still open (no settle()) is told on the way
    out: a RuntimeWarning names it (nothing can be raised to the program any more)."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "open_fault.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import numpy as np
import pyopencl as cl
import clgemm
from clgemm.lanes.fp32 import Fp32Lane
from clgemm.runtime import get_runtime

launch = Fp32Lane.enqueue
def enqueue(self, m, n, k, alpha, beta, a, b, c, queue, *rest, **kw):
    event = launch(self, m, n, k, alpha, beta, a, b, c, queue, *rest, **kw)
    if not rest and not kw and queue is get_runtime().user_queue:
        event = cl.enqueue_copy(queue, c.buffer, np.array([1e3], np.float32),
                                dst_offset=4 * (c.offset + 5), is_blocking=False)
    return event
Fp32Lane.enqueue = enqueue
rng = np.random.default_rng(0)
a = clgemm.to_device(rng.standard_normal((131, 93)).astype(np.float32))
b = clgemm.to_device(rng.standard_normal((93, 117)).astype(np.float32))
c = clgemm.matmul(a, b, check=True)
print("returned")
""")
    done = subprocess.run([sys.executable, "-W", "always", str(script)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "returned" in done.stdout
    assert "at exit, 1 checked product(s)" in done.stderr, done.stderr[-2000:]

