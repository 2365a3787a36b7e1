"""The guard's rule for tiny products: every cell recomputed and judged against the float32
error bound of that cell.

Where a product is small (few rows per checksum block, a short K, few block sums) the blocked
checksums cannot resolve a fault of 1e-5 max|C|: a block sum's tolerance covers the roundoff
of all its rows and columns, and with fewer than abft.MIN_SIDE block sums only the rigorous
bound of the whole block is left (the CPU soak missed 808 faults of 1e-5..1e-3 max|C| on
products with a dimension of 11 or less, records/cpu-pocl-amd-epyc/2026-12-06-soak). There a
recomputation costs what the product costs, and it can be judged cell by cell with a bound
that no clean result exceeds:

    v_ij = alpha sum_k a_ik b_kj + beta o_ij,   S_ij = |alpha| sum_k |a_ik b_kj| + |beta o_ij|

both accumulated in double where the device has cl_khr_fp64, and C[i, j] is flagged when

    |C[i, j] - v_ij| > gamma S_ij + tiny,   gamma = (K + 4) u / (1 - (K + 4) u),  u = 2^-24

(twice that, over 1 - gamma_K, where the recomputation is float: its own error is as large).
(K + 4) u bounds the float32 product's error in any order of summation, with or without
fused multiply-adds (K roundings on the longest path of the sum, alpha's, beta o's and the
final addition's, and one to spare; -cl-mad-enable is taken as an FMA or a rounded multiply
and add, as on every device seen); tiny = (2K + 4)(1 + |alpha|) 2^-126 covers what flushed
subnormals lose. So a clean product is never flagged, and a fault is found when it moves a
cell by more than gamma S_ij: 1.2e-6 S_ij at K = 16, 4.8e-6 S_ij at K = 76. In units of
max|C| the floor is (K + 4) u max_ij S_ij / max|C|: below 1e-5 max|C| unless the cell's terms
cancel by more than 167 / (K + 4) over max|C| (the blocked check, which also runs, judges
such products by their roundoff, a statistical rule).

Non-finite cells: where v is NaN the result must be NaN, where v is infinite it must not be
finite (a NaN input or Inf x 0 gives NaN in both; an Inf term an infinite or NaN result),
and a non-finite result where v is finite is flagged unless S_ij reaches 2^127 (float32's
own sum may overflow where the double one did not).

Repair: the flagged cells take their recomputed value (rounded to float32) in the same pass
(abft.checked_core then checks the product again)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pyopencl as cl

from .device import GuardDevice, View

U = 2.0**-24
CAP = 64  # flagged cells listed (the count is exact)
# Products of at most this many multiply-adds (m n k) are judged cell by cell: the blocked
# check's block sums hold too few rows or columns there (all 16 of the soak's odd shapes
# with a dimension <= 11 lie below it), and the recomputation, at most 2^20 multiply-adds in
# double, costs about what the product's own launch does.
TINY_WORK = 1 << 20
# ... and so are products of so few cells that their block sums are fewer than abft's
# MIN_SIDE whatever K (a row or column vector times a long K): the recomputation is the
# product's own m n k.
TINY_CELLS = 64

SOURCE = r"""
#if %(FP64)d
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif

__kernel void abft_elementwise(const int M, const int N, const int Kd, const float alpha,
    const float beta,
    __global const float* A, const int lda, const int a_off, const int ta,
    __global const float* B, const int ldb, const int b_off, const int tb,
    __global float* C, const int ldc, const int c_off, const int tc,
    __global const float* O, const int ldo, const int o_off, const int to, const int has_old,
    const real gam, const real tiny, const real big, const int write,
    __global int* count, __global int* cells)
{
  const int j = get_global_id(0), i = get_global_id(1);
  if (i >= M || j >= N) return;
  real acc = 0, mag = 0;
  for (int k = 0; k < Kd; k++) {
    const float a = ta ? A[a_off + (long)k * lda + i] : A[a_off + (long)i * lda + k];
    const float b = tb ? B[b_off + (long)j * ldb + k] : B[b_off + (long)k * ldb + j];
    const real p = (real)a * (real)b;
    acc += p;
    mag += fabs(p);
  }
  real v = (real)alpha * acc;
  real bound = fabs((real)alpha) * mag;
  if (has_old) {
    const real o = (real)beta * (real)O[o_off + (to ? (long)j * ldo + i : (long)i * ldo + j)];
    v += o;
    bound += fabs(o);
  }
  const long ci = c_off + (tc ? (long)j * ldc + i : (long)i * ldc + j);
  const float c = C[ci];
  int bad;
  if (isnan(v)) bad = !isnan(c);
  else if (isinf(v)) bad = isfinite(c);
  else if (!isfinite(c)) bad = !(bound >= big);
  else bad = !(fabs((real)c - v) <= gam * bound + tiny);
  if (bad) {
    const int p = atomic_inc(count);
    if (p < %(CAP)d) cells[p] = i * N + j;
    if (write) C[ci] = (float)v;
  }
}
"""


def applies(m: int, n: int, k: int) -> bool:
    """Whether a product is judged cell by cell (besides its blocked checksums)."""
    return m * n * k <= TINY_WORK or m * n <= TINY_CELLS


def gamma(k: int, fp64: bool) -> float:
    """The bound's factor of S_ij: (K + 4) u / (1 - (K + 4) u) for a double recomputation;
    twice that, over 1 - gamma_K, for a float one (its own error is as large)."""
    g = (k + 4) * U / (1.0 - (k + 4) * U)
    if not fp64:
        g = 2.0 * g / (1.0 - k * U / (1.0 - k * U))
    return g * (1.0 + 2.0**-20)  # the double recomputation's own roundoff, with room


def tiny(k: int, alpha: float) -> float:
    """What flushed subnormals may lose: 2^-126 per rounding of the product's sum."""
    return (2 * k + 4) * (1.0 + abs(alpha)) * 2.0**-126


@dataclass(frozen=True)
class CellVerdict:
    """What the recomputation says: how many cells are off their bound, the first few."""

    flagged: int
    cells: tuple[int, ...]  # flat indices i * n + j, at most CAP

    @property
    def ok(self) -> bool:
        return self.flagged == 0


class Elementwise:
    """The kernel and the two small buffers of the cell-by-cell rule, per guard device."""

    def __init__(self, gd: GuardDevice) -> None:
        self.gd = gd
        built = gd.rt.build(SOURCE % {"FP64": int(gd.fp64), "CAP": CAP}, options="")
        self.kernel = built.kernel("abft_elementwise")
        i32, f32 = np.int32, np.float32
        r = np.float64 if gd.fp64 else np.float32
        self.kernel.set_scalar_arg_dtypes(
            [i32, i32, i32, f32, f32, None, i32, i32, i32, None, i32, i32, i32, None, i32,
             i32, i32, None, i32, i32, i32, i32, r, r, r, i32, None, None])
        self.count = gd.rt.buffer(4, what="abft elementwise count")
        self.cells = gd.rt.buffer(4 * CAP, what="abft elementwise cells")
        self.host = np.zeros(1 + CAP, np.int32)
        self.zero = np.zeros(1, np.int32)
        self.lock = threading.Lock()  # one count buffer: checks of other shapes run in turn

    def judge(self, a: View, b: View, c: View, alpha: float, beta: float, o: View | None,
              write: bool) -> CellVerdict:
        """Recompute every cell of C = alpha op(A) op(B) + beta O and judge it; with `write`
        the flagged cells take their recomputed value."""
        with self.lock:
            return self._judge(a, b, c, alpha, beta, o, write)

    def _judge(self, a: View, b: View, c: View, alpha: float, beta: float, o: View | None,
               write: bool) -> CellVerdict:
        m, n, k = a.rows, b.cols, a.cols
        q = self.gd.queue
        cl.enqueue_copy(q, self.count, self.zero, is_blocking=False)
        src = o if o is not None else c
        self.kernel.set_args(m, n, k, alpha, beta, a.buffer, a.ld, a.offset, int(a.transposed),
                             b.buffer, b.ld, b.offset, int(b.transposed), c.buffer, c.ld,
                             c.offset, int(c.transposed), src.buffer, src.ld, src.offset,
                             int(src.transposed), int(o is not None), gamma(k, self.gd.fp64),
                             tiny(k, alpha), 2.0**127, int(write), self.count, self.cells)
        local = (16, 4)
        glob = (-(-n // local[0]) * local[0], -(-m // local[1]) * local[1])
        cl.enqueue_nd_range_kernel(q, self.kernel, glob, local)
        cl.enqueue_copy(q, self.host[:1], self.count, is_blocking=False)
        cl.enqueue_copy(q, self.host[1:], self.cells, is_blocking=True)
        flagged = int(self.host[0])
        return CellVerdict(flagged, tuple(int(x) for x in self.host[1:1 + min(flagged, CAP)]))


def elementwise(gd: GuardDevice) -> Elementwise:
    """The device's cell-by-cell judge (built once)."""
    return gd.rt.cached("abft elementwise", lambda: Elementwise(gd))
