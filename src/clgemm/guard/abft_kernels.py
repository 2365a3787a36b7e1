"""OpenCL kernels of the blocked ABFT check (guard/abft.py).

Column checksums over row blocks of Bs rows: for block b and column j of C (m x n),

    S[b, j] = sum_{i in b} C[i, j]                     (abft_cblock, one pass over C)
    E[b, j] = sum_k U[b, k] op(B)[k, j],  U[b, k] = sum_{i in b} op(A)[i, k]
                                                        (abft_ublock + abft_expect)
and the residual S - alpha E - beta O (O: the same sums of C_old) is judged on the device
(abft_judge1 / abft_judge2): only a small packed summary (counters, a histogram of
|r|/scale, the first flagged block-columns with their residuals) comes back to the host,
in one read. `real` is double where the device has cl_khr_fp64, else float.
"""

from __future__ import annotations

import os

# The register tile of abft_expect, from a sweep on the H100 at 3072 (128-row blocks; guard
# device time of the expected sums): (EB, EJ, EP) = (8, 4, 8) 90 us, (4, 4, 8) 76, (8, 4, 4)
# 69, (8, 2, 8) 68, (16, 2, 8) 116; the old one-column kernel 220 (benchmarks/guard/h100).
EB = 8  # checksum blocks per work-item in abft_expect
EJ = 2  # columns per work-item in abft_expect (one float2 / float4 load of op(B): 2 or 4)
EK = 64  # k per local-memory stage of U in abft_expect
EW = 64  # work-items per work-group in abft_expect
EP = 8  # rows of op(B) in flight per work-item in abft_expect (EK is a multiple)
# Benchmarks sweep the register tile: CLGEMM_ABFT_EXPECT="EB,EJ,EP,EW".
if os.environ.get("CLGEMM_ABFT_EXPECT"):
    EB, EJ, EP, EW = (int(x) for x in os.environ["CLGEMM_ABFT_EXPECT"].split(","))
# The column-sum loops are unrolled (8 rows, 4 k) so that each thread keeps several loads in
# flight: one dependent add chain per thread was latency-bound (the same order of additions,
# so the same bits).
# The rows form of the block sums and expected sums (abft_cblock_rows, abft_expect_rows; a CPU
# device with double sums): columns per work-item (RJ) and blocks per work-item of the expected
# sums (RB). On PoCL (2 EPYC cores), in a sweep of the kernels' first version, RB = 4 was the
# fastest of 1, 2, 4, 8 at 2048 (8 a little faster at 512), and 16 columns were as fast as 8
# or a little faster at 512-2048. The kernels spell out their 4 x 4 vectors of accumulators:
# these are the kernels' shape, not parameters to change alone.
RJ = 16
RB = 4
# Work-items a block's rows are shared by in abft_cblock and abft_ublock (double sums; float
# sums keep one a column, the order their calibration was measured with; 1: the kernels of
# one a column, no local memory). One a column was latency-bound: eight warps a unit at 2048.
# $CLGEMM_ABFT_SPLIT_ROWS overrides it (A/B campaigns: whether the local memory keeps the
# operand sums from running beside the product).
CS = int(os.environ.get("CLGEMM_ABFT_SPLIT_ROWS", "4"))
NH = 256  # histogram bins of log2(|r| / scale), 4 per octave, from 2^-48 (a multiple of 64)
CAP = 1024  # flagged block-columns listed in the summary
HEAD = 11  # summary header words
# The summary: HEAD words, the histogram of |r| / scale (NH), that of the centred ratios
# (NH), then CAP flagged entries of 4 words.
CENTRED = HEAD + NH
ENTRIES = HEAD + 2 * NH
WORDS = ENTRIES + 4 * CAP
KAPPA_DEFAULT = 10.0
# The tail's own level: T may drop below the floor c_dev to KAPPA99 x the 99th percentile.
# Over 142 clean products of 12 kinds at K = 512-8191 (Rusticl, 2026-12-02) the largest
# |r| / scale was at most 2.3 x the product's 99th percentile (heavy-tailed data: up to 20 x
# its 75th); 5 leaves a factor 2.
KAPPA99_DEFAULT = 5.0
# Gaussian tails (from K = 512 up, with at least GAUSS_MIN_SUMS block sums): the roundoff of a
# block sum of many products is near Gaussian, and where the product's own residuals show it
# (their 10th largest |r| / scale within GAUSS_TOP_MARGIN x what 10-in-N of a Gaussian reach,
# its sigma taken from the interpolated 75th percentile of |r| / scale, 1.15 sigma) T may
# drop to max(GAUSS_Z x sigma, 1.5 x that 10th largest). A clean sum passes 6.5 sigma with
# probability 8e-11 (6e-6 over the 73,728 sums at 3072); a fault of 1e-5 max|C| on uniform
# data at 3072 stands 9.6 sigma out (benchmarks/guard/noise-floor), where the other rules'
# T (10 p75 = 11.5 sigma, and the calibrated floor) hid it.
GAUSS_Z = 6.5
GAUSS_TOP_MARGIN = 1.3
GAUSS_MIN_SUMS = 2000
# ... and T stays above GAUSS_TOP3 x the 3rd largest ratio (one or two faults move it not).
# The Gaussian test at the 10th largest passes tails that are heavier beyond it: over 92
# clean products with 128-row blocks on Intel's CPU OpenCL runtime (double sums, 2026-12-02)
# the largest ratio reached 6.06 sigma and 1.35 x the 3rd largest (lowrank, tiny data), a
# margin of 1.07 under 6.5 sigma alone; 1.75 x the 3rd largest keeps 1.3. (With 32-row
# blocks the largest reached 9.4 sigma and 1.68 x the 3rd: the branch needs 128-row ones,
# abft.GAUSS_MIN_BLOCK.) $CLGEMM_ABFT_GAUSS_TOP3 overrides it (A/B campaigns).
GAUSS_TOP3 = float(os.environ.get("CLGEMM_ABFT_GAUSS_TOP3", "1.75"))
# Centred residuals (the same branch's conditions): a kernel whose roundoff is correlated
# across a block's entries (tensor cores accumulate by truncation; same-sign data) gives every
# block sum a common signed residual, so |r| / scale sits far from zero and KAPPA p75 with it:
# on the H200's wgmma 3xTF32 lane p75 was 0.42 against 0.031 on the float32 family and no
# fault of 1e-5 max|C| on uniform data was seen (benchmarks/guard/h200, gauss3-lane). Each
# block row's signed z = r / scale is centred on its median (refined as the mean of the ratios
# in the median's 1/CW_FINE of a histogram bin); where the centred |z - m| are Gaussian by
# their own tail (the test above) a sum is also flagged beyond max(GAUSS_Z sigma_c,
# 1.5 x their 10th largest, GAUSS_TOP3 x their 3rd largest). Where almost every centred
# ratio is exactly zero (constant data) the rule stays off: a handful of sums that differ
# from all the others may be a fault or a column of other data, and nothing in the residuals
# tells which.
CW = 256  # work-items per block row in abft_centre (a power of two: its tree sums)
CW_FINE = CW  # linear sub-bins of the median's bin (one a work-item in its prefix sums)
CENTRE_MIN_COLS = 32  # fewer checkable sums in a block row: no centre for it
# The centred ratios' sigma below which the rule is off: the typical |r| / scale of random
# roundoff is 0.01-0.06 (p75 over the campaign kinds, sparse to normal); a spread far below
# it is the arithmetic's own noise on data whose sums are all alike (constant operands: 1e-7
# with float sums on Rusticl), and a T_c set on it would flag any sum of other data.
CENTRE_MIN_SIGMA = 2e-3

SOURCE = r"""
#if %(FP64)d
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double real;
#define RSQRT(x) sqrt(x)
#else
typedef float real;
#define RSQRT(x) sqrt(x)
#endif
#define EB %(EB)d
#define EJ %(EJ)d
#define EK %(EK)d
#define EW %(EW)d
#define EP %(EP)d
#define NH %(NH)d
#define CAP %(CAP)d
#define HEAD %(HEAD)d
#define CENTRED %(CENTRED)d
#define ENTRIES %(ENTRIES)d
#define CW %(CW)d
#define CS %(CS)d
#define CW_FINE %(CW_FINE)d
#define U_RND 5.9604644775390625e-8
#if %(FP64)d
#define NORM_OF(q) sqrt(max((q), (real)0))
#else
#define NORM_OF(q) (q)
#endif
#define TINY_F 1.1754943508222875e-38
// the percentiles abft_judge2 reads (indices of its per-percentile arrays)
#define Q_P75 0
#define Q_P99 1
#define Q_TOP10 2
#define Q_TOP3 3
#define Q_C75 4
#define Q_CTOP10 5
#define Q_CTOPQ 6
#define Q_CTOP3 7
#define NQ 8

// U[b, k] = sum_{i in block b} op(A)[i, k], Ua[b, k] = sum op(A)[i, k]^2 (both real).
// op(A)[i, k] = A[off + (TA ? k * ld + i : i * ld + k)].  global (K, NB); double sums with
// CS > 1: (K rounded up to 64, NB x CS), local (64, CS). Otherwise two interleaved chains per
// sum (one dependent add per row was latency-bound).
__kernel void abft_ublock(const int M, const int Kd, const int Bs,
    __global const float* A, const int ld, const int off, const int ta,
    __global real* U, __global real* Ua)
{
#if %(FP64)d && CS > 1
  // CS work-items share a block's rows (local size (64, CS)), folded in local memory, as
  // abft_cblock's: the same latency-bound walk, run beside the product
  __local real ls[CS][64], lq[CS][64];
  const int k = get_global_id(0), b = get_group_id(1), r = get_local_id(1);
  const int lx = get_local_id(0);
  const int i0 = b * Bs, i1 = min(M, i0 + Bs);
  real s = 0, q = 0;
  if (k < Kd) {
    #pragma unroll 8
    for (int i = i0 + r; i < i1; i += CS) {
      const real x = (real)(ta ? A[off + (long)k * ld + i] : A[off + (long)i * ld + k]);
      s += x; q += x * x;
    }
  }
  ls[r][lx] = s; lq[r][lx] = q;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (r != 0 || k >= Kd) return;
  for (int p = 1; p < CS; p++) { s += ls[p][lx]; q += lq[p][lx]; }
  U[(long)b * Kd + k] = s;
  Ua[(long)b * Kd + k] = q;
#else
  const int k = get_global_id(0), b = get_global_id(1);
  if (k >= Kd) return;
  const int i0 = b * Bs, i1 = min(M, i0 + Bs);
  real s0 = 0, s1 = 0, q0 = 0, q1 = 0;
  int i = i0;
  #pragma unroll 4
  for (; i + 1 < i1; i += 2) {
    const real x0 = (real)(ta ? A[off + (long)k * ld + i] : A[off + (long)i * ld + k]);
    const real x1 = (real)(ta ? A[off + (long)k * ld + i + 1] : A[off + (long)(i + 1) * ld + k]);
    s0 += x0; s1 += x1; q0 += x0 * x0; q1 += x1 * x1;
  }
  if (i < i1) {
    const real x0 = (real)(ta ? A[off + (long)k * ld + i] : A[off + (long)i * ld + k]);
    s0 += x0; q0 += x0 * x0;
  }
  U[(long)b * Kd + k] = s0 + s1;
  Ua[(long)b * Kd + k] = q0 + q1;
#endif
}

// Partial expected sums over K slices: Ep[s][b][j] = sum_{k in slice s} U[b,k] op(B)[k,j];
// and for the tolerances, Bq[s][j] = sum_{k in slice} op(B)[k,j]^2 (block group 0 writes it)
// and Aq[s][b] = sum_{k in slice} Ua[b,k] = ||op(A) rows of b, slice||_F^2 (column tile 0).
// A register tile per work-item: EJ columns x EB blocks, so each op(B) load feeds EB FMAs
// and U's slice is staged k-major in local memory, read as broadcasts. Work-groups of one
// (column tile, slice) and all block groups are adjacent in the 1-D grid, so op(B)'s tile
// comes from DRAM once and from L2 for the other block groups.
// 1-D grid: NG * NJ * S work-groups of EW work-items, g = block group fastest.
__kernel __attribute__((reqd_work_group_size(EW, 1, 1)))
void abft_expect(const int Kd, const int N, const int NB, const int kc,
    __global const real* U, __global const real* Ua,
    __global const float* B, const int ld, const int off, const int tb,
    __global real* Ep, __global real* Bq, __global real* Aq)
{
  __local real Us[EK * EB];
  __local real Uas[EK * EB];
  const int lid = get_local_id(0);
  const int ng = (NB + EB - 1) / EB, nj = (N + EJ * EW - 1) / (EJ * EW);
  const int wg = get_group_id(0);
  const int g = wg %% ng, jt = (wg / ng) %% nj, s = wg / (ng * nj);
  const int b0 = g * EB, j0 = (jt * EW + lid) * EJ;
  const int nb = min(EB, NB - b0);
  const int k0 = s * kc, k1 = min(Kd, k0 + kc);
  const int vec = !tb && j0 + EJ <= N;
  real acc[EB][EJ]; real bq[EJ]; real aq = 0;
  #pragma unroll
  for (int r = 0; r < EB; r++) {
    #pragma unroll
    for (int c = 0; c < EJ; c++) acc[r][c] = 0;
  }
  #pragma unroll
  for (int c = 0; c < EJ; c++) bq[c] = 0;
  for (int kb = k0; kb < k1; kb += EK) {
    const int kn = min(EK, k1 - kb);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int t = lid; t < EK * EB; t += EW) {
      const int kk = t %% EK, r = t / EK;  // coalesced over k of U[b][k]
      real u = 0, ua = 0;
      if (kk < kn && r < nb) {
        const long src = (long)(b0 + r) * Kd + kb + kk;
        u = U[src]; ua = Ua[src];
      }
      Us[kk * EB + r] = u; Uas[kk * EB + r] = ua;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (jt == 0 && lid < EB)
      for (int kk = 0; kk < kn; kk++) aq += Uas[kk * EB + lid];
    if (j0 < N) {
      // EP rows of op(B) are loaded before any of them is used: few work-groups fit per
      // unit (the accumulators' registers), so each must keep loads in flight itself.
      for (int kp = 0; kp < kn; kp += EP) {
        float x[EP][EJ];
        #pragma unroll
        for (int p = 0; p < EP; p++) {
          const int k = kb + kp + p;
          if (kp + p >= kn) {
            #pragma unroll
            for (int c = 0; c < EJ; c++) x[p][c] = 0.0f;
          } else if (vec) {
#if EJ == 4
            const float4 v = vload4(0, B + off + (long)k * ld + j0);
            x[p][0] = v.x; x[p][1] = v.y; x[p][2] = v.z; x[p][3] = v.w;
#else
            const float2 v = vload2(0, B + off + (long)k * ld + j0);
            x[p][0] = v.x; x[p][1] = v.y;
#endif
          } else {
            #pragma unroll
            for (int c = 0; c < EJ; c++)
              x[p][c] = (j0 + c < N) ? (tb ? B[off + (long)(j0 + c) * ld + k]
                                           : B[off + (long)k * ld + j0 + c]) : 0.0f;
          }
        }
        #pragma unroll
        for (int p = 0; p < EP; p++) {
          const int kk = kp + p;  // past kn: U is zero in local memory, x is zero
          #pragma unroll
          for (int r = 0; r < EB; r++) {
            const real u = Us[kk * EB + r];
            #pragma unroll
            for (int c = 0; c < EJ; c++) acc[r][c] += u * (real)x[p][c];
          }
          if (g == 0) {
            #pragma unroll
            for (int c = 0; c < EJ; c++) bq[c] += (real)x[p][c] * (real)x[p][c];
          }
        }
      }
    }
  }
  if (jt == 0 && lid < nb) Aq[(long)s * NB + b0 + lid] = aq;
  if (j0 >= N) return;
  const long base = (long)s * NB * N;
  if (g == 0) {
    #pragma unroll
    for (int c = 0; c < EJ; c++) if (j0 + c < N) Bq[(long)s * N + j0 + c] = bq[c];
  }
  #pragma unroll
  for (int r = 0; r < EB; r++) {
    if (r < nb) {
      #pragma unroll
      for (int c = 0; c < EJ; c++) {
        if (j0 + c < N) {
          Ep[base + (long)(b0 + r) * N + j0 + c] = acc[r][c];
        }
      }
    }
  }
}

// Block-column sums of a row-major M x N matrix: S = sum, Sa = sum |x|, Q = the 2-norm
// (NORM_OF(Q): with double sums Q holds the sum of squares; with float ones the norm itself,
// accumulated scaled as BLAS nrm2 does: x*x overflows float from |x| = 1.8e19, and on data
// of 1e15 the check then saw every sum's scale as infinite and judged by the rigorous bound
// alone, which missed every fault of 1e-3 max|C| on Rusticl).
// With zero_sum, the first work-group also clears the summary's counters and histogram for
// the judges that follow (one command fewer than a fill).  global (N, NB)
__kernel void abft_cblock(const int M, const int N, const int Bs,
    __global const float* X, const int ld, const int off, const int tx,
    __global real* S, __global real* Q, __global real* Sa,
    __global uint* sum, const int zero_sum)
{
  if (zero_sum && get_group_id(0) == 0 && get_group_id(1) == 0) {
    const int lsz = get_local_size(0) * get_local_size(1);
    for (int w = get_local_id(1) * get_local_size(0) + get_local_id(0); w < ENTRIES; w += lsz)
      sum[w] = 0u;
  }
#if %(FP64)d && CS > 1
  // CS work-items share a block's rows (local size (64, CS)), folded in local memory: one
  // work-item a column summed 128 rows in three dependent chains, eight warps a unit at
  // 2048, latency-bound (13.6 us for C's 16 MiB on the H200: 1.2 TB/s)
  __local real ls[CS][64], lq[CS][64], la[CS][64];
  const int j = get_global_id(0), b = get_group_id(1), r = get_local_id(1);
  const int lx = get_local_id(0);
  const int i0 = b * Bs, i1 = min(M, i0 + Bs);
  real s = 0, q = 0, a = 0;
  if (j < N) {
    #pragma unroll 8
    for (int i = i0 + r; i < i1; i += CS) {
      const real x = (real)X[off + (tx ? (long)j * ld + i : (long)i * ld + j)];
      s += x; q += x * x; a += fabs(x);
    }
  }
  ls[r][lx] = s; lq[r][lx] = q; la[r][lx] = a;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (r != 0 || j >= N) return;
  for (int p = 1; p < CS; p++) { s += ls[p][lx]; q += lq[p][lx]; a += la[p][lx]; }
  const long t = (long)b * N + j;
  S[t] = s; Q[t] = q; Sa[t] = a;
#else
  const int j = get_global_id(0), b = get_global_id(1);
  if (j >= N) return;
  const int i0 = b * Bs, i1 = min(M, i0 + Bs);
  const long t = (long)b * N + j;
#if %(FP64)d
  real s = 0, q = 0, a = 0;
  #pragma unroll 8
  for (int i = i0; i < i1; i++) {
    const real x = (real)X[off + (tx ? (long)j * ld + i : (long)i * ld + j)];
    s += x; q += x * x; a += fabs(x);
  }
  S[t] = s; Q[t] = q; Sa[t] = a;
#else
  float s = 0, a = 0, big = 0, ssq = 0;  // norm = big sqrt(ssq), big the largest |x| so far
  __global const float* col = X + off + (tx ? (long)j * ld : (long)j);
  const long step = tx ? 1 : ld;
  #pragma unroll 8
  for (int i = i0; i < i1; i++) {
    const float x = col[(long)i * step];
    const float ax = fabs(x);
    s += x; a += ax;
    if (ax > big) {
      const float r = big / ax;
      ssq = 1.0f + ssq * r * r;
      big = ax;
    } else if (ax > 0.0f) {
      const float r = ax / big;
      ssq += r * r;
    }
  }
  S[t] = s; Q[t] = big * sqrt(ssq); Sa[t] = a;
#endif
#endif
}

#if %(ROWS)d
// The rows form (GuardDevice.rows_form: a CPU device with double sums; built only there).
// The two kernels above give each work-item one column (abft_cblock) or a register tile in a
// work-group of 64 with local-memory stages (abft_expect): shapes for a GPU's many threads.
// On a CPU a work-group is a loop, each a few microseconds of overhead, and a work-item's
// strided column walk is not vectorised: on PoCL at 512 the check's block sums took 5.7 ms
// and its expected sums 7.1 against a 2 ms product. Here a work-item walks its rows RJ
// columns at a time, a row per step, in double (the same sums; their order within a sum
// differs).
#define RJ 16
#define RB 4
// Vectors of 4 (RJ = 4 x 4): PoCL 3.0-rc2 on an AVX2 host stores a program whose builtins
// take 8- or 16-wide vectors in its kernel cache without its kernels (a second build of the
// same source, in another process, finds none: INVALID_KERNEL_NAME). Loads are written as
// scalar loads (the compiler merges them): PoCL does not inline vloadN and convert_*, and a
// call inside a loop spills every accumulator (kernels/gemm.py's _vload says the same).
#define LOAD4D(p) ((double4)((double)(p)[0], (double)(p)[1], (double)(p)[2], (double)(p)[3]))
#define ABS4D(x) ((x) * select((double4)1.0, (double4)-1.0, (x) < (double4)0.0))

// S, Q (sum of squares) and Sa (sum of |x|) of RJ columns of one row block of the M x N
// matrix X (row-major, or stored transposed: tx). Also serves abft_ublock's U and Ua (X =
// op(A), N = K, Sa a scratch).  global (ceil(N / RJ), NB)
__kernel void abft_cblock_rows(const int M, const int N, const int Bs,
    __global const float* X, const int ld, const int off, const int tx,
    __global real* S, __global real* Q, __global real* Sa,
    __global uint* sum, const int zero_sum)
{
  if (zero_sum && get_global_id(0) == 0 && get_global_id(1) == 0)
    for (int w = 0; w < ENTRIES; w++) sum[w] = 0u;
  const int j0 = get_global_id(0) * RJ, b = get_global_id(1);
  if (j0 >= N) return;
  const int i0 = b * Bs, i1 = min(M, i0 + Bs);
  const long t = (long)b * N + j0;
  if (!tx && j0 + RJ <= N) {
    double4 s[4], q[4], a[4];
    for (int v = 0; v < 4; v++) { s[v] = 0; q[v] = 0; a[v] = 0; }
    for (int i = i0; i < i1; i++) {
      __global const float* row = X + off + (long)i * ld + j0;
      for (int v = 0; v < 4; v++) {
        const double4 x = LOAD4D(row + 4 * v);
        s[v] += x; q[v] += x * x; a[v] += ABS4D(x);
      }
    }
    for (int v = 0; v < 4; v++) {
      vstore4(s[v], v, S + t); vstore4(q[v], v, Q + t); vstore4(a[v], v, Sa + t);
    }
    return;
  }
  const int nc = min(RJ, N - j0);  // a strip at the edge, or X transposed: column by column
  for (int c = 0; c < nc; c++) {
    double s = 0, q = 0, a = 0;
    for (int i = i0; i < i1; i++) {
      const double x = (double)X[off + (tx ? (long)(j0 + c) * ld + i : (long)i * ld + j0 + c)];
      s += x; q += x * x; a += fabs(x);
    }
    S[t + c] = s; Q[t + c] = q; Sa[t + c] = a;
  }
}

// Ep, Bq and Aq as abft_expect writes them, for RB blocks x RJ columns per work-item over
// one K slice: per k one row of op(B) (vector loads where it is row-major and whole) feeds
// RB x RJ multiply-adds.  global (NG * NJ, NS), the block group g fastest
__kernel void abft_expect_rows(const int Kd, const int N, const int NB, const int kc,
    __global const real* U, __global const real* Ua,
    __global const float* B, const int ld, const int off, const int tb,
    __global real* Ep, __global real* Bq, __global real* Aq)
{
  const int ng = (NB + RB - 1) / RB;
  const int g = get_global_id(0) %% ng, jt = get_global_id(0) / ng, s = get_global_id(1);
  const int b0 = g * RB, j0 = jt * RJ;
  if (j0 >= N) return;
  const int nb = min(RB, NB - b0), nc = min(RJ, N - j0);
  const int k0 = s * kc, k1 = min(Kd, k0 + kc);
  const int vec = !tb && nc == RJ;
  // RB == 4, the accumulators named (an array indexed under a bound nb was kept in memory):
  // a group's missing blocks (past NB) read the last block's U and are not written
  __global const real* u0 = U + (long)b0 * Kd;
  __global const real* u1 = U + (long)min(b0 + 1, NB - 1) * Kd;
  __global const real* u2 = U + (long)min(b0 + 2, NB - 1) * Kd;
  __global const real* u3 = U + (long)min(b0 + 3, NB - 1) * Kd;
  double4 a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
  double4 a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
  double4 q0 = 0, q1 = 0, q2 = 0, q3 = 0;
  for (int k = k0; k < k1; k++) {
    double4 x0, x1, x2, x3;
    if (vec) {
      __global const float* row = B + off + (long)k * ld + j0;
      x0 = LOAD4D(row); x1 = LOAD4D(row + 4); x2 = LOAD4D(row + 8); x3 = LOAD4D(row + 12);
    } else {
      float e[RJ];
      for (int c = 0; c < RJ; c++)
        e[c] = c < nc ? (tb ? B[off + (long)(j0 + c) * ld + k] : B[off + (long)k * ld + j0 + c])
                      : 0.0f;
      x0 = LOAD4D(e); x1 = LOAD4D(e + 4); x2 = LOAD4D(e + 8); x3 = LOAD4D(e + 12);
    }
    const double v0 = u0[k], v1 = u1[k], v2 = u2[k], v3 = u3[k];
    a00 += v0 * x0; a01 += v0 * x1; a02 += v0 * x2; a03 += v0 * x3;
    a10 += v1 * x0; a11 += v1 * x1; a12 += v1 * x2; a13 += v1 * x3;
    a20 += v2 * x0; a21 += v2 * x1; a22 += v2 * x2; a23 += v2 * x3;
    a30 += v3 * x0; a31 += v3 * x1; a32 += v3 * x2; a33 += v3 * x3;
    if (g == 0) { q0 += x0 * x0; q1 += x1 * x1; q2 += x2 * x2; q3 += x3 * x3; }
  }
  if (jt == 0) {
    for (int r = 0; r < nb; r++) {
      double aq = 0;
      for (int k = k0; k < k1; k++) aq += Ua[(long)(b0 + r) * Kd + k];
      Aq[(long)s * NB + b0 + r] = aq;
    }
  }
  const long base = (long)s * NB * N;
  double w[RJ];
#define ABFT_PUT(r, p0, p1, p2, p3) if (r < nb) { \
    vstore4(p0, 0, w); vstore4(p1, 1, w); vstore4(p2, 2, w); vstore4(p3, 3, w); \
    for (int c = 0; c < nc; c++) Ep[base + (long)(b0 + r) * N + j0 + c] = w[c]; }
  ABFT_PUT(0, a00, a01, a02, a03)
  ABFT_PUT(1, a10, a11, a12, a13)
  ABFT_PUT(2, a20, a21, a22, a23)
  ABFT_PUT(3, a30, a31, a32, a33)
  if (g == 0) {
    vstore4(q0, 0, w); vstore4(q1, 1, w); vstore4(q2, 2, w); vstore4(q3, 3, w);
    for (int c = 0; c < nc; c++) Bq[(long)s * N + j0 + c] = w[c];
  }
}
#endif

uint abft_bits(float x) { return as_uint(x); }

// Counters, maxima and the histogram are gathered per work-group in local memory first and
// merged with one global atomic per counter and per non-empty bin: one global atomic per
// block-column on a handful of addresses serialised in L2.
#define JW 64
void abft_flush_max(__local uint* lm, __global uint* g) { if (*lm) atomic_max(g, *lm); }

// Residual, tolerances and the histogram of z = |r| / scale.  global (N, NB), local (JW, 1)
// sum[0] flagged, [1] unverifiable, [2] checkable, [3] max ratio, [4] max z,
// [5] max rigorous ratio, [6] non-finite flagged, [7] T (judge2), [8] T_c of the centred
// rule (judge2), [9] centred ratios exactly zero (abft_centre), [10] the largest tolerance
// tau of any block-column (judge2: a fault of twice it is found wherever it falls); [HEAD,
// CENTRED) histogram of |r| / scale, [CENTRED, ENTRIES) that of the centred ratios
// (abft_centre), then CAP entries of 4 words: index b*N+j, 0, residual (real as 2 words, or
// float + 0).
__kernel __attribute__((reqd_work_group_size(JW, 1, 1)))
void abft_judge1(const int N, const int NB, const int M, const int Bs,
    const int Kd, const int NS, const float alpha, const float beta, const int has_old,
    __global const real* Ep, __global const real* Bq, __global const real* Aq,
    __global const real* Sc, __global const real* Qc,
    __global const real* So, __global const real* Qo, __global const real* Soa,
    __global real* R, __global real* SC, __global real* RG, __global uint* sum)
{
  __local uint hist[NH];
  __local uint cnt[3];  // unverifiable, checkable, max z (bits)
  const int lid = get_local_id(0);
  for (int h = lid; h < NH; h += JW) hist[h] = 0u;
  if (lid < 3) cnt[lid] = 0u;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int j = get_global_id(0), b = get_global_id(1);
  if (j < N) {
    const long t = (long)b * N + j;
    real e = 0, aq = 0, bq = 0;
    for (int s = 0; s < NS; s++) {
      e += Ep[(long)s * NB * N + t]; aq += Aq[(long)s * NB + b]; bq += Bq[(long)s * N + j];
    }
    const int len = min(M, b * Bs + Bs) - b * Bs;
    // ||op(A)_b||_F ||op(B)_j||_2 bounds the l2 norm over the block's rows of the entries'
    // sum_k |a_ik| |b_kj| (Cauchy-Schwarz), and sqrt(len) times it bounds their sum.
    const real ab = fabs((real)alpha) * sqrt(max(aq, (real)0)) * sqrt(max(bq, (real)0));
    real ex = (real)alpha * e;
    real absb = ab * sqrt((real)len) * (real)(1.0 + (Kd + len + 4) * 1.2e-7);
    real spread = ab;
    if (has_old) {
      ex += (real)beta * So[t]; absb += fabs((real)beta) * Soa[t];
      spread += fabs((real)beta) * NORM_OF(Qo[t]);
    }
    const real r = Sc[t] - ex;
    const real kk = (real)Kd;
#if %(FP64)d
    const real rig = (kk + 2 * len + 8) * U_RND * absb * 1.02 + (kk + len + 4) * TINY_F;
    // The roundoff of the block's sum: u sqrt(K) times the l2 norm of its entries (random
    // walk of each entry's accumulation), or of their |a||b| sums over sqrt(K) where the
    // entries cancel: a row of the block may carry all of it (rows of very different scales).
    const real scale = U_RND * sqrt(kk + 4) * (NORM_OF(Qc[t])
                         + spread / sqrt(max(kk, (real)1)));
#else
    const real rig = 2 * (2 * kk + 2 * len + 8) * U_RND * absb * 1.02 + (kk + len + 4) * TINY_F;
    const real scale = U_RND * sqrt(2 * kk + len + 4) * (NORM_OF(Qc[t])
                         + spread / sqrt(max(kk, (real)1)));
#endif
    const int ok = isfinite(ex) && isfinite(absb) && isfinite(rig);
    R[t] = r; SC[t] = scale; RG[t] = ok ? rig : (real)NAN;
    if (!ok) {
      atomic_inc(&cnt[0]);
    } else {
      atomic_inc(&cnt[1]);
      // An exact residual (r == 0: integer data, zeros) stays out of the histogram: the
      // robust level is the percentile of the roundoff that did happen, which a majority
      // of exact sums would otherwise pull to zero.
      const float z = (r == 0) ? 0.0f : (float)(fabs(r) / scale);
      if (z == 0.0f) {
        // never flagged (|r| = 0 <= tau), not in the histogram
      } else if (!(z <= 3.0e38f)) {
        atomic_max(&cnt[2], 0x7f800000u); atomic_inc(&hist[NH - 1]);
      } else {
        atomic_max(&cnt[2], abft_bits(z));
        const int bin = (int)floor((log2(z) + 48.0f) * 4.0f);
        atomic_inc(&hist[clamp(bin, 0, NH - 1)]);
      }
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int h = lid; h < NH; h += JW) if (hist[h]) atomic_add(&sum[HEAD + h], hist[h]);
  if (lid == 0) {
    if (cnt[0]) atomic_add(&sum[1], cnt[0]);
    if (cnt[1]) atomic_add(&sum[2], cnt[1]);
    abft_flush_max(&cnt[2], &sum[4]);
  }
}

// z = r / scale of a checkable block sum, NaN where it is unverifiable or not finite
float abft_ratio(__global const real* R, __global const real* SC, __global const real* RG,
                 const long t)
{
  if (!isfinite(RG[t])) return NAN;
  const real r = R[t];
  if (r == 0) return 0.0f;
  const float z = (float)(r / SC[t]);
  return (fabs(z) <= 3.0e38f) ? z : NAN;
}

// Signed bins in order: negative ratios by |z| (largest first), zero, positive ones.
#define SB (2 * NH + 1)
int abft_signed_bin(const float z)
{
  if (z == 0.0f) return NH;
  const int bin = clamp((int)floor((log2(fabs(z)) + 48.0f) * 4.0f), 0, NH - 1);
  return z < 0.0f ? NH - 1 - bin : NH + 1 + bin;
}

// Inclusive prefix sums of s[0, CW) in place, by every work-item of the group.
#define ABFT_SCAN(s)                                          \
  for (int off_ = 1; off_ < CW; off_ <<= 1) {                 \
    const uint add_ = lid >= off_ ? (s)[lid - off_] : 0u;     \
    barrier(CLK_LOCAL_MEM_FENCE);                             \
    (s)[lid] += add_;                                         \
    barrier(CLK_LOCAL_MEM_FENCE);                             \
  }

// The centre of each block row's signed ratios: the median, found in a histogram of signed
// bins, then in CW_FINE linear sub-bins of its bin, refined as the mean of the ratios in
// the median's sub-bin (exact where they are all equal); MC[b] = NaN with fewer than
// min_cols checkable sums. Then the histogram of the non-zero |z - m| (sum[CENTRED..]) and
// the count of zero ones (sum[9]). One work-group of CW per block row: global (CW * NB).
// Every count, rank search and sum is shared by the work-group (prefix sums, tree sums):
// one work-item walking the 513 bins and CW partial sums alone was most of the kernel's
// 37-51 us on the H100 (records/nvidia-h100/2026-12-06-plan-campaign-2, check_profile).
// Every barrier is at the kernel's top level, each phase's condition inside it: PoCL ran
// code past barriers inside a branch (uniform, as OpenCL allows) on every work-item, the
// last `lid == 0` block included, adding each block row's count of zeros 256 times (and
// crashed on a variant of it).
#define SB_PER ((SB + CW - 1) / CW)
__kernel __attribute__((reqd_work_group_size(CW, 1, 1)))
void abft_centre(const int N, const int min_cols, __global const real* R,
    __global const real* SC, __global const real* RG, __global float* MC, __global uint* sum)
{
  __local uint h[SB];
  __local real ps[CW];
  __local uint pn[CW];
  __local int sel_, fsel_;
  __local uint need_;
  const int lid = get_local_id(0), b = get_group_id(0);
  const long row = (long)b * N;
  for (int q = lid; q < SB; q += CW) h[q] = 0u;
  if (lid == 0) { sel_ = -1; need_ = 0u; fsel_ = CW_FINE - 1; }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = lid; j < N; j += CW) {
    const float z = abft_ratio(R, SC, RG, row + j);
    if (isfinite(z)) atomic_inc(&h[abft_signed_bin(z)]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  // the checkable count and the median's bin: chunks of SB_PER bins, their prefix sums
  const int q0 = lid * SB_PER, q1 = min(SB, q0 + SB_PER);
  uint chunk = 0u;
  for (int q = q0; q < q1; q++) chunk += h[q];
  pn[lid] = chunk;
  barrier(CLK_LOCAL_MEM_FENCE);
  ABFT_SCAN(pn)
  const uint tot = pn[CW - 1];
  if (tot >= (uint)min_cols) {
    const uint need = (tot + 1u) / 2u;  // the median's rank
    uint c = lid ? pn[lid - 1] : 0u;
    if (c < need && need <= pn[lid]) {  // it falls in this work-item's chunk
      for (int q = q0; q < q1; q++) {
        if (c + h[q] >= need) { sel_ = q; need_ = need - c; break; }  // its rank in the bin
        c += h[q];
      }
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int sel = sel_;  // uniform; < 0: too few checkable sums, no centre
  const bool refine = sel >= 0 && sel != NH;  // the median is not an exact zero
  const int p = sel > NH ? sel - NH - 1 : NH - 1 - sel;
  const float e0 = exp2((float)p * 0.25f - 48.0f), e1 = exp2((float)(p + 1) * 0.25f - 48.0f);
  const float lo = sel > NH ? e0 : -e1, w = e1 - e0;
  for (int q = lid; q < CW_FINE; q += CW) h[q] = 0u;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (refine) {
    for (int j = lid; j < N; j += CW) {
      const float z = abft_ratio(R, SC, RG, row + j);
      if (isfinite(z) && abft_signed_bin(z) == sel)
        atomic_inc(&h[clamp((int)((z - lo) / w * (float)CW_FINE), 0, CW_FINE - 1)]);
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  pn[lid] = h[lid];  // one sub-bin a work-item (CW_FINE == CW)
  barrier(CLK_LOCAL_MEM_FENCE);
  ABFT_SCAN(pn)
  const uint need = need_;
  if (refine && (lid ? pn[lid - 1] : 0u) < need && need <= pn[lid]) fsel_ = lid;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int fsel = fsel_;
  real s = 0;
  uint cnt = 0u;
  if (refine) {
    for (int j = lid; j < N; j += CW) {
      const float z = abft_ratio(R, SC, RG, row + j);
      if (isfinite(z) && abft_signed_bin(z) == sel &&
          clamp((int)((z - lo) / w * (float)CW_FINE), 0, CW_FINE - 1) == fsel) {
        s += (real)z; cnt++;
      }
    }
  }
  ps[lid] = s;
  pn[lid] = cnt;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int st = CW / 2; st > 0; st >>= 1) {
    if (lid < st) { ps[lid] += ps[lid + st]; pn[lid] += pn[lid + st]; }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float m = refine ? (float)(ps[0] / (real)max(pn[0], 1u)) : 0.0f;
  for (int q = lid; q < NH; q += CW) h[q] = 0u;
  barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read the sums before pn is reused
  uint zeros = 0u;
  if (sel >= 0) {
    for (int j = lid; j < N; j += CW) {
      const float z = abft_ratio(R, SC, RG, row + j);
      if (!isfinite(z)) continue;
      const float d = fabs(z - m);
      if (d == 0.0f) zeros++;
      else atomic_inc(&h[clamp((int)floor((log2(d) + 48.0f) * 4.0f), 0, NH - 1)]);
    }
  }
  pn[lid] = zeros;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int st = CW / 2; st > 0; st >>= 1) {
    if (lid < st) pn[lid] += pn[lid + st];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (sel >= 0)
    for (int q = lid; q < NH; q += CW) if (h[q]) atomic_add(&sum[CENTRED + q], h[q]);
  if (lid == 0) {
    if (sel >= 0 && pn[0]) atomic_add(&sum[9], pn[0]);
    MC[b] = sel >= 0 ? m : NAN;
  }
}

// T from the histogram of the non-zero |r| / scale: max(kappa p75, min(c_dev, max(kappa99
// p99, c_min))); lowered to max(gauss_z sigma, 1.5 top10) where the residuals' tail is
// Gaussian (top10 <= z_top sigma; z_top 0: the branch is off);
// infinite with fewer than min_side checkable sums. Then the verdict per block-column.
// global (N, NB), local (JW, 1)
__kernel __attribute__((reqd_work_group_size(JW, 1, 1)))
void abft_judge2(const int N, const int NB, const float c_dev, const float c_min,
    const float kappa, const float kappa99, const int min_side, const float z_top,
    const float gauss_z, const int centred, __global const real* R, __global const real* SC,
    __global const real* RG, __global const float* MC, __global uint* sum)
{
  __local float T_, Tc_;
  __local uint mx[3];  // max ratio, max rigorous ratio, max tau (bits)
  __local uint part[JW];  // histogram counts per chunk of NH / JW bins (then their prefix sums)
  __local uint partc[JW];  // the same of the centred ratios' histogram
  __local int qsel[NQ];  // each percentile's chunk
  __local float qlevel[NQ], qinterp[NQ];  // each percentile's bin edge, and interpolated
  const int lid = get_local_id(0);
  const int per = NH / JW;
  uint own = 0u, ownc = 0u;
  for (int h = 0; h < per; h++) {
    own += sum[HEAD + lid * per + h];
    ownc += sum[CENTRED + lid * per + h];
  }
  part[lid] = own;
  partc[lid] = ownc;
  if (lid < NQ) qsel[lid] = -1;
  barrier(CLK_LOCAL_MEM_FENCE);
  // Prefix sums of the chunks, then each percentile's chunk found by the work-item whose
  // chunk holds its rank, and its bin within the chunk by one work-item a percentile: one
  // work-item walking JW chunk sums and, per percentile, the bins of global memory was most
  // of this kernel's 12-23 us on the H100 (every work-group did it, in parallel).
  for (int off = 1; off < JW; off <<= 1) {
    const uint add = lid >= off ? part[lid - off] : 0u;
    const uint addc = lid >= off ? partc[lid - off] : 0u;
    barrier(CLK_LOCAL_MEM_FENCE);
    part[lid] += add;
    partc[lid] += addc;
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const uint tot = part[JW - 1];  // the non-zero residuals (the histogram's population)
  const uint totc = partc[JW - 1];
  const uint qn = (uint)clamp(NB, 1, 10);
  // the ranks asked for: Q_P75, Q_P99, Q_TOP10, Q_TOP3 of |r| / scale; Q_C75, Q_CTOP10,
  // Q_CTOPQ, Q_CTOP3 of the centred ratios (a rank past the population: no bin, the top)
  uint need[NQ];
  need[Q_P75] = (uint)ceil(0.75f * (float)tot);
  need[Q_P99] = (uint)ceil(0.99f * (float)tot);
  need[Q_TOP10] = tot - 9u;
  need[Q_TOP3] = tot - 2u;
  need[Q_C75] = (uint)ceil(0.75f * (float)totc);
  need[Q_CTOP10] = totc - 9u;
  need[Q_CTOPQ] = totc + 1u - qn;
  need[Q_CTOP3] = totc - 2u;
  for (int qi = 0; qi < NQ; qi++) {
    __local const uint* inc = qi < Q_C75 ? part : partc;
    // the first chunk whose running count reaches the rank (the serial walk's)
    if (inc[lid] >= need[qi] && (lid == 0 || inc[lid - 1] < need[qi])) qsel[qi] = lid;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < NQ) {
    // within its chunk: the bin's upper edge (level) and the rank interpolated in the bin
    __global const uint* hist = sum + (lid < Q_C75 ? HEAD : CENTRED);
    __local const uint* inc = lid < Q_C75 ? part : partc;
    const int q = qsel[lid];
    float level = exp2((float)NH * 0.25f - 48.0f), interp = level;
    if (q >= 0) {
      uint c = q ? inc[q - 1] : 0u;
      for (int h = q * per; h < q * per + per; h++) {
        const uint in_bin = hist[h];
        if (c + in_bin >= need[lid]) {
          level = exp2((float)(h + 1) * 0.25f - 48.0f);
          interp = exp2(((float)h + (float)(need[lid] - c) / (float)in_bin) * 0.25f - 48.0f);
          break;
        }
        c += in_bin;
      }
    }
    qlevel[lid] = level;
    qinterp[lid] = interp;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid == 0) {
    float T = INFINITY;
    if (sum[2] >= (uint)min_side) {
      // T = max(kappa p75, min(c_dev, max(kappa99 p99, c_min))): the floor c_dev covers the
      // tails of every kind of data the calibration saw; a product whose own tail (p99) sits
      // below it gets a lower T, never below c_min (the largest clean |r| / scale seen in
      // calibration: where all but a few sums are near-exact, p99 says nothing of the few).
      // Never above max(kappa p75, c_dev); one faulty sum cannot lower it.
      const float p75 = qlevel[Q_P75];
      const float p99 = qlevel[Q_P99];
      T = fmax(kappa * p75, fmin(c_dev, fmax(kappa99 * p99, c_min)));
      // Fewer than 1 in 100 checkable sums carry any roundoff (exact data: integers):
      // their percentiles describe the few, which may be the faults themselves (one faulty
      // sum alone made T = kappa x its own ratio, never flagged). The calibrated floor
      // decides, from K = 512 down to c_min, the largest clean |r| / scale calibration saw
      // (a fault of 1e-5 max|C| in integer data at 3072 stands ~0.6 out: c_dev 0.8 missed
      // half of them on the H200, benchmarks/guard/h200/gauss1).
      if (tot * 100u < sum[2]) T = c_min;
      if (z_top > 0.0f && tot >= %(GAUSS_MIN)d) {
        // one faulty sum moves neither the 75th percentile nor the 10th largest much; a
        // whole faulty row (n sums) lifts the 10th largest and the branch stays off
        const float sigma = qinterp[Q_P75] / 1.1503f;
        const float top10 = qinterp[Q_TOP10];
        const float top3 = qinterp[Q_TOP3];
        if (top10 <= z_top * sigma)
          T = fmin(T, fmax(fmax(gauss_z * sigma, 1.5f * top10), %(GAUSS_TOP3).8ef * top3));
      }
    }
    // The centred rule (abft_centre): the same Gaussian-tail test on |z - m_b|, from at
    // least GAUSS_MIN centred sums of which at least 1 in 100 non-zero.
    float Tc = INFINITY;
    if (centred && z_top > 0.0f) {
      const uint popc = totc + sum[9];
      if (popc >= %(GAUSS_MIN)du && totc >= 10u && totc * 100u >= popc) {
        const float sigma = qinterp[Q_C75] / 1.1503f;
        const float top10 = qinterp[Q_CTOP10];
        // a whole column of block sums (NB of them) may differ from the rest by its data:
        // with fewer than 10 block rows T_c stays above the NB-th largest, not the 10th
        const float topq = qinterp[Q_CTOPQ];
        const float top3 = qinterp[Q_CTOP3];
        if (top10 <= z_top * sigma && sigma >= %(CENTRE_MIN_SIGMA).8ef)
          Tc = fmax(fmax(gauss_z * sigma, 1.5f * fmax(top10, topq)), %(GAUSS_TOP3).8ef * top3);
      }
    }
    T_ = T;
    Tc_ = Tc;
    if (get_group_id(0) == 0 && get_group_id(1) == 0) {
      sum[7] = as_uint(T);
      sum[8] = as_uint(Tc);
    }
    mx[0] = 0u; mx[1] = 0u; mx[2] = 0u;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int j = get_global_id(0), b = get_global_id(1);
  const long t = (long)b * N + j;
  const real rig = (j < N) ? RG[t] : (real)NAN;
  if (isfinite(rig)) {  // unverifiable ones were counted by judge1
    const real r = R[t];
    const real tau = fmin(rig, (real)T_ * SC[t]) + TINY_F;
    const real ar = fabs(r);
    float ratio = (float)(ar / tau);
    const float mc = isfinite(Tc_) ? MC[b] : NAN;
    if (isfinite(mc)) {  // |r - m_b scale| <= T_c scale, else flagged as well
      const float rc = (float)(fabs(r - (real)mc * SC[t]) / ((real)Tc_ * SC[t] + TINY_F));
      ratio = fmax(ratio, rc);
    }
    float rr = (float)(ar / (rig + TINY_F));
    if (!(ratio <= 3.0e38f)) ratio = INFINITY;
    if (!(rr <= 3.0e38f)) rr = INFINITY;
    atomic_max(&mx[0], abft_bits(ratio));
    atomic_max(&mx[1], abft_bits(rr));
    const float ft = (float)tau;
    if (ft <= 3.0e38f) atomic_max(&mx[2], abft_bits(ft));
    if (!(ar <= tau) || !(ratio <= 1.0f)) {
      const uint pos = atomic_inc(&sum[0]);
      if (!isfinite(r)) sum[6] = 1u;
      if (pos < CAP) {
        __global uint* e = sum + ENTRIES + 4 * pos;
        e[0] = (uint)t; e[1] = 0u;
#if %(FP64)d
        const ulong u = as_ulong(r); e[2] = (uint)u; e[3] = (uint)(u >> 32);
#else
        e[2] = as_uint(r); e[3] = 0u;
#endif
      }
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid == 0) {
    abft_flush_max(&mx[0], &sum[3]); abft_flush_max(&mx[1], &sum[5]);
    abft_flush_max(&mx[2], &sum[10]);
  }
}

// Listed cells: new = alpha * sum_k opA[i,k] opB[k,j] (in real) + beta * Cold[i,j]; the old
// value of C and the new one go to old_out / new_out; with write, C[i,j] = (float)new.
__kernel void abft_cells(const int n_items, __global const int* rows,
    __global const int* cols, const int Kd, const float alpha, const float beta,
    __global const float* A, const int lda, const int a_off, const int ta,
    __global const float* B, const int ldb, const int b_off, const int tb,
    __global float* C, const int ldc, const int c_off, const int tc,
    __global const float* Cold, const int ldo, const int o_off, const int to, const int has_old,
    __global float* old_out, __global real* new_out, const int write)
{
  const int t = get_global_id(0);
  if (t >= n_items) return;
  const int i = rows[t], j = cols[t];
  real acc = 0;
  for (int k = 0; k < Kd; k++) {
    const float a = ta ? A[a_off + (long)k * lda + i] : A[a_off + (long)i * lda + k];
    const float b = tb ? B[b_off + (long)j * ldb + k] : B[b_off + (long)k * ldb + j];
    acc += (real)a * (real)b;
  }
  real v = (real)alpha * acc;
  if (has_old) v += (real)beta * (real)Cold[o_off + (to ? (long)j * ldo + i : (long)i * ldo + j)];
  const long ci = c_off + (tc ? (long)j * ldc + i : (long)i * ldc + j);
  old_out[t] = C[ci];
  new_out[t] = v;
  if (write) C[ci] = (float)v;
}
"""


def source(fp64: bool, rows: bool = False) -> str:
    """The guard's program; `rows`: with the rows form's kernels (double sums only)."""
    return SOURCE % {"FP64": int(fp64), "ROWS": int(rows and fp64), "EB": EB, "EJ": EJ,
                     "EK": EK, "EW": EW, "EP": EP, "CS": CS if fp64 else 1, "NH": NH,
                     "CAP": CAP, "HEAD": HEAD,
                     "CENTRED": CENTRED, "ENTRIES": ENTRIES, "CW": CW, "CW_FINE": CW_FINE,
                     "GAUSS_MIN": GAUSS_MIN_SUMS, "CENTRE_MIN_SIGMA": CENTRE_MIN_SIGMA,
                     "GAUSS_TOP3": GAUSS_TOP3}
