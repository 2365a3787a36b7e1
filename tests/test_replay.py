"""The hot path's replay (lanes/recording.py): a hot call on device arrays recorded once and
launched again on other operands of the same geometry. Every replayable lane is recorded on
one set of operands and launched again on fresh ones (C poisoned), against float64; through
the plan, the recording is keyed by geometry, alpha, beta and whether A and B share a buffer,
and the lanes that cannot be replayed are not."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

import clgemm
from importlib import import_module
from clgemm import route

plan_module = import_module("clgemm.plan")
from clgemm.kernels.gemv import default_schedule
from clgemm.lanes import gemv as gemv_lane
from clgemm.lanes import splitk
from clgemm.lanes.fp32 import Fp32Lane
from clgemm.lanes.recording import Recorder, launch
from clgemm.operands import device_operand
from clgemm.runtime import LruMemo, get_runtime
from clgemm.schedule import Schedule
from conftest import assert_close_to_reference, rand, reference, require_valid

# a work-group (GPU) form of the float32 family, valid on the CPU device
WORK_GROUP = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2, tile_k=8, vec_a=1, vec_b=1, vec_c=1,
                      stage_a=1, stage_b=1, unroll_k=1, double_buffer=0, strided=1,
                      local_pad=1)


@pytest.fixture(autouse=True)
def _replay_on(monkeypatch):
    """These tests are about the replay: on, whatever CLGEMM_REPLAY says."""
    monkeypatch.setattr(plan_module, "REPLAY", True)


@pytest.fixture
def gpu_rows(monkeypatch):
    """The small-rows lane in the GPU's form (dot and axpy kernels, K split over work-groups
    as on a device of many units) behind the route, as on an NVIDIA card."""
    rt = get_runtime()
    schedule = dataclasses.replace(default_schedule("GPU"), direct_rows=0, stack_rows=32)
    monkeypatch.setattr(route, "device_schedule", lambda rt: schedule)
    monkeypatch.setattr(gemv_lane, "device_schedule", lambda rt: schedule)
    # the memos in a copy without the lane: the GPU form made here serves no later test
    monkeypatch.setattr(rt, "_memo", {k: v for k, v in rt._memo.items() if k != "gemv lane"})
    monkeypatch.setattr(rt, "plans", LruMemo(64))
    # splits of K, as on a GPU of many units
    monkeypatch.setattr(rt, "device", dataclasses.replace(rt.device, compute_units=64))
    return rt


def _record_then_replay(rt, lane_call, shapes, rng, ta, tb, alpha=1.0, beta=0.0):
    """lane_call(a, b, c) recorded on one set of operands, then the recording launched on a
    fresh set (C poisoned where beta is 0): the second result against float64."""
    (m, n, k) = shapes
    recordings = []
    for attempt in range(2):
        A = rand(rng, (k, m) if ta else (m, k))
        B = rand(rng, (n, k) if tb else (k, n))
        C0 = rand(rng, (m, n)) if beta else np.full((m, n), np.nan, np.float32)
        dA, dB, dC = (clgemm.to_device(x) for x in (A, B, C0))
        a, b, c = (device_operand(rt, name, x, t) for name, x, t in
                   (("A", dA, ta), ("B", dB, tb), ("C", dC, False)))
        buffers = (dA.base_data, dB.base_data, dC.base_data)
        if attempt == 0:
            with Recorder(buffers) as recorder:
                lane_call(a, b, c, alpha, beta)
            recording = recorder.recording()
            assert recording is not None
            recordings.append(recording)
        else:
            recordings[0].launch(rt.user_queue, buffers,
                                 lambda nbytes: rt.pooled(nbytes, "test", rt.user_queue))
        ref, np_err = reference(A, B, C0 if beta else None, alpha, beta, ta, tb)
        assert_close_to_reference(dC.get(), ref, np_err, f"attempt {attempt}")
    return recordings[0]


@pytest.mark.parametrize("m,n,k,ta,tb", [
    (1, 300, 1029, False, True),   # one row, the dot kernel
    (3, 50, 2100, False, True),    # three rows, K split over work-groups
    (16, 77, 700, False, False),   # 16 rows, the axpy kernel
    (29, 61, 530, False, True),    # stacked: a block of 16 and 13 rows more
    (150, 3, 900, True, False),    # the few are C's columns
])
def test_the_small_rows_lane_replays_right(gpu_rows, rng, m, n, k, ta, tb):
    lane = gemv_lane.GemvLane(gpu_rows)
    assert lane.replayable

    def call(a, b, c, alpha, beta):
        lane.enqueue(m, n, k, alpha, beta, a, b, c, gpu_rows.user_queue)

    rec = _record_then_replay(gpu_rows, call, (m, n, k), rng, ta, tb, alpha=0.75, beta=-0.5)
    if m == 3:  # the split's partial sums: scratch each launch takes from the pool anew
        assert len(rec.steps) == 2 and len(rec.scratch_sizes) == 1


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_the_float32_family_and_split_k_replay_right(rng, ta, tb):
    rt = get_runtime()
    fp32 = Fp32Lane(rt, WORK_GROUP)
    sliced = splitk.SplitKLane(rt, splitk.Plan(WORK_GROUP, 3))
    assert fp32.replayable and sliced.replayable
    for lane, shape in ((fp32, (37, 45, 29)), (sliced, (21, 19, 700))):
        def call(a, b, c, alpha, beta, lane=lane, shape=shape):
            lane.enqueue(*shape, alpha, beta, a, b, c, rt.user_queue)

        _record_then_replay(rt, call, shape, rng, ta, tb, alpha=-1.5, beta=2.0)


def test_the_direct_form_is_not_replayed():
    """The CPU's direct form packs operands into scratch other calls share: not recorded."""
    rt = get_runtime()
    direct = Schedule.from_key("wm8-wn4-om2-on4-tk4-va1-vb1-vc1-sa0-sb0-uk1-db0-st0-lp0-ac64-dr1")
    require_valid(direct)  # (a CPU device's form)
    assert not Fp32Lane(rt, direct).replayable
    assert clgemm.plan(40, 50, 60, schedule=direct).replays is None


def test_the_plan_records_by_geometry_alpha_beta_and_aliasing(gpu_rows, rng):
    """Calls on device arrays: the first of a geometry is recorded, the next ones launch the
    recording; a transposed view, an offset, another alpha or beta, or A and B one buffer
    make recordings of their own, and every result matches float64."""
    m, n, k = 7, 90, 513
    p = clgemm.plan(m, n, k, trans_b=True)
    assert p.lane.name == "gemv" and p.replays is not None

    def check(A, B, dA, dB, alpha=1.0, beta=0.0, C0=None):
        C = None if C0 is None else clgemm.to_device(C0)
        got = clgemm.matmul(dA, dB, C=C, alpha=alpha, beta=beta, trans_b=True).get()
        ref, np_err = reference(A, B, C0, alpha, beta, trans_b=True)
        assert_close_to_reference(got, ref, np_err)

    for _ in range(3):  # recorded, then replayed on fresh operands
        A, B = rand(rng, (m, k)), rand(rng, (n, k))
        check(A, B, clgemm.to_device(A), clgemm.to_device(B))
    assert len(p.replays) == 1
    A, B = rand(rng, (m, k)), rand(rng, (n, k))
    check(A, B, clgemm.to_device(A), clgemm.to_device(B), alpha=0.5, beta=-1.0,
          C0=rand(rng, (m, n)))
    big = rand(rng, (m, k + 5))
    check(big[:, 3:k + 3], B, clgemm.to_device(big)[:, 3:k + 3], clgemm.to_device(B))
    assert len(p.replays) == 3
    # A and B slices of one buffer, then of two at the same offsets: recordings of their own
    for two in (False, True, False):
        both, other = rand(rng, (m + n, k)), rand(rng, (m + n, k))
        d, e = clgemm.to_device(both), clgemm.to_device(other)
        check(both[:m], (other if two else both)[m:], d[:m], (e if two else d)[m:])
    assert len(p.replays) == 5


def test_batches_replay_right(gpu_rows, rng):
    """A batch on device arrays (the small-rows lane, and the float32 family's batched kernel
    for rows past it), recorded once and launched again; a 2-D B broadcast over the batch is
    a geometry of its own."""
    for m, n, k in ((16, 128, 300), (40, 50, 33)):
        for _ in range(3):
            A, B = rand(rng, (5, m, k)), rand(rng, (5, k, n))
            got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B)).get()
            ref = np.matmul(A.astype(np.float64), B.astype(np.float64))
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
            got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B[0])).get()
            ref = np.matmul(A.astype(np.float64), B[0].astype(np.float64))
            assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_threads_replaying_one_recording_keep_their_own_results(gpu_rows, rng, monkeypatch):
    """Threads on one plan whose recording splits K: each result right (each launch of the
    recording takes its own partial sums; a pause after each kernel lets the other threads
    in between)."""
    import time

    from clgemm.lanes import recording

    def slow_launch(*args, _launch=recording.launch, **kwargs):
        event = _launch(*args, **kwargs)
        time.sleep(0.002)
        return event

    monkeypatch.setattr(recording, "launch", slow_launch)
    m, n, k = 3, 50, 4096
    p = clgemm.plan(m, n, k, trans_b=True)
    W = rand(rng, (n, k))
    dW = clgemm.to_device(W)
    clgemm.matmul(clgemm.to_device(rand(rng, (m, k))), dW, trans_b=True).get()  # recorded
    errors: list = []

    def work(seed: int) -> None:
        r = np.random.default_rng(seed)
        try:
            for _ in range(10):
                A = rand(r, (m, k))
                got = clgemm.matmul(clgemm.to_device(A), dW, trans_b=True).get()
                ref, np_err = reference(A, W, trans_b=True)
                assert_close_to_reference(got, ref, np_err)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(p.replays) == 1


def test_replay_off_runs_the_lane_every_call(gpu_rows, rng, monkeypatch):
    monkeypatch.setattr(plan_module, "REPLAY", False)
    p = clgemm.plan(3, 64, 300)
    A, B = rand(rng, (3, 300)), rand(rng, (300, 64))
    got = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B)).get()
    ref, np_err = reference(A, B)
    assert_close_to_reference(got, ref, np_err)
    assert p.replays is not None and len(p.replays) == 0


def test_a_recording_refuses_what_it_cannot_launch_again(rng):
    """A launch that waits on events spoils a recording; one that never met an operand's
    buffer, or met its memory under another buffer object, gives none."""
    rt = get_runtime()
    lane = Fp32Lane(rt, WORK_GROUP)
    A, B, C = (clgemm.to_device(rand(rng, (8, 8))) for _ in range(3))
    a, b, c = (device_operand(rt, "X", x, False) for x in (A, B, C))
    buffers = (A.base_data, B.base_data, C.base_data)
    with Recorder(buffers) as r:
        event = lane.enqueue(8, 8, 8, 1.0, 0.0, a, b, c, rt.user_queue)
        kernel = lane.kernel_for(a, b, c)
        launch(kernel._args, kernel._lock, rt.user_queue,
               [8, 8, 8, 1.0, 0.0, a.buffer, 8, 0, b.buffer, 8, 0, c.buffer, 8, 0],
               kernel.global_size(8, 8), kernel.local_size, wait_for=[event])
    assert r.recording() is None
    with Recorder(buffers + (clgemm.to_device(rand(rng, (2, 2))).base_data,)) as r:
        lane.enqueue(8, 8, 8, 1.0, 0.0, a, b, c, rt.user_queue)
    assert r.recording() is None  # a fourth buffer the call never met
    import pyopencl as cl

    alias = cl.Buffer.from_int_ptr(A.base_data.int_ptr, retain=True)
    with Recorder(buffers) as r:
        lane.enqueue(8, 8, 8, 1.0, 0.0, a, b, c, rt.user_queue)
        lane.enqueue(8, 8, 8, 1.0, 0.0, a._replace(buffer=alias), b, c, rt.user_queue)
    assert r.recording() is None
    rt.user_queue.finish()


def test_a_spoiled_call_gives_no_recording(rng):
    """A path that enqueues what a recording does not hold says so (`spoil`): no recording."""
    from clgemm.lanes import recording

    rt = get_runtime()
    lane = Fp32Lane(rt, WORK_GROUP)
    A, B, C = (clgemm.to_device(rand(rng, (8, 8))) for _ in range(3))
    a, b, c = (device_operand(rt, "X", x, False) for x in (A, B, C))
    buffers = (A.base_data, B.base_data, C.base_data)
    for spoiled in (False, True):
        with Recorder(buffers) as r:
            lane.enqueue(8, 8, 8, 1.0, 0.0, a, b, c, rt.user_queue)
            recording.flush(rt.user_queue)
            if spoiled:
                recording.spoil()
        assert (r.recording() is None) == spoiled
    rt.user_queue.finish()


# ---- rel_tol's judged path (approx/judged.py) replayed -------------------------------------
@pytest.fixture
def judged_gpu_form(gpu_rows, monkeypatch):
    """rel_tol's judged path as on an NVIDIA card: tensor cores (their PTX emulated, small
    tiles), the probes on the small-rows lane's GPU form, and (plans made with
    `schedule=WORK_GROUP`) the float32 family's work-group form as the exact fallback."""
    from conftest import emulate_tensor_cores, small_tc_tiles

    for key in (("budget judge", "user"), ("budget judge", "station")):
        gpu_rows._memo.pop(key, None)  # (gpu_rows' copy of the memos): judges of this form
    emulate_tensor_cores(monkeypatch, gpu_rows)
    small_tc_tiles(monkeypatch)
    return gpu_rows


def _rel(got, ref) -> float:
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def _judged_call(dA, dB, **kw):
    """B stored K x N: on an sm_90 card a small TF32 product of that layout takes mma.sync,
    which a recording holds (stored N x K it would take wgmma, which none does)."""
    return clgemm.matmul(dA, dB, rel_tol=2e-2, schedule=WORK_GROUP, **kw)


def test_a_judged_call_replays_with_fresh_probes_and_its_own_verdict(judged_gpu_form, rng):
    """A rel_tol call that TF32 serves, on device arrays: recorded once, then launched again
    on fresh operands (C poisoned); each launch draws probes of its own, and its verdict is
    its own: operands where TF32 misses the budget (a difference of nearly equal terms)
    get the exact product, from the same recording."""
    import pyopencl as cl

    from clgemm.approx import judged
    from clgemm.lanes.recording import Recording

    rt = judged_gpu_form
    m, n, k = 45, 40, 96
    p = clgemm.plan(m, n, k, rel_tol=2e-2, schedule=WORK_GROUP)
    assert p.judged and p.replays is not None
    judge = judged.judge_for(rt, rt.user_queue)
    probes = []
    for _ in range(3):
        A, B = rand(rng, (m, k)), rand(rng, (k, n))
        C = clgemm.to_device(np.full((m, n), np.nan, np.float32))
        got = _judged_call(clgemm.to_device(A), clgemm.to_device(B), C=C).get()
        ref = A.astype(np.float64) @ B.astype(np.float64)
        assert 1e-6 < _rel(got, ref) <= 2e-2  # TF32's error, kept
        w = judge._scratch.buffer("w", 4 * n * judged.PROBES)
        probes.append(np.empty(n * judged.PROBES, np.float32))
        cl.enqueue_copy(rt.user_queue, probes[-1], w)
    (recorded,) = p.replays.values()
    assert isinstance(recorded, Recording)
    assert not np.array_equal(probes[1], probes[2])  # fresh probes at each launch
    # X [Y; -Y'] with Y' = Y (1 + 1e-3) rounded: TF32 rounds Y and Y' a part in 2^11, so
    # its result is off by about as much as the result itself
    half = k // 2
    X, Y = rand(rng, (m, half)), rand(rng, (n, half))
    A = np.concatenate([X, X], axis=1)
    B = np.ascontiguousarray(np.concatenate([Y, -(Y * np.float32(1.001))], axis=1).T)
    got = _judged_call(clgemm.to_device(A), clgemm.to_device(B)).get()
    ref = A.astype(np.float64) @ B.astype(np.float64)
    assert _rel(got, ref) < 1e-3  # the exact product (TF32's would be ~1 off)
    assert len(p.replays) == 1


def test_a_judged_call_with_beta_is_not_recorded(judged_gpu_form, rng):
    """beta != 0 copies C aside (not a kernel): the geometry is remembered as one that
    cannot be recorded, and each call runs the judge's own path, right."""
    from clgemm.lanes.recording import Recording

    m, n, k = 33, 28, 64
    p = clgemm.plan(m, n, k, rel_tol=2e-2, schedule=WORK_GROUP)
    for _ in range(2):
        A, B, C0 = rand(rng, (m, k)), rand(rng, (k, n)), rand(rng, (m, n))
        C = clgemm.to_device(C0)
        got = _judged_call(clgemm.to_device(A), clgemm.to_device(B), C=C, beta=0.5).get()
        ref = A.astype(np.float64) @ B.astype(np.float64) + 0.5 * C0
        assert 1e-6 < _rel(got, ref) <= 2e-2
    assert len(p.replays) == 1
    assert not any(isinstance(x, Recording) for x in p.replays.values())
