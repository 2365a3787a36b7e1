"""Tall-skinny products Y = alpha op(X) W for a row-major op(X) (R x K, R large) and a thin W
(K x q, q <= 32 columns): the probe products of the guard's estimates (3072 x 16 x 3072).

The library's GEMM tiles are 32-128 columns wide, so a 16-column output wastes most of each
tile and leaves few work-groups: 117 us for 3072 x 16 x 3072 on the H100 through the split-K
plans, a read of X at 325 GB/s. Here a work-group of WG work-items owns RB rows; the
work-items split K, each reading RB rows of X coalesced and a local-memory stage of W^T, and
the WG partial sums are added in a fixed order (deterministic) before the one store.
"""

from __future__ import annotations

import threading

import numpy as np
import pyopencl as cl

from ..plan import Operand

RB = 4  # rows of X per work-group (accumulators RB x q per work-item)
KC = 256  # K per local-memory stage of W
WG = 64  # work-items per work-group
MAX_Q = 32

SOURCE = r"""
#define RB %(RB)d
#define QW %(Q)d
#define KC %(KC)d
#define WG %(WG)d
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void guard_tall_skinny(const int R, const int Kd, const float alpha,
    __global const float* X, const int ldx, const int xo,
    __global const float* W, const int ldw, const int wo, const int wt,
    __global float* Y, const int ldy, const int yo)
{
  __local float Ws[QW][KC];               // W^T of the stage: lanes read consecutive k
  __local float red[WG][RB * QW + 1];     // partial sums, padded against bank conflicts
  const int t = get_local_id(0);
  const int r0 = get_group_id(0) * RB;
  float acc[RB][QW];
  #pragma unroll
  for (int r = 0; r < RB; r++) {
    #pragma unroll
    for (int c = 0; c < QW; c++) acc[r][c] = 0.0f;
  }
  for (int k0 = 0; k0 < Kd; k0 += KC) {
    const int kn = min(KC, Kd - k0);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = t; e < KC * QW; e += WG) {
      const int kk = e %% KC, c = e / KC;
      float v = 0.0f;
      if (kk < kn)
        v = wt ? W[wo + (long)c * ldw + k0 + kk] : W[wo + (long)(k0 + kk) * ldw + c];
      Ws[c][kk] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int kk = t; kk < kn; kk += WG) {
      float x[RB];
      #pragma unroll
      for (int r = 0; r < RB; r++)
        x[r] = (r0 + r < R) ? X[xo + (long)(r0 + r) * ldx + k0 + kk] : 0.0f;
      #pragma unroll
      for (int c = 0; c < QW; c++) {
        const float w = Ws[c][kk];
        #pragma unroll
        for (int r = 0; r < RB; r++) acc[r][c] = fma(x[r], w, acc[r][c]);
      }
    }
  }
  #pragma unroll
  for (int r = 0; r < RB; r++) {
    #pragma unroll
    for (int c = 0; c < QW; c++) red[t][r * QW + c] = acc[r][c];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int o = t; o < RB * QW; o += WG) {
    float s = 0.0f;
    for (int u = 0; u < WG; u++) s += red[u][o];
    const int r = o / QW, c = o %% QW;
    if (r0 + r < R) Y[yo + (long)(r0 + r) * ldy + c] = alpha * s;
  }
}
"""

_kernels: dict = {}
_lock = threading.Lock()


def fits(rows: int, q: int, x: Operand, local_mem_bytes: int) -> bool:
    """Whether a product of this shape and layout takes this kernel."""
    need = 4 * (q * KC + WG * (RB * q + 1))
    return (not x.transposed and 1 <= q <= MAX_Q and rows >= RB * 32
            and need <= local_mem_bytes)


def _kernel(rt, q: int) -> "cl.Kernel":
    key = (id(rt), q)
    with _lock:
        k = _kernels.get(key)
    if k is None:
        src = SOURCE % {"RB": RB, "Q": q, "KC": KC, "WG": WG}
        k = rt.build(src, options="").kernel("guard_tall_skinny")
        k.set_scalar_arg_dtypes([np.int32, np.int32, np.float32, None, np.int32, np.int32,
                                 None, np.int32, np.int32, np.int32, None, np.int32, np.int32])
        with _lock:
            _kernels[key] = k
    return k


def enqueue(rt, queue, rows: int, inner: int, q: int, alpha: float, x: Operand, w: Operand,
            y: Operand) -> "cl.Event":
    """Y (rows x q, row-major, not transposed) = alpha op(X) op(W); op(X) not transposed."""
    k = _kernel(rt, q)
    with _lock:
        k.set_args(rows, inner, alpha, x.buffer, x.ld, x.offset, w.buffer, w.ld, w.offset,
                   int(w.transposed), y.buffer, y.ld, y.offset)
        return cl.enqueue_nd_range_kernel(queue, k, (-(-rows // RB) * WG,), (WG,))
