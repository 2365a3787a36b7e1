"""Whether the tensor-core lanes run on a device: capability checks and probe products of
odd shape against float64, once per runtime."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np
import pyopencl as cl

from ..errors import ClgemmError
from ..kernels import wgmma
from ..kernels.tensorcore import Dialect, TcSchedule
from ..operands import Operand
from ..runtime import Runtime
from .mma import get_kernel, layout_for
from .wgmma import enqueue_wgmma


@dataclass
class TcSupport:
    available: bool
    reason: str
    async_copy: bool = False  # cp.async staging ran correctly (else register staging only)
    errors: dict = field(default_factory=dict)


PROBE_SCHEDULE = TcSchedule(block_m=32, block_n=32, block_k=8, warps_m=1, warps_n=1, stages=2,
                            mode="tf32", fold=0, async_copy=1, raster=1)


def _probe_product(rt: Runtime, schedule: TcSchedule, dialect: Dialect | None = None) -> float:
    """Relative error of a small odd-shaped product (37 x 45 x 29) through `schedule`."""
    rng = np.random.default_rng(1234)
    m, n, k = 37, 45, 29
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    mf = cl.mem_flags
    a = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A), 0, k, False)
    b = Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=B), 0, n, False)
    out = np.full((m, n), np.nan, np.float32)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0, n, False)
    kernel = get_kernel(rt, schedule, layout_for(a, b), dialect)
    kernel.enqueue(m, n, k, 1.0, 0.0, a, b, c).wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def ptx_blocker(rt: Runtime, what: str) -> str | None:
    """Why inline-PTX mma lanes cannot run on this device (None: they may; a probe product
    decides): NVIDIA's OpenCL, compute capability 8.0 or newer, inline PTX compiled and run."""
    d = rt.device
    cc = d.capabilities.nv_compute_capability
    if not d.is_nvidia:
        return "not an NVIDIA device: no inline PTX"
    if cc is None or tuple(cc) < (8, 0):
        return f"compute capability {cc} < 8.0: no {what}"
    if not rt.probe_inline_ptx():
        return "the OpenCL compiler did not run inline PTX"
    return None


def tensorcore_support(rt: Runtime) -> TcSupport:
    """Whether the tensor-core lane is offered on this device (probed once per runtime)."""
    return rt.cached("tc support", lambda: _tensorcore_support(rt))


def _tensorcore_support(rt: Runtime) -> TcSupport:
    blocker = ptx_blocker(rt, "TF32 mma.sync")
    if blocker:
        support = TcSupport(False, blocker)
    else:
        support = TcSupport(False, "probe failed")
        for async_copy in (1, 0):
            s = replace(PROBE_SCHEDULE, async_copy=async_copy)
            try:
                err = _probe_product(rt, s)
            except (ClgemmError, cl.Error) as exc:
                support.errors[s.key()] = f"{type(exc).__name__}: {str(exc)[:300]}"
                continue
            if err <= 1e-2:
                support = TcSupport(True, "ok", async_copy=bool(async_copy), errors=support.errors)
                break
            support.errors[s.key()] = f"wrong result: rel error {err:.3e}"
    return support


def tensorcore_available(rt: Runtime) -> bool:
    return tensorcore_support(rt).available


@dataclass
class WgSupport:
    available: bool
    reason: str


# The probe's bound per mode: TF32 errs ~8e-4 (truncated operands); 3xTF32 must stay at
# float32's level (numpy float32 errs ~3e-8 on the probe's product).
_WG_PROBE_BOUND = {1: 3e-3, 3: 1e-6}


def wgmma_support(rt: Runtime, splits: int = 1) -> WgSupport:
    """Whether TF32 (splits=1) or 3xTF32 (splits=3) products may take the wgmma kernel here
    (probed once per runtime and mode): an NVIDIA device of compute capability 9.0 exactly
    (sm_90a code runs on no other), the inline-PTX lane, CLGEMM_WGMMA not "0", and a probe
    product of odd shape within the mode's error."""
    return rt.cached(("wgmma support", splits), lambda: _wgmma_support(rt, splits))


def _wgmma_support(rt: Runtime, splits: int) -> WgSupport:
    cc = rt.device.capabilities.nv_compute_capability
    if os.environ.get("CLGEMM_WGMMA", "1") == "0":
        support = WgSupport(False, "switched off (CLGEMM_WGMMA=0)")
    elif not rt.device.is_nvidia or cc is None or tuple(cc) != (9, 0):
        support = WgSupport(False, f"not an sm_90 NVIDIA device (compute capability {cc})")
    elif not tensorcore_available(rt):
        support = WgSupport(False, "no tensor-core lane: " + tensorcore_support(rt).reason)
    else:
        try:
            err = _wg_probe(rt, wgmma.DEFAULT if splits == 1 else wgmma.DEFAULT_3X)
            support = (WgSupport(True, "ok") if err <= _WG_PROBE_BOUND[splits] else
                       WgSupport(False, f"probe product wrong: rel error {err:.3e}"))
        except (ClgemmError, cl.Error) as exc:
            support = WgSupport(False, f"{type(exc).__name__}: {str(exc)[:300]}")
    return support


def _wg_probe(rt: Runtime, schedule: wgmma.WgSchedule) -> float:
    """Relative error of an odd-shaped product (200 x 264 x 70: edge tiles, a partial chunk
    of K) through the wgmma kernel (3xTF32: through its split too), against float64."""
    rng = np.random.default_rng(4321)
    m, n, k = 200, 264, 70
    A = rng.standard_normal((m, k)).astype(np.float32)
    Bt = rng.standard_normal((n, k)).astype(np.float32)
    mf = cl.mem_flags

    def padded(x: np.ndarray) -> "cl.Buffer":  # rows of k + 2 = 72 floats: 16-byte rows
        return cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR,
                         hostbuf=np.pad(x, ((0, 0), (0, 2))))

    a = Operand(padded(A), 0, k + 2, False)
    b = Operand(padded(Bt), 0, k + 2, True)
    out = np.full((m, n), np.nan, np.float32)
    c = Operand(cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=out), 0, n, False)
    enqueue_wgmma(rt, m, n, k, 1.0, 0.0, a, b, c, schedule=schedule).wait()
    cl.enqueue_copy(rt.queue, out, c.buffer)
    ref = A.astype(np.float64) @ Bt.T.astype(np.float64)
    if not np.isfinite(out).all():
        return float("inf")
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
