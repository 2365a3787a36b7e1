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

__attribute__((reqd_work_group_size(TX, TY, 1)))
__kernel void guard_stats(const int R, const int S,
    __global const float* X, const int ld, const int off,
    __global const float* vr, __global const float* vra,
    __global const float* vc, __global const float* vca,
    __global float* prow, __global float* pcol)
{
  const int lx = get_local_id(0), ly = get_local_id(1);
  const int bx = get_group_id(0), by = get_group_id(1);
  const int nbx = get_num_groups(0), nby = get_num_groups(1);
  const int c = bx * TX + lx;
  const int r0 = by * TR;
  X += off;
#if ROW_STATS
  __local float lr[3][TR][TX + 1];
  float wc = 0.0f, wca = 0.0f;
  if (c < S) { wc = vc[c]; wca = vca[c]; }
#endif
#if COL_STATS
  __local float lc[3][TY][TX];
  float cs = 0.0f, ca = 0.0f, cq = 0.0f;
#endif
  for (int t = 0; t < RPT; t++) {
    const int rl = t * TY + ly;
    const int r = r0 + rl;
    const float x = (r < R && c < S) ? X[(long)r * ld + c] : 0.0f;
    const float ax = fabs(x);
#if COL_STATS
    float wr = 0.0f, wra = 0.0f;
    if (r < R) { wr = vr[r]; wra = vra[r]; }
#if COL_STATS & 1
    cs = fma(wr, x, cs);
#endif
#if COL_STATS & 2
    ca = fma(wra, ax, ca);
#endif
#if COL_STATS & 4
    cq = fma(x, x, cq);
#endif
#endif
#if ROW_STATS & 1
    lr[0][rl][lx] = (c < S) ? wc * x : 0.0f;
#endif
#if ROW_STATS & 2
    lr[1][rl][lx] = (c < S) ? wca * ax : 0.0f;
#endif
#if ROW_STATS & 4
    lr[2][rl][lx] = x * x;
#endif
  }
#if COL_STATS
  lc[0][ly][lx] = cs; lc[1][ly][lx] = ca; lc[2][ly][lx] = cq;
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
  const int tid = ly * TX + lx;
#if ROW_STATS
  for (int job = tid; job < 3 * TR; job += TX * TY) {
    const int st = job / TR, rl = job %% TR, r = r0 + rl;
    if (!((ROW_STATS >> st) & 1) || r >= R) continue;
    float s = 0.0f;
    for (int q = 0; q < TX; q++) s += lr[st][rl][q];
    prow[((long)st * nbx + bx) * R + r] = s;
  }
#endif
#if COL_STATS
  if (tid < 3 * TX) {
    const int st = tid / TX, cx = tid %% TX, cc = bx * TX + cx;
    if (((COL_STATS >> st) & 1) && cc < S) {
      float s = 0.0f;
      for (int q = 0; q < TY; q++) s += lc[st][q][cx];
      pcol[((long)st * nby + by) * S + cc] = s;
    }
  }
#endif
}

// out[st][i] = sum_b part[st][b][i] for the stats in MASK (pairwise over b).
__kernel void guard_finalize(const int L, const int NB, const int MASK,
    __global const float* part, __global float* out0, __global float* out1,
    __global float* out2)
{
  const int i = get_global_id(0), st = get_global_id(1);
  if (i >= L || !((MASK >> st) & 1)) return;
  __global float* out = st == 0 ? out0 : (st == 1 ? out1 : out2);
  __global const float* p = part + (long)st * NB * L + i;
  float s = 0.0f, blk = 0.0f;
  int cnt = 0;
  for (int b = 0; b < NB; b++) {
    blk += p[(long)b * L];
    if (++cnt == 16) { s += blk; blk = 0.0f; cnt = 0; }
  }
  out[i] = s + blk;
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


def stats_source(row_stats: int, col_stats: int) -> str:
    return STATS_SOURCE % {"TX": TX, "TY": TY, "RPT": RPT, "ROW": row_stats, "COL": col_stats}
