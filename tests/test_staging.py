"""Host arrays through the runtime's page-locked staging buffers (opt-in, CLGEMM_STAGING=1,
for copies of 1 MiB and more), in chunks smaller than the arrays."""

from __future__ import annotations

import numpy as np

import clgemm
from clgemm import staging
from clgemm.runtime import get_runtime
from conftest import assert_close_to_reference, rand, reference


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
    import pyopencl as cl

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
