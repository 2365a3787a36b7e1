"""Host arrays through the runtime's page-locked staging buffers (opt-in, CLGEMM_STAGING=1,
for copies of 1 MiB and more), in chunks smaller than the arrays."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pyopencl as cl
import pytest

import clgemm
from clgemm import staging
from clgemm.runtime import get_runtime
from conftest import assert_close_to_reference, rand, reference, run_in_threads


def test_staged_numpy_products_in_chunks(rng, monkeypatch):
    monkeypatch.setenv("CLGEMM_STAGING", "1")
    monkeypatch.setattr(staging, "CHUNK_BYTES", 4 * 997)  # chunks that split rows
    monkeypatch.setattr(staging, "MIN_BYTES", 0)
    A, B, C0 = rand(rng, (151, 203)), rand(rng, (203, 97)), rand(rng, (151, 97))
    got = clgemm.matmul(A, B, C=C0.copy(), alpha=2.0, beta=-0.5)
    ref, np_err = reference(A, B, C0, 2.0, -0.5)
    assert_close_to_reference(got, ref, np_err)
    out = np.full((97, 151), np.nan, np.float32).T  # a C that is not C-contiguous
    clgemm.matmul(A, B, C=out)
    ref, np_err = reference(A, B)
    assert_close_to_reference(out, ref, np_err)
    batch = rand(rng, (3, 40, 203))
    got = clgemm.matmul(batch, B)
    for i in range(3):
        ref, np_err = reference(batch[i], B)
        assert_close_to_reference(got[i], ref, np_err)


def test_staging_buffers_are_reused_and_bounded(rng, monkeypatch):
    monkeypatch.setenv("CLGEMM_STAGING", "1")
    monkeypatch.setattr(staging, "MIN_BYTES", 0)
    st = staging.Staging(get_runtime())
    host = rand(rng, (1000,))
    back = np.full_like(host, np.nan)
    buf = cl.Buffer(get_runtime().context, cl.mem_flags.READ_WRITE, host.nbytes)
    for _ in range(3):
        st.upload(get_runtime().queue, buf, host)
        st.download(get_runtime().queue, back, buf)
        np.testing.assert_array_equal(back, host)
        back[:] = np.nan
    assert len(st._free) == 1  # one buffer served every copy
    for size in (10, 20, 40, 80, 160, 320):
        st._give(st._take(size * 1024))
    assert len(st._free) <= staging.MAX_KEPT


# ---- the threaded host copy -------------------------------------------------------------

CHUNK = 4 * 997  # chunks that split rows of 203 floats
PIECE = 4 * 101  # so a chunk is cut into 3 pieces (the thread count), the last one ragged


@pytest.fixture
def threaded(monkeypatch):
    """Staging with 3 copy threads, small chunks and pieces."""
    monkeypatch.setenv("CLGEMM_STAGING", "1")
    monkeypatch.delenv("CLGEMM_STAGING_THREADS", raising=False)
    monkeypatch.setattr(staging, "COPY_THREADS", 3)
    monkeypatch.setattr(staging, "CHUNK_BYTES", CHUNK)
    monkeypatch.setattr(staging, "MIN_PIECE_BYTES", PIECE)
    monkeypatch.setattr(staging, "MIN_BYTES", 0)
    return staging.Staging(get_runtime())


def data(rng, shape):
    """Random float32 with no zero and no NaN: a piece left uncopied shows."""
    sign = rng.choice(np.array([-1.0, 1.0]), size=shape)
    return (sign * rng.uniform(0.5, 2.0, size=shape)).astype(np.float32)


def on_device(rng, shape):
    """(runtime, random host data, a device buffer of its size)."""
    rt = get_runtime()
    host = data(rng, shape)
    return rt, host, cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, host.nbytes)


def same_bits(got, want):
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def recorded_copies(monkeypatch):
    """The (thread name, bytes) of every piece the workers copy."""
    calls = []
    real = staging._copy

    def copy(dst, src):
        calls.append((threading.current_thread().name, dst.nbytes))
        real(dst, src)

    monkeypatch.setattr(staging, "_copy", copy)
    return calls


@pytest.mark.parametrize("align", [1, 4, 64])
def test_pieces_tile_a_span(monkeypatch, align):
    monkeypatch.setattr(staging, "MIN_PIECE_BYTES", PIECE)
    monkeypatch.setattr(staging, "PIECE_ALIGN", align)
    for start, end, threads in [(0, CHUNK, 3), (CHUNK, 2 * CHUNK - 7, 3), (5, 5 + PIECE - 1, 8),
                                (0, 10 * PIECE + 3, 4), (12, 12 + 2 * PIECE, 1), (3, 3, 4)]:
        got = staging.pieces(start, end, threads)
        if end == start:
            assert got == []
            continue
        assert got[0][0] == start and got[-1][1] == end
        assert all(a < b for a, b in got)
        assert all(b == a2 for (_, b), (a2, _) in itertools.pairwise(got))  # no gap, no overlap
        assert len(got) == max(1, min(threads, (end - start) // PIECE))
        assert all((a - start) % align == 0 for a, _ in got)
    sizes = [b - a for a, b in staging.pieces(0, CHUNK, 3)]
    assert len(sizes) == 3 and len(set(sizes)) > 1  # the last piece is ragged


@pytest.mark.parametrize("align", [1, 64])
@pytest.mark.parametrize("shape", [(151, 203), (3, CHUNK // 4), (1, 57), (1, 1)])
def test_threaded_copies_round_trip_exactly(rng, monkeypatch, threaded, align, shape):
    monkeypatch.setattr(staging, "PIECE_ALIGN", align)
    calls = recorded_copies(monkeypatch)
    rt = get_runtime()
    queue = rt.queue
    host = data(rng, shape)
    offset = 4 * 13  # a destination offset that is not a chunk's
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, host.nbytes + offset)
    for _ in range(2):  # the second time in a reused staging buffer, poisoned between
        calls.clear()
        cl.enqueue_copy(queue, buf, np.full(host.size + 13, np.nan, np.float32),
                        is_blocking=True)
        threaded.upload(queue, buf, host, dst_offset=offset)
        check = np.full(host.size + 13, np.nan, np.float32)
        cl.enqueue_copy(queue, check, buf, is_blocking=True)  # read back the plain way
        same_bits(check[13:], host.reshape(-1))
        assert np.isnan(check[:13]).all()  # nothing written before the offset
        assert sum(n for _, n in calls) == host.nbytes  # every byte by a worker, once
        n_chunks = -(-host.nbytes // CHUNK)
        assert len(calls) >= n_chunks
        if host.nbytes >= CHUNK:
            assert len(calls) > n_chunks  # chunks are cut into pieces

        calls.clear()
        back = np.full(shape, np.nan, np.float32)
        threaded.download(queue, back, buf, src_offset=offset)
        same_bits(back, host)
        assert sum(n for _, n in calls) == host.nbytes
        with threaded._lock:
            assert len(threaded._free) == 1  # one buffer, given back each time
    assert threaded._pool is not None and threaded._threads == 3
    assert all(name.startswith("clgemm-staging") for name, _ in calls)


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_pieces_run_in_parallel(rng, monkeypatch, threaded, direction):
    rt, host, buf = on_device(rng, (3, CHUNK // 4))
    cl.enqueue_copy(rt.queue, buf, host, is_blocking=True)
    real = staging._copy
    lock = threading.Lock()
    state = {"active": 0, "most": 0}
    # every piece waits until three are copying at once (9 pieces: three full meetings); run
    # one after another they would never meet, and the barrier's timeout fails the test
    meet = threading.Barrier(3, timeout=10)

    def copy(dst, src):
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
        meet.wait()
        real(dst, src)
        with lock:
            state["active"] -= 1

    monkeypatch.setattr(staging, "_copy", copy)
    back = np.full_like(host, np.nan)
    if direction == "upload":
        threaded.upload(rt.queue, buf, host)
        cl.enqueue_copy(rt.queue, back, buf, is_blocking=True)
    else:
        threaded.download(rt.queue, back, buf)
    same_bits(back, host)
    assert state["most"] == 3  # a chunk's 3 pieces were copied at once


def test_one_copy_thread_uses_no_pool(rng, monkeypatch, threaded):
    calls = recorded_copies(monkeypatch)
    rt, host, buf = on_device(rng, (151, 203))
    for threads, env, pooled in [(1, None, False), (4, "1", False), (1, "2", True)]:
        monkeypatch.setattr(staging, "COPY_THREADS", threads)
        if env is None:
            monkeypatch.delenv("CLGEMM_STAGING_THREADS", raising=False)
        else:
            monkeypatch.setenv("CLGEMM_STAGING_THREADS", env)
        st = staging.Staging(rt)
        calls.clear()
        back = np.full_like(host, np.nan)
        st.upload(rt.queue, buf, host)
        st.download(rt.queue, back, buf)
        same_bits(back, host)
        assert (st._pool is not None) == pooled
        assert bool(calls) == pooled  # one thread: the caller copies, as before threads


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_failing_piece_raises_and_returns_the_buffer(rng, monkeypatch, threaded, direction):
    rt, host, buf = on_device(rng, (151, 203))
    threaded.upload(rt.queue, buf, host)  # the staging buffer exists and is free
    (kept,) = threaded._free
    real = staging._copy
    lock = threading.Lock()
    state = {"calls": 0, "active": 0}

    def copy(dst, src):
        with lock:
            state["calls"] += 1
            state["active"] += 1
            n = state["calls"]
        try:
            if n == 40:  # some chunks in: earlier pieces done, others running
                raise RuntimeError("piece failed")
            time.sleep(0.001)
            real(dst, src)
        finally:
            with lock:
                state["active"] -= 1

    monkeypatch.setattr(staging, "_copy", copy)
    back = np.full_like(host, np.nan)
    with pytest.raises(RuntimeError, match="piece failed"):
        if direction == "upload":
            threaded.upload(rt.queue, buf, host)
        else:
            threaded.download(rt.queue, back, buf)
    assert state["active"] == 0  # no worker still copies when the call has returned
    assert len(threaded._free) == 1 and threaded._free[0] is kept
    monkeypatch.setattr(staging, "_copy", real)
    threaded.download(rt.queue, back, buf)  # still usable, with the same buffer
    same_bits(back, host)
    assert len(threaded._free) == 1 and threaded._free[0] is kept


def test_a_failing_enqueue_waits_for_the_workers(rng, monkeypatch, threaded):
    rt, host, buf = on_device(rng, (151, 203))
    threaded.upload(rt.queue, buf, host)
    (kept,) = threaded._free
    real_copy, real_enqueue = staging._copy, cl.enqueue_copy
    lock = threading.Lock()
    state = {"enqueued": 0, "active": 0, "late": 0}

    def copy(dst, src):
        with lock:
            state["active"] += 1
        time.sleep(0.1)  # still copying when the enqueue fails (a wide margin: CI is busy)
        real_copy(dst, src)
        with lock:
            state["active"] -= 1
            state["late"] += 1

    def enqueue(*args, **kwargs):
        state["enqueued"] += 1
        if state["enqueued"] == 3:
            state["late"] = 0
            raise cl.RuntimeError("enqueue failed")
        return real_enqueue(*args, **kwargs)

    monkeypatch.setattr(staging, "_copy", copy)
    monkeypatch.setattr(cl, "enqueue_copy", enqueue)
    with pytest.raises(cl.RuntimeError, match="enqueue failed"):
        threaded.upload(rt.queue, buf, host)
    monkeypatch.setattr(cl, "enqueue_copy", real_enqueue)
    assert state["active"] == 0 and state["late"] > 0  # the next chunk's pieces had ended
    assert len(threaded._free) == 1 and threaded._free[0] is kept


def test_concurrent_threads_share_one_staging(rng, threaded):
    rt = get_runtime()
    shapes = [(151, 203), (97, 151), (40, 203), (1, 3001)]
    hosts = [data(rng, s) for s in shapes]
    bufs = [cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, h.nbytes) for h in hosts]
    start = threading.Barrier(len(shapes))

    def work(i):
        start.wait()
        for rep in range(15):
            host = hosts[i] * np.float32(rep + 1)  # a different content each round
            back = np.full_like(host, np.nan)
            threaded.upload(rt.queue, bufs[i], host)
            threaded.download(rt.queue, back, bufs[i])
            same_bits(back, host)

    run_in_threads(work, len(shapes))
    assert threaded._threads == 3
    assert 1 <= len(threaded._free) <= staging.MAX_KEPT


def test_threaded_staging_of_numpy_products(rng, monkeypatch, threaded):
    rt = get_runtime()
    rt.forget("host staging")  # a Staging made under the fixture's constants
    try:
        calls = recorded_copies(monkeypatch)
        A, B, C0 = data(rng, (151, 203)), data(rng, (203, 97)), data(rng, (151, 97))
        got = clgemm.matmul(A, B, C=C0.copy(), alpha=2.0, beta=-0.5)
        ref, np_err = reference(A, B, C0, 2.0, -0.5)
        assert_close_to_reference(got, ref, np_err)
        assert sum(n for _, n in calls) == A.nbytes + B.nbytes + 2 * C0.nbytes
    finally:
        rt.forget("host staging")


def test_by_default_only_a_gpus_large_reads_are_staged(monkeypatch):
    """No CLGEMM_STAGING: a GPU's reads of READ_STAGED_FROM bytes and more are staged (the
    H100's downloads from 3072 ran 2.3x faster staged), writes and smaller reads are not, nor
    anything on a CPU device; CLGEMM_STAGING=1 stages every copy from MIN_BYTES, =0 none."""
    from types import SimpleNamespace

    def wanted(kind, nbytes, reading):
        rt = SimpleNamespace(device=SimpleNamespace(type=kind))
        return staging.Staging(rt).wanted(nbytes, reading=reading)

    big = staging.READ_STAGED_FROM
    monkeypatch.delenv("CLGEMM_STAGING", raising=False)
    assert wanted("GPU", big, True) and not wanted("GPU", big - 1, True)
    assert not wanted("GPU", 4 * big, False) and not wanted("CPU", 4 * big, True)
    monkeypatch.setenv("CLGEMM_STAGING", "0")
    assert not wanted("GPU", 4 * big, True)
    monkeypatch.setenv("CLGEMM_STAGING", "1")
    assert wanted("CPU", staging.MIN_BYTES, False)
    assert not wanted("GPU", staging.MIN_BYTES - 1, True)
