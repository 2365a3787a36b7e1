"""OpenCL C of the small-rows lane: C[r, j] = alpha * sum_k A[r, k] B[k, j] + beta * C[r, j]
for R <= MAX_ROWS rows (decode products: one or a few tokens against a weight matrix), each
operand addressed by a pair of element strides, so that one source serves every layout.

Two kernels, by which stride of B is 1 (the weight matrix is the large operand: it is read
once, coalesced):
  - gemv_dot: B contiguous along K (a Linear layer's W stored N x K). One work-group per
    output column j, its work-items striding over K; each keeps R partial sums, folded in
    local memory by a tree (a blocked sum, as accurate as numpy's matrix-vector path).
  - gemv_axpy: B contiguous along N (B stored K x N). A work-group of 32 columns x 8 slices
    of K; consecutive work-items read consecutive columns; the 8 slices are folded the same
    way.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ROWS = 16


@dataclass(frozen=True)
class GemvSchedule:
    """The lane's launch shape. dot: `dot_items` work-items share a column, `dot_cols`
    columns a work-group, float`dot_vec` loads along K where the column is 16-byte aligned;
    axpy: `axpy_cols` columns x `axpy_slices` slices of K a work-group."""

    # the default: the fastest single-row schedule of records/nvidia-h100/2026-12-06-gemv-lane
    # (1 x 11008 x 4096: 76.6 us against 83.4 for 32 x 8 and 354 for the scalar 128 x 1)
    dot_items: int = 64
    dot_cols: int = 4
    dot_vec: int = 4
    axpy_cols: int = 32
    axpy_slices: int = 8

    def key(self) -> str:
        return (f"gemv-d{self.dot_items}x{self.dot_cols}v{self.dot_vec}"
                f"-a{self.axpy_cols}x{self.axpy_slices}")

    @property
    def dot_group(self) -> int:
        return self.dot_items * self.dot_cols


def render(s: GemvSchedule, aligned: bool = False) -> str:
    """Both kernels for schedule `s` (R is a launch argument up to MAX_ROWS). `aligned`: the
    dot kernel reads B's columns as float`dot_vec` (their offsets and stride are multiples of
    it), the tail of K element by element."""
    vec = s.dot_vec if aligned else 1
    return f"""
#define MAXR {MAX_ROWS}
#define DOT {s.dot_items}
#define DCOLS {s.dot_cols}
#define VEC {vec}
#define COLS {s.axpy_cols}
#define SLICES {s.axpy_slices}

// Store alpha * sum + beta * C (C unread when beta == 0: a NaN there does not propagate).
#define STORE(p, v) do {{ float _o = alpha * (v); if (beta != 0.0f) _o += beta * (p); (p) = _o; }} while (0)

__kernel __attribute__((reqd_work_group_size(DOT, DCOLS, 1)))
void gemv_dot(const int R, const int N, const int K, const float alpha, const float beta,
              __global const float* restrict A, const long a_off, const long a_rs, const long a_ks,
              __global const float* restrict B, const long b_off, const long b_ns,
              __global float* C, const long c_off, const long c_rs, const long c_ns)
{{
  __local float part[DCOLS][MAXR][DOT];
  const int t = get_local_id(0), cl = get_local_id(1);
  const int j = get_group_id(0) * DCOLS + cl;
  float acc[MAXR];
  #pragma unroll
  for (int r = 0; r < MAXR; r++) acc[r] = 0.0f;
  if (j < N) {{
    __global const float* bj = B + b_off + (long)j * b_ns;
    int k0 = 0;
#if VEC == 4
    // whole float4s of the column: consecutive work-items read consecutive 16-byte words
    const int kv = K / 4;
    __global const float4* bj4 = (__global const float4*)bj;
    for (int q = t; q < kv; q += DOT) {{
      const float4 b = bj4[q];
      __global const float* ak = A + a_off + (long)(4 * q) * a_ks;
      #pragma unroll
      for (int r = 0; r < MAXR; r++)
        if (r < R) {{
          __global const float* ar = ak + (long)r * a_rs;
          float s = acc[r];
          s = fma(ar[0], b.x, s);
          s = fma(ar[a_ks], b.y, s);
          s = fma(ar[2 * a_ks], b.z, s);
          acc[r] = fma(ar[3 * a_ks], b.w, s);
        }}
    }}
    k0 = 4 * kv;
#endif
    for (int k = k0 + t; k < K; k += DOT) {{
      const float b = bj[k];
      __global const float* ak = A + a_off + (long)k * a_ks;
      #pragma unroll
      for (int r = 0; r < MAXR; r++)
        if (r < R) acc[r] = fma(ak[(long)r * a_rs], b, acc[r]);
    }}
  }}
  #pragma unroll
  for (int r = 0; r < MAXR; r++) if (r < R) part[cl][r][t] = acc[r];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int step = DOT / 2; step > 0; step >>= 1) {{
    if (t < step)
      for (int r = 0; r < R; r++) part[cl][r][t] += part[cl][r][t + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
  if (t < R && j < N) STORE(C[c_off + (long)t * c_rs + (long)j * c_ns], part[cl][t][0]);
}}

__kernel __attribute__((reqd_work_group_size(COLS, SLICES, 1)))
void gemv_axpy(const int R, const int N, const int K, const float alpha, const float beta,
               __global const float* restrict A, const long a_off, const long a_rs, const long a_ks,
               __global const float* restrict B, const long b_off, const long b_ks,
               __global float* C, const long c_off, const long c_rs, const long c_ns)
{{
  __local float part[SLICES][MAXR][COLS];
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int j = get_group_id(0) * COLS + tx;
  float acc[MAXR];
  #pragma unroll
  for (int r = 0; r < MAXR; r++) acc[r] = 0.0f;
  if (j < N) {{
    for (int k = ty; k < K; k += SLICES) {{
      const float b = B[b_off + (long)k * b_ks + j];
      __global const float* ak = A + a_off + (long)k * a_ks;
      #pragma unroll
      for (int r = 0; r < MAXR; r++)
        if (r < R) acc[r] = fma(ak[(long)r * a_rs], b, acc[r]);
    }}
  }}
  #pragma unroll
  for (int r = 0; r < MAXR; r++) if (r < R) part[ty][r][tx] = acc[r];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int step = SLICES / 2; step > 0; step >>= 1) {{
    if (ty < step)
      for (int r = 0; r < R; r++) part[ty][r][tx] += part[ty + step][r][tx];
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
  if (ty == 0 && j < N)
    for (int r = 0; r < R; r++) STORE(C[c_off + (long)r * c_rs + (long)j * c_ns], part[0][r][tx]);
}}
"""
