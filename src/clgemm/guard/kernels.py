"""Small OpenCL kernels of the guard: one-pass row/column statistics of a stored matrix
(weighted sums, absolute sums, sums of squares), the reduction of their partials, and a
per-element recompute used to repair located faults.

A stored matrix is row-major R x S with leading dimension `ld` and element offset `off`.
`guard_stats` reads it once and produces, per stored row and per stored column, up to three
statistics: s (weighted sum), a (weighted sum of |x|, weights given separately) and q (sum of
squares). Work-group tiles are TX columns x (TY*RPT) rows; partials go to
prow[stat][col_block][row] and pcol[stat][row_block][col], summed by `guard_finalize`.
"""

from __future__ import annotations

TX, TY, RPT = 32, 8, 8
TILE_ROWS = TY * RPT

STATS_SOURCE = r"""
#define TX %(TX)d
#define TY %(TY)d
#define RPT %(RPT)d
#define TR (TY * RPT)
// ROW_STATS / COL_STATS: bit 0 = s, bit 1 = a, bit 2 = q
#define ROW_STATS %(ROW)d
#define COL_STATS %(COL)d
#if %(FP64)d
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#else
typedef float real;
#endif

// Statistics accumulate in `real` (double where the device has it): the checksums' own
// roundoff then sits far below the product's, whatever the signs of the data.
__attribute__((reqd_work_group_size(TX, TY, 1)))
__kernel void guard_stats(const int R, const int S,
    __global const float* X, const int ld, const int off,
    __global const real* vr, const int vr_o, __global const real* vra, const int vra_o,
    __global const real* vc, const int vc_o, __global const real* vca, const int vca_o,
    __global real* prow, __global real* pcol)
{
  const int lx = get_local_id(0), ly = get_local_id(1);
  const int bx = get_group_id(0), by = get_group_id(1);
  const int nbx = get_num_groups(0), nby = get_num_groups(1);
  const int c = bx * TX + lx;
  const int r0 = by * TR;
  const int tid = ly * TX + lx;
  X += off;
  float xs[RPT];
  for (int t = 0; t < RPT; t++) {
    const int r = r0 + t * TY + ly;
    xs[t] = (r < R && c < S) ? X[(long)r * ld + c] : 0.0f;
  }
#if COL_STATS
  __local real lc[3][TY][TX];
  real cs = 0, ca = 0, cq = 0;
  for (int t = 0; t < RPT; t++) {
    const int r = r0 + t * TY + ly;
    const real x = xs[t];
    real wr = 0, wra = 0;
    if (r < R) { wr = vr[vr_o + r]; wra = vra[vra_o + r]; }
    cs += wr * x; ca += wra * fabs(x); cq += x * x;
  }
  lc[0][ly][lx] = cs; lc[1][ly][lx] = ca; lc[2][ly][lx] = cq;
#endif
#if ROW_STATS
  __local real lr[TR][TX + 1];
  real wc = 0, wca = 0;
  if (c < S) { wc = vc[vc_o + c]; wca = vca[vca_o + c]; }
#define ROW_PASS(ST, EXPR) \
  for (int t = 0; t < RPT; t++) { const real x = xs[t]; lr[t * TY + ly][lx] = (EXPR); } \
  barrier(CLK_LOCAL_MEM_FENCE); \
  if (tid < TR && r0 + tid < R) { \
    real s_ = 0; \
    for (int q = 0; q < TX; q++) s_ += lr[tid][q]; \
    prow[((long)(ST) * nbx + bx) * R + r0 + tid] = s_; \
  } \
  barrier(CLK_LOCAL_MEM_FENCE);
#if ROW_STATS & 1
  ROW_PASS(0, wc * x)
#endif
#if ROW_STATS & 2
  ROW_PASS(1, wca * fabs(x))
#endif
#if ROW_STATS & 4
  ROW_PASS(2, x * x)
#endif
#endif
#if COL_STATS
  barrier(CLK_LOCAL_MEM_FENCE);
  if (tid < 3 * TX) {
    const int st = tid / TX, cx = tid %% TX, cc = bx * TX + cx;
    if (((COL_STATS >> st) & 1) && cc < S) {
      real s = 0;
      for (int q = 0; q < TY; q++) s += lc[st][q][cx];
      pcol[((long)st * nby + by) * S + cc] = s;
    }
  }
#endif
}

// out[o_st + i] = sum_b part[st][b][i] for the stats in MASK.
__kernel void guard_finalize(const int L, const int NB, const int MASK,
    __global const real* part, __global real* out, const int o0, const int o1, const int o2)
{
  const int i = get_global_id(0), st = get_global_id(1);
  if (i >= L || !((MASK >> st) & 1)) return;
  __global const real* p = part + (long)st * NB * L + i;
  real s = 0;
  for (int b = 0; b < NB; b++) s += p[(long)b * L];
  out[(st == 0 ? o0 : (st == 1 ? o1 : o2)) + i] = s;
}

// Sum of NB float slabs of L elements (split-K partial products): out[i] = sum_b part[b][i].
__kernel void guard_sum_slabs(const int L, const int NB, const int stride,
    __global const float* part, __global float* out, const int out_off)
{
  const int i = get_global_id(0);
  if (i >= L) return;
  float s = 0.0f;
  for (int b = 0; b < NB; b++) s += part[(long)b * stride + i];
  out[out_off + i] = s;
}

uint guard_hash(uint x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

// Standard normal variates (counter-based hash + Box-Muller), n of them from a 64-bit seed.
__kernel void guard_randn(const int n, const uint s0, const uint s1, __global float* out,
                          const int out_off)
{
  const int i = get_global_id(0);
  if (2 * i >= n) return;
  const uint h1 = guard_hash(guard_hash((uint)i * 2u + 0x68bc21ebU) ^ s0) ^ guard_hash(s1);
  const uint h2 = guard_hash(guard_hash((uint)i * 2u + 1u) ^ s1 ^ 0x02e5be93U) ^ guard_hash(s0 + 0x9e3779b9U);
  const float u1 = ((float)(h1 >> 8) + 1.0f) * (1.0f / 16777216.0f);
  const float u2 = (float)(h2 >> 8) * (1.0f / 16777216.0f);
  const float rad = sqrt(-2.0f * log(u1));
  const float ang = 6.283185307179586f * u2;
  out[out_off + 2 * i] = rad * cos(ang);
  if (2 * i + 1 < n) out[out_off + 2 * i + 1] = rad * sin(ang);
}

// Recompute listed elements: C[i,j] = alpha * sum_k opA[i,k] opB[k,j] + beta * Cold[i,j].
// A element (i,k) at A[a_off + (TA ? k*lda + i : i*lda + k)], B (k,j) likewise with TB.
__kernel void guard_recompute(const int n_items, __global const int* rows,
    __global const int* cols, const int K, const float alpha, const float beta,
    __global const float* A, const int lda, const int a_off, const int ta,
    __global const float* B, const int ldb, const int b_off, const int tb,
    __global float* C, const int ldc, const int c_off,
    __global const float* Cold, const int ldo, const int o_off)
{
  const int t = get_global_id(0);
  if (t >= n_items) return;
  const int i = rows[t], j = cols[t];
  float acc = 0.0f;
  for (int k = 0; k < K; k++) {
    const float a = ta ? A[a_off + (long)k * lda + i] : A[a_off + (long)i * lda + k];
    const float b = tb ? B[b_off + (long)j * ldb + k] : B[b_off + (long)k * ldb + j];
    acc = fma(a, b, acc);
  }
  float v = alpha * acc;
  if (beta != 0.0f) v = fma(beta, Cold[o_off + (long)i * ldo + j], v);
  C[c_off + (long)i * ldc + j] = v;
}
"""


def stats_source(row_stats: int, col_stats: int, fp64: bool = False) -> str:
    return STATS_SOURCE % {"TX": TX, "TY": TY, "RPT": RPT, "ROW": row_stats, "COL": col_stats,
                           "FP64": int(fp64)}
