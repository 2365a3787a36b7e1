"""The direct form's pre-passes: a transposed A copied into padded row-major scratch, and B
packed into panels, before the product (`pack`).

The float32 family's direct (CPU-shaped) kernel reads a row of op(B) as one vector per K
step. Read in place, each K step of a work-item lands on another stored row (and page), and
with B stored transposed the row is a gather of `out_n` elements from as many stored rows:
on PoCL (records/cpu-pocl-amd-epyc/2026-12-06-model-traces-2) the product with B transposed
took 2-5x the time of the same product stored plainly. Packed in panels of `out_n` columns
(panel p: its K rows of out_n floats one after the other), a work-item's whole walk over K
is one run of memory, whatever B's storage: 576 x 4096 x 1024 in 23.9 ms against 29.5 from
plain rows, 576 x 4096 x 4096 in 102 against 239. The copy costs one pass over B, which the
product reads about m / tile_m times. With A stored transposed each K step of a work-item's
rows lands on another page too: A is copied into plain storage (its transpose, row-major).
The work-group form stages its tiles through local memory, where the layout costs little:
it keeps its operands as they are.
"""

from __future__ import annotations

import numpy as np
import pyopencl as cl

from ..operands import Operand
from ..runtime import Runtime
from .scratch import Scratch

_BLOCK = 16  # a work-item copies a 16 x 16 block: 16 stored rows read, 16 output rows written

_TRANSPOSE_C = f"""
#define BL {_BLOCK}
__kernel void clgemm_pack_transpose(const int R, const int Cn,
    __global const float* restrict X, const int ldx, const int x_off, const long x_bs,
    __global float* restrict Y, const int ldy, const long y_bs)
{{
  // Y (Cn x R, leading dimension ldy) = X^T for X (R x Cn, leading dimension ldx), one
  // matrix of the batch per index of dimension 2. A work-item copies a BL x BL block: each
  // row of X read whole (one cache line, used once), scattered over BL rows of Y, whose
  // lines fill in cache (ldy is padded: they fall in different cache sets).
  const long bi = get_global_id(2);
  X += x_off + bi * x_bs;
  Y += bi * y_bs;
  const int c0 = get_global_id(0) * BL, r0 = get_global_id(1) * BL;
  if (c0 >= Cn || r0 >= R) return;
  if (r0 + BL <= R && c0 + BL <= Cn) {{
    for (int i = 0; i < BL; i++) {{
      __global const float* x = X + (long)(r0 + i) * ldx + c0;
      __global float* y = Y + (long)c0 * ldy + r0 + i;
      #pragma unroll
      for (int j = 0; j < BL; j++) y[(long)j * ldy] = x[j];
    }}
  }} else {{
    const int rn = min(R, r0 + BL), cn = min(Cn, c0 + BL);
    for (int j = c0; j < cn; j++)
      for (int i = r0; i < rn; i++) Y[(long)j * ldy + i] = X[(long)i * ldx + j];
  }}
}}

__kernel void clgemm_pack_copy(const int R, const int Cn,
    __global const float* restrict X, const int ldx, const int x_off, const long x_bs,
    __global float* restrict Y, const int ldy, const long y_bs)
{{
  // Y = X (R x Cn) into rows ldy apart, a BL x BL block a work-item
  const long bi = get_global_id(2);
  X += x_off + bi * x_bs;
  Y += bi * y_bs;
  const int c0 = get_global_id(0) * BL, r0 = get_global_id(1) * BL;
  const int rn = min(R, r0 + BL), cn = min(Cn, c0 + BL);
  for (int i = r0; i < rn; i++)
    for (int j = c0; j < cn; j++) Y[(long)i * ldy + j] = X[(long)i * ldx + j];
}}
"""

def _panels_source(width: int) -> str:
    """The kernels that pack a K x N operand into panels of `width` columns for the direct
    kernel's B (kernels/gemm.py, Layout.panel_b): Y[p][k][w] = op(X)[k][p * width + w],
    zeros past N, each panel ldy elements after the last; `clgemm_pack_panels<width>` from
    plain storage (X is K x N), `..t` from transposed storage (X is N x K)."""
    return _PANELS_PLAIN.format(w=width) + _PANELS_TRANSPOSED.format(w=width)


# From plain storage a work-item writes one row of one panel (`w` floats, read as one run);
# consecutive work-items take consecutive panels: PoCL runs dimension 0 as its vector lanes,
# and by rows instead a lane reads every ldx-th float (1024 x 4096: 0.8 ms against 1.7).
_PANELS_PLAIN = """
__kernel void clgemm_pack_panels{w}(const int R, const int Cn,
    __global const float* restrict X, const int ldx, const int x_off, const long x_bs,
    __global float* restrict Y, const int ldy, const long y_bs)
{{
  const long bi = get_global_id(2);
  const int p = get_global_id(0), k = get_global_id(1), c0 = p * {w};
  if (k >= R) return;
  __global const float* x = X + x_off + bi * x_bs + (long)k * ldx + c0;
  __global float* y = Y + bi * y_bs + (long)p * ldy + (long)k * {w};
  if (c0 + {w} <= Cn) {{
    #pragma unroll
    for (int i = 0; i < {w}; i++) y[i] = x[i];
  }} else {{
    for (int i = 0; i < {w}; i++) y[i] = c0 + i < Cn ? x[i] : 0.0f;
  }}
}}
"""

# From transposed storage a work-item packs 16 rows of one panel: 16 floats (a line) of each
# of its `w` stored rows, held as one vector, written out as a column of the 16 x w block.
# Against a row of a panel a work-item (PoCL's lanes reading consecutive floats of a stored
# row, each writing `w` floats w apart), 1024 x 4096 took 0.97 ms against 1.75 on PoCL, 1.1
# against 2.8 on Intel's runtime.
_PANELS_TRANSPOSED = """
__kernel void clgemm_pack_panels{w}t(const int R, const int Cn,
    __global const float* restrict X, const int ldx, const int x_off, const long x_bs,
    __global float* restrict Y, const int ldy, const long y_bs)
{{
  const long bi = get_global_id(2);
  const int k0 = get_global_id(0) * 16, p = get_global_id(1), c0 = p * {w};
  if (k0 >= R) return;
  __global const float* x = X + x_off + bi * x_bs + (long)c0 * ldx + k0;
  __global float* y = Y + bi * y_bs + (long)p * ldy + (long)k0 * {w};
  if (k0 + 16 <= R && c0 + {w} <= Cn) {{
    for (int c = 0; c < {w}; c++) {{
      __global const float* r = x + (long)c * ldx;
      const float16 v = (float16)(LANES);  /* not vload16: PoCL returned wrong values with it */
      y[0 * {w} + c] = v.s0; y[1 * {w} + c] = v.s1; y[2 * {w} + c] = v.s2;
      y[3 * {w} + c] = v.s3; y[4 * {w} + c] = v.s4; y[5 * {w} + c] = v.s5;
      y[6 * {w} + c] = v.s6; y[7 * {w} + c] = v.s7; y[8 * {w} + c] = v.s8;
      y[9 * {w} + c] = v.s9; y[10 * {w} + c] = v.sa; y[11 * {w} + c] = v.sb;
      y[12 * {w} + c] = v.sc; y[13 * {w} + c] = v.sd; y[14 * {w} + c] = v.se;
      y[15 * {w} + c] = v.sf;
    }}
  }} else {{
    const int kn = min(16, R - k0);
    for (int c = 0; c < {w}; c++)
      for (int i = 0; i < kn; i++) y[i * {w} + c] = c0 + c < Cn ? x[(long)c * ldx + i] : 0.0f;
  }}
}}
""".replace("LANES", ", ".join(f"r[{i}]" for i in range(16)))


_ARG_TYPES = [np.int32, np.int32, None, np.int32, np.int32, np.int64, None, np.int32, np.int64]


class PackScratch(Scratch):
    """One queue's packed operands (lanes/scratch.py) and the kernels that pack them."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt, "packed")
        self._kernels: dict = {}  # (operand name, kernel name) -> fp32.BoundArgs

    def kernel(self, name: str, entry: str):
        """The kernel `entry` for one operand (each its own object: its arguments stay bound
        between calls of a chain of products of one shape)."""
        kern = self._kernels.get((name, entry))
        if kern is None:
            from .fp32 import BoundArgs  # noqa: PLC0415 - fp32 imports this module

            if entry.startswith("clgemm_pack_panels"):
                source, types = _panels_source(int(entry[18:].rstrip("t"))), _ARG_TYPES
            else:
                source, types = _TRANSPOSE_C, _ARG_TYPES
            kern = self._kernels[(name, entry)] = BoundArgs(
                self.rt.build(source).kernel(entry), types)
        return kern


def padded_ld(cols: int) -> int:
    """The leading dimension of a packed operand: whole 64-byte lines, an odd number of
    them. The direct kernel reads a row of B per K step; rows a power of two of lines
    apart all fall in one cache set (4 KiB apart: one of L1's 64) and evict each other:
    512 x 2048 x 2048 on PoCL took 121 ms with B's rows 2048 floats apart, 70 with 2064."""
    lines = -(-max(cols, 1) // 16)
    return 16 * (lines + 1 - lines % 2)


def scratch(rt: Runtime, queue: "cl.CommandQueue") -> PackScratch:
    return rt.cached(("pack scratch", queue.int_ptr), lambda: PackScratch(rt))


def pack(space: PackScratch, name: str, x: Operand, rows: int, cols: int, queue,
         batch: int = 1, stride: int = 0, events: list | None = None,
         panel: int = 0) -> tuple[Operand, int]:
    """x (rows x cols logically) copied as its logical matrix into scratch: row-major, rows
    `padded_ld` apart (transposed where x is stored transposed), or with `panel` in panels
    of that many columns (the direct kernel's B: `_panels_source`). With `batch`, each of
    `batch` matrices `stride` elements apart (0: one matrix, broadcast). Returns the packed
    operand and its batch stride (the copy's event appended to `events` where given). The
    caller holds `space.lock` until the product that reads it is enqueued."""
    count = batch if stride else 1
    keep = queue is space.rt.user_queue  # the waiting paths pin nothing (BoundArgs)
    if panel:
        panels = -(-cols // panel)
        ld = max(rows, 1) * panel  # between panels
        size = panels * ld
        buf = space.buffer(name, 4 * size * count)
        kern = space.kernel(name, f"clgemm_pack_panels{panel}{'t' if x.transposed else ''}")
        kern.bind([rows, cols, x.buffer, x.ld, x.offset, stride, buf, ld, size], keep=keep)
        sizes = (-(-max(rows, 1) // 16), panels) if x.transposed else (panels, max(rows, 1))
        event = cl.enqueue_nd_range_kernel(queue, kern.kernel, (*sizes, count), None)
        if events is not None:
            events.append(event)
        return Operand(buf, 0, ld, False, panel), (size if stride else 0)
    ld = padded_ld(cols)
    size = max(rows, 1) * ld
    buf = space.buffer(name, 4 * size * count)
    if x.transposed:  # stored: cols x rows; wanted: rows x cols = stored^T
        kern = space.kernel(name, "clgemm_pack_transpose")
        kern.bind([cols, rows, x.buffer, x.ld, x.offset, stride, buf, ld, size], keep=keep)
        sizes = (-(-rows // _BLOCK), -(-cols // _BLOCK), count)
    else:
        kern = space.kernel(name, "clgemm_pack_copy")
        kern.bind([rows, cols, x.buffer, x.ld, x.offset, stride, buf, ld, size], keep=keep)
        sizes = (-(-cols // _BLOCK), -(-rows // _BLOCK), count)
    event = cl.enqueue_nd_range_kernel(queue, kern.kernel, sizes, None)
    if events is not None:
        events.append(event)
    return Operand(buf, 0, ld, False), (size if stride else 0)
