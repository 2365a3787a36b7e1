"""OpenCL C of the small-rows lane: C[r, j] = alpha * sum_k A[r, k] B[k, j] + beta * C[r, j]
for R <= MAX_ROWS rows (decode products: one or a few tokens against a weight matrix), each
operand addressed by a pair of element strides, so that one source serves every layout.
The row count is compiled in by bucket (1, 2, 4, 8, 16: the accumulators of a one-row
product are not those of sixteen rows).

Three kernels, by which stride of B is 1 (the weight matrix is the large operand: it is read
once, coalesced):
  - gemv_dot: B contiguous along K (a Linear layer's W stored N x K). A work-group holds
    `dot_groups` column groups of `dot_lanes` work-items; each work-item reads `cpw` columns
    as float4 words strided by the lanes (a column's lanes read consecutive 16-byte words),
    and each A row it meets as a float4 too where A is contiguous along K, so that one load
    of A serves `cpw` columns; with `stage`, the work-group stages A's rows in local memory
    a chunk of K at a time, read once for all its column groups. The lanes' partial sums are
    folded in local memory.
  - gemv_axpy: B contiguous along N (B stored K x N). A work-item owns four consecutive
    columns (one float4 of a row of B) and a slice of K; `axpy_slices` slices share a
    work-group and are folded in local memory; where the columns alone cannot fill the
    device, K is also split over work-groups, whose partial sums (scratch, split-major) are
    added in order by gemv_reduce.
  - gemv_reduce: the split partial sums of gemv_axpy, in order, scaled into C.
Each takes a batch along the launch's third dimension (one product: a batch of one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MAX_ROWS = 16
ROW_BUCKETS = (1, 2, 4, 8, 16)


def row_bucket(rows: int) -> int:
    """The compiled row count that serves `rows` (1 <= rows <= MAX_ROWS)."""
    for b in ROW_BUCKETS:
        if rows <= b:
            return b
    raise ValueError(f"{rows} rows is over the lane's {MAX_ROWS}")


@dataclass(frozen=True)
class GemvSchedule:
    """The lane's launch shape, per row bucket (1, 2, 4, 8, 16) where a tuple. dot: a
    work-group of `dot_items` work-items, column groups of `dot_lanes[bucket]` work-items
    sharing a column along K, each work-item `cpw[bucket]` columns, A staged in local memory
    where `stage[bucket]`, K split over work-groups where `dot_fill[bucket]`; axpy:
    `axpy_cols` work-items of four columns each x `axpy_slices` slices of K a work-group, K
    split over work-groups until about `axpy_fill` work-groups per compute unit run. The
    slices fold by a tree: a power of two."""

    # The GPU default (default_schedule) is measured, per bucket; these fields' defaults are
    # the one schedule of the earlier campaign (32 lanes x 8 groups, one column each).
    dot_lanes: tuple[int, int, int, int, int] = (32, 32, 32, 32, 32)
    dot_items: int = 256
    cpw: tuple[int, int, int, int, int] = (1, 1, 1, 1, 1)
    stage: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # A staged in local memory
    # K split over work-groups of gemv_dot until about `dot_fill` work-groups per compute
    # unit run (0: no split): with few columns (N = 4096 gives 128-512 work-groups) the
    # device holds too few loads in flight to stream B at its bandwidth
    dot_fill: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    axpy_cols: int = 32
    axpy_slices: int = 8
    # one fill for every bucket, or one a bucket (a single row streams B at its bandwidth
    # unsplit, where the split's second launch costs more than it gains; 16 rows compute
    # more and gain from the split: records/nvidia-h100/2026-12-07-plan-traces-6)
    axpy_fill: int | tuple[int, int, int, int, int] = 4
    # "lanes": gemv_dot, the work-group form above (GPUs); "vector": gemv_dotv, a work-item
    # per `cpw` columns walking K in float`vector` words (CPUs: explicit SIMD, contiguous
    # streams, no local memory or barriers, which a CPU runtime runs as loops)
    dot_form: str = "lanes"
    vector: int = 8
    # Products of at least this many rows (0: none) run on the float32 family's direct
    # (CPU-shaped) kernel, the rows as its N, one float-vector of them a K step (lanes/gemv.py
    # `_direct`): from a few rows on, a CPU computes more than it streams, and that kernel
    # keeps its accumulators in registers where the dot kernels spill them.
    direct_rows: int = 0
    # Products of up to this many rows (or columns) over MAX_ROWS (0: none) run on the lane as
    # blocks of MAX_ROWS rows, one launch of a batch whose large operand every block shares
    # (lanes/gemv.py `_stacked`): a classifier's 32 rows against its weight. Off unless a
    # device's table measured it.
    stack_rows: int = 0

    def key(self) -> str:
        staged = f"s{''.join(map(str, self.stage))}" if any(self.stage) else ""
        staged += f"f{''.join(map(str, self.dot_fill))}" if any(self.dot_fill) else ""
        lanes = self.dot_lanes
        if self.dot_form == "vector":
            dot = f"v{self.vector}"
        elif len(set(lanes)) == 1:  # the key of a schedule with one column-group shape
            dot = f"d{lanes[0]}x{self.dot_items // lanes[0]}"
        else:
            dot = f"d{'.'.join(map(str, lanes))}i{self.dot_items}"
        direct = f"-r{self.direct_rows}" if self.direct_rows else ""
        direct += f"-x{self.stack_rows}" if self.stack_rows else ""
        fills = self.axpy_fill
        axpy_fill = (fills if isinstance(fills, int)
                     else fills[0] if len(set(fills)) == 1 else "".join(map(str, fills)))
        return (f"gemv-{dot}c{''.join(map(str, self.cpw))}{staged}"
                f"-a{self.axpy_cols}x{self.axpy_slices}f{axpy_fill}{direct}")

    def lanes(self, rows: int) -> int:
        return self.dot_lanes[ROW_BUCKETS.index(row_bucket(rows))]

    def for_k(self, k: int) -> "GemvSchedule":
        """This schedule for a K that leaves lanes idle: where a column group's lanes would
        read fewer than SHORT_WORDS float4 words each, fewer lanes (a power of two, at least
        MIN_LANES) and so more column groups a work-group. A decode step's attention scores
        (K = 64 or 128, one row) had 64 lanes a column, half of them reading nothing."""
        if self.dot_form != "lanes":
            return self
        want = max(MIN_LANES, 1 << max(0, (k // (4 * SHORT_WORDS)).bit_length() - 1))
        lanes = tuple(min(n, want) for n in self.dot_lanes)
        return self if lanes == self.dot_lanes else replace(self, dot_lanes=lanes)

    def groups(self, rows: int) -> int:
        return self.dot_items // self.lanes(rows)

    def cols_per_item(self, rows: int) -> int:
        return self.cpw[ROW_BUCKETS.index(row_bucket(rows))]

    def staged(self, rows: int) -> int:
        return self.stage[ROW_BUCKETS.index(row_bucket(rows))]

    def axpy_fill_for(self, rows: int) -> int:
        """gemv_axpy's fill for products of `rows` rows (their bucket's, where one a bucket)."""
        fills = self.axpy_fill
        return fills if isinstance(fills, int) else fills[ROW_BUCKETS.index(row_bucket(rows))]

    def fill(self, rows: int) -> int:
        return self.dot_fill[ROW_BUCKETS.index(row_bucket(rows))]

    @property
    def axpy_group(self) -> int:
        return self.axpy_cols * self.axpy_slices

    def local_bytes(self) -> int:
        """The most local memory a kernel of this schedule asks for."""
        # per bucket: the fold's red[RCH * CPW][GROUPS][LANES] floats, the staged chunk's
        # as[RB][LANES * STEPS] float4 words
        dot = max(4 * min(ROW_CHUNK, rows) * self.cols_per_item(rows) * self.dot_items
                  + (16 * rows * self.lanes(rows) * STAGE_STEPS if self.staged(rows) else 0)
                  for rows in ROW_BUCKETS)
        axpy = 16 * ROW_CHUNK * self.axpy_group
        return max(dot, axpy)


def default_schedule(device_type: str) -> GemvSchedule:
    """The lane's schedule for a device without a measured one: the work-group form on GPUs,
    the vector form on CPUs. On GPUs, per row bucket, the fastest of 54 schedules over the
    H100's decode products (records/nvidia-h100/2026-12-06-plan-campaign-3, plan-2.json):
    one row 64 lanes x 2 columns, 1.01-1.04x torch; 4 to 16 rows 16 lanes x 2 columns with A
    staged and K split to ~4 work-groups per compute unit, 0.94x at 4 rows, 1.16x at 8 and
    0.80-1.04x at 16 (the earlier default 0.17-0.25x there). On PoCL, in the
    LLaMA-7B decode trace (records/cpu-pocl-amd-epyc/2026-12-06-model-traces), the
    work-group form ran 1x4096x4096 in 22.6 ms and 16x4096x4096 in 181, the vector form with
    four columns a work-item 4.4 and 69 (numpy 1.7 and 10.8). Since then (the same host,
    shared, process CPU time, best of 7): from 2 rows the direct GEMM kernel serves
    (`direct_rows`; 16x4096x4096 in 13 ms CPU against the vector form's 58), and a single
    row reads eight columns a work-item (4096x4096: 4.5 ms CPU against four columns' 6.0;
    11008x4096: 11.5-11.9 against 13.8; 32000x4096: 32.7 against 38.0)."""
    if device_type == "CPU":
        return GemvSchedule(dot_form="vector", cpw=(8, 4, 4, 4, 4),
                            direct_rows=DIRECT_ROWS_CPU)
    return GemvSchedule(dot_lanes=(64, 64, 16, 16, 16), cpw=(2, 2, 2, 2, 2),
                        stage=(0, 0, 1, 1, 1), dot_fill=(0, 0, 4, 4, 4))


DIRECT_ROWS_CPU = 2

ROW_CHUNK = 4  # rows folded per pass of gemv_dot's reduction (bounds its local memory)
STAGE_STEPS = 4  # float4 words of K per lane in one staged chunk of A
AXPY_UNROLL = 4  # rows of B a gemv_axpy work-item loads before using them
SHORT_WORDS = 4  # float4 words of K a lane of gemv_dot reads at least (GemvSchedule.for_k)
MIN_LANES = 4


def _words(width: int, element: str) -> str:
    """A float`width` vector of `element` (a format with one {} for the lane's index)."""
    return f"((float{width})(" + ", ".join(element.format(i) for i in range(width)) + "))"


def render(s: GemvSchedule, rows: int, b_vec: bool, a_vec: bool) -> str:
    """The lane's kernels for products of up to `rows` (a bucket) rows. `b_vec`: B's columns
    are read as float4 (their offset and stride are multiples of 4); `a_vec`: A's rows too (A
    contiguous along K, offset and row stride multiples of 4); the tail of K element by
    element."""
    cpw = s.cols_per_item(rows)
    fold = " ".join(f"sum += p.s{i:x};" for i in range(s.vector))  # the lanes, in order
    return f"""
#define RB {rows}
#define LANES {s.lanes(rows)}
#define GROUPS {s.groups(rows)}
#define CPW {cpw}
#define BVEC {int(b_vec)}
#define AVEC {int(a_vec)}
#define RCH {min(ROW_CHUNK, rows)}
#define AXPY_UNROLL {AXPY_UNROLL}
#define STAGE {s.staged(rows)}
#define STEPS {STAGE_STEPS}
#define COLS {s.axpy_cols}
#define SLICES {s.axpy_slices}
#define V {s.vector}
#define floatV float{s.vector}
// A float V word read as V scalar loads, which the compiler merges into one vector load:
// PoCL does not inline vloadN, and its call in the K loop spills the accumulators
// (kernels/gemm.py's _vload says the same of the GEMM kernel)
#define LOADV(p) {_words(s.vector, "(p)[{}]")}
#define GATHERV(p, st) {_words(s.vector, "(p)[{} * (st)]")}

// A batch runs along the launch's third dimension: each operand moves by its batch stride
// (elements; 0 broadcasts it), in 64 bits. The global id, not the group's: gemv_dotv leaves
// its local size to the runtime, which may group several products.
#define BATCH_OFFSETS {{ const long bi = get_global_id(2); A += bi * a_bs; B += bi * b_bs; C += bi * c_bs; }}

// ACC += the dot product of float4 words A and B, term by term in order (one chain: the
// staged and unstaged loops of gemv_dot sum alike)
#define FMA4(ACC, A, B) do {{ float s_ = (ACC); s_ = fma((A).x, (B).x, s_); \
  s_ = fma((A).y, (B).y, s_); s_ = fma((A).z, (B).z, s_); (ACC) = fma((A).w, (B).w, s_); }} while (0)

// Store alpha * sum + beta * C (C unread when beta == 0: a NaN there does not propagate).
#define STORE(p, v) do {{ float _o = alpha * (v); if (beta != 0.0f) _o += beta * (p); (p) = _o; }} while (0)

__kernel __attribute__((reqd_work_group_size(LANES, GROUPS, 1)))
void gemv_dot(const int R, const int N, const int K, const float alpha, const float beta,
              __global const float* restrict A, const long a_off, const long a_rs, const long a_ks,
              __global const float* restrict B, const long b_off, const long b_ns,
              __global float* C, const long c_off, const long c_rs, const long c_ns,
              const long a_bs, const long b_bs, const long c_bs,
              __global float* P, const int k_per_split)
{{
  BATCH_OFFSETS
  // get_num_groups(1) splits of K over work-groups: one writes C, several write their
  // partial sums to P[split][r][j], added in order by gemv_reduce
  const int split = get_group_id(1), splits = get_num_groups(1);
  const int k_begin = split * k_per_split, k_end = min(K, k_begin + k_per_split);
  P += (long)get_group_id(2) * splits * R * N;
  __local float red[RCH * CPW][GROUPS][LANES];
  const int t = get_local_id(0), g = get_local_id(1);
  const int j0 = (get_group_id(0) * GROUPS + g) * CPW;
  float acc[RB][CPW];
  __global const float* bc[CPW];
  #pragma unroll
  for (int c = 0; c < CPW; c++) {{
    // a column past N reads column N - 1 (valid memory) and is never stored
    bc[c] = B + b_off + (long)min(j0 + c, N - 1) * b_ns;
    #pragma unroll
    for (int r = 0; r < RB; r++) acc[r][c] = 0.0f;
  }}
  int k0 = k_begin;
#if BVEC
  // float4 words [qb, kv) of this split (k_per_split is a multiple of 4: qb is exact)
  const int qb = k_begin / 4, kv = k_end / 4;
#if STAGE
  // A's rows staged in local memory a chunk of K at a time (read once per work-group, not
  // once per column group), float4 words in lane order: no bank conflicts
  __local float4 as[RB][LANES * STEPS];
  const int tid = g * LANES + t;
  for (int q0 = qb; q0 < kv; q0 += LANES * STEPS) {{
    for (int i = tid; i < RB * LANES * STEPS; i += LANES * GROUPS) {{
      const int r = i / (LANES * STEPS), q = q0 + i % (LANES * STEPS);
      float4 v = (float4)(0.0f);
      if (r < R && q < kv) {{
        __global const float* ar = A + a_off + (long)r * a_rs + (long)(4 * q) * a_ks;
#if AVEC
        v = *(__global const float4*)ar;
#else
        v = (float4)(ar[0], ar[a_ks], ar[2 * a_ks], ar[3 * a_ks]);
#endif
      }}
      as[r][i % (LANES * STEPS)] = v;
    }}
    barrier(CLK_LOCAL_MEM_FENCE);
    #pragma unroll
    for (int st = 0; st < STEPS; st++) {{
      const int q = q0 + st * LANES + t;
      if (q < kv) {{
        float4 b[CPW];
        #pragma unroll
        for (int c = 0; c < CPW; c++) b[c] = ((__global const float4*)bc[c])[q];
        #pragma unroll
        for (int r = 0; r < RB; r++) {{
          if (r < R) {{
            const float4 a = as[r][st * LANES + t];
            #pragma unroll
            for (int c = 0; c < CPW; c++) FMA4(acc[r][c], a, b[c]);
          }}
        }}
      }}
    }}
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
#else
  for (int q = qb + t; q < kv; q += LANES) {{
    float4 b[CPW];
    #pragma unroll
    for (int c = 0; c < CPW; c++) b[c] = ((__global const float4*)bc[c])[q];
    __global const float* ak = A + a_off + (long)(4 * q) * a_ks;
    #pragma unroll
    for (int r = 0; r < RB; r++) {{
      if (r < R) {{
#if AVEC
        const float4 a = *(__global const float4*)(ak + (long)r * a_rs);
#else
        __global const float* ar = ak + (long)r * a_rs;
        const float4 a = (float4)(ar[0], ar[a_ks], ar[2 * a_ks], ar[3 * a_ks]);
#endif
        #pragma unroll
        for (int c = 0; c < CPW; c++) FMA4(acc[r][c], a, b[c]);
      }}
    }}
  }}
#endif
  k0 = 4 * kv;
#endif
  for (int k = k0 + t; k < k_end; k += LANES) {{
    __global const float* ak = A + a_off + (long)k * a_ks;
    #pragma unroll
    for (int r = 0; r < RB; r++) {{
      if (r < R) {{
        const float a = ak[(long)r * a_rs];
        #pragma unroll
        for (int c = 0; c < CPW; c++) acc[r][c] = fma(a, bc[c][k], acc[r][c]);
      }}
    }}
  }}
  // fold the lanes: RCH rows at a time through local memory, each work-item summing, in
  // lane order, the partial sums of the outputs it owns
  #pragma unroll
  for (int r0 = 0; r0 < RB; r0 += RCH) {{
    #pragma unroll
    for (int rr = 0; rr < RCH; rr++)
      #pragma unroll
      for (int c = 0; c < CPW; c++) red[rr * CPW + c][g][t] = acc[r0 + rr][c];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int v = t; v < RCH * CPW; v += LANES) {{
      const int r = r0 + v / CPW, j = j0 + v % CPW;
      float s = 0.0f;
      for (int l = 0; l < LANES; l++) s += red[v][g][l];
      if (r < R && j < N) {{
        if (splits == 1) STORE(C[c_off + (long)r * c_rs + (long)j * c_ns], s);
        else P[((long)split * R + r) * N + j] = s;
      }}
    }}
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
}}

// The vector form: a work-item per CPW columns, K walked in float V words (the A rows and
// B columns read as contiguous streams where their K stride is 1), V partial sums a
// product, added in lane order at the end. No local memory, no barrier.
__kernel void gemv_dotv(const int R, const int N, const int K, const float alpha, const float beta,
              __global const float* restrict A, const long a_off, const long a_rs, const long a_ks,
              __global const float* restrict B, const long b_off, const long b_ns,
              __global float* C, const long c_off, const long c_rs, const long c_ns,
              const long a_bs, const long b_bs, const long c_bs)
{{
  BATCH_OFFSETS
  const int j0 = get_global_id(0) * CPW;
  if (j0 >= N) return;
  floatV acc[RB][CPW];
  __global const float* bc[CPW];
  #pragma unroll
  for (int c = 0; c < CPW; c++) {{
    bc[c] = B + b_off + (long)min(j0 + c, N - 1) * b_ns;
    #pragma unroll
    for (int r = 0; r < RB; r++) acc[r][c] = (floatV)(0.0f);
  }}
  const int kv = K / V;
  for (int q = 0; q < kv; q++) {{
    floatV b[CPW];
    #pragma unroll
    for (int c = 0; c < CPW; c++) b[c] = LOADV(bc[c] + q * V);
    #pragma unroll
    for (int r = 0; r < RB; r++) {{
      if (r < R) {{
        __global const float* ar = A + a_off + (long)r * a_rs + (long)(q * V) * a_ks;
        const floatV a = a_ks == 1 ? LOADV(ar) : GATHERV(ar, a_ks);
        #pragma unroll
        for (int c = 0; c < CPW; c++) acc[r][c] = fma(a, b[c], acc[r][c]);
      }}
    }}
  }}
  for (int r = 0; r < R; r++) {{
    __global const float* ar = A + a_off + (long)r * a_rs;
    for (int c = 0; c < CPW && j0 + c < N; c++) {{
      const floatV p = acc[r][c];
      float sum = 0.0f;
      {fold}
      for (int k = kv * V; k < K; k++) sum = fma(ar[(long)k * a_ks], bc[c][k], sum);
      STORE(C[c_off + (long)r * c_rs + (long)(j0 + c) * c_ns], sum);
    }}
  }}
}}

// Four columns a work-item, SLICES slices of K a work-group, get_num_groups(1) splits of K
// over work-groups. One split: the sums go to C; several: to P[split][r][j], folded by
// gemv_reduce.
__kernel __attribute__((reqd_work_group_size(COLS, SLICES, 1)))
void gemv_axpy(const int R, const int N, const int K, const float alpha, const float beta,
               __global const float* restrict A, const long a_off, const long a_rs, const long a_ks,
               __global const float* restrict B, const long b_off, const long b_ks,
               __global float* C, const long c_off, const long c_rs, const long c_ns,
               const long a_bs, const long b_bs, const long c_bs,
               __global float* P, const int k_per_split)
{{
  BATCH_OFFSETS
  P += (long)get_group_id(2) * get_num_groups(1) * R * N;
  __local float4 part[SLICES][RCH][COLS];
  const int tx = get_local_id(0), ty = get_local_id(1);
  const int j = (get_group_id(0) * COLS + tx) * 4;
  const int split = get_group_id(1), splits = get_num_groups(1);
  const int k_begin = split * k_per_split, k_end = min(K, k_begin + k_per_split);
  float4 acc[RB];
  #pragma unroll
  for (int r = 0; r < RB; r++) acc[r] = (float4)(0.0f);
  if (j < N) {{
    const bool whole = BVEC && j + 4 <= N;
    int k = k_begin + ty;
    if (whole) {{
      // A work-item takes AXPY_UNROLL consecutive rows of B a step (the slices interleave
      // by such runs), all loaded before any is used: with one row a step, one load was in
      // flight a work-item (a short split latency-bound), and each row of B cost R scalar
      // loads of A; a run reads A's rows as one float4 where A is contiguous along K (AVEC)
      const int run = AXPY_UNROLL * SLICES;
      const int k_runs = k_begin + (k_end - k_begin) / run * run;
      for (int k0 = k_begin + ty * AXPY_UNROLL; k0 < k_runs; k0 += run) {{
        float4 b[AXPY_UNROLL];
        #pragma unroll
        for (int u = 0; u < AXPY_UNROLL; u++)
          b[u] = *(__global const float4*)(B + b_off + (long)(k0 + u) * b_ks + j);
        #pragma unroll
        for (int r = 0; r < RB; r++) {{
          if (r < R) {{
            __global const float* ar = A + a_off + (long)r * a_rs + (long)k0 * a_ks;
#if AVEC && AXPY_UNROLL == 4
            const float4 a = *(__global const float4*)ar;
            const float av[4] = {{a.x, a.y, a.z, a.w}};
#else
            float av[AXPY_UNROLL];
            #pragma unroll
            for (int u = 0; u < AXPY_UNROLL; u++) av[u] = ar[(long)u * a_ks];
#endif
            #pragma unroll
            for (int u = 0; u < AXPY_UNROLL; u++) acc[r] = fma((float4)(av[u]), b[u], acc[r]);
          }}
        }}
      }}
      k = k_runs + ty;  // the rest of the split, a row a slice
    }}
    for (; k < k_end; k += SLICES) {{
      __global const float* bk = B + b_off + (long)k * b_ks + j;
      float4 b;
      if (whole) b = *(__global const float4*)bk;
      else b = (float4)(bk[0], j + 1 < N ? bk[1] : 0.0f, j + 2 < N ? bk[2] : 0.0f,
                        j + 3 < N ? bk[3] : 0.0f);
      __global const float* ak = A + a_off + (long)k * a_ks;
      #pragma unroll
      for (int r = 0; r < RB; r++)
        if (r < R) acc[r] = fma((float4)(ak[(long)r * a_rs]), b, acc[r]);
    }}
  }}
  // fold the slices by a tree in local memory, RCH rows at a time
  #pragma unroll
  for (int r0 = 0; r0 < RB; r0 += RCH) {{
    #pragma unroll
    for (int rr = 0; rr < RCH; rr++) part[ty][rr][tx] = acc[r0 + rr];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = SLICES / 2; step > 0; step >>= 1) {{
      if (ty < step)
        #pragma unroll
        for (int rr = 0; rr < RCH; rr++) part[ty][rr][tx] += part[ty + step][rr][tx];
      barrier(CLK_LOCAL_MEM_FENCE);
    }}
    if (ty == 0 && j < N) {{
      for (int rr = 0; rr < RCH && r0 + rr < R; rr++) {{
        const int r = r0 + rr;
        const float4 s = part[0][rr][tx];
        const float v[4] = {{s.x, s.y, s.z, s.w}};
        for (int e = 0; e < 4 && j + e < N; e++) {{
          if (splits == 1) STORE(C[c_off + (long)r * c_rs + (long)(j + e) * c_ns], v[e]);
          else P[((long)split * R + r) * N + j + e] = v[e];
        }}
      }}
    }}
    barrier(CLK_LOCAL_MEM_FENCE);
  }}
}}

__kernel void gemv_reduce(const int R, const int N, const int splits, const float alpha,
                          const float beta, __global const float* restrict P,
                          __global float* C, const long c_off, const long c_rs, const long c_ns,
                          const long c_bs)
{{
  const long bi = get_group_id(2);
  P += bi * splits * R * N;
  C += bi * c_bs;
  const int j = get_global_id(0), r = get_global_id(1);
  if (j >= N || r >= R) return;
  float s = 0.0f;
  for (int p = 0; p < splits; p++) s += P[((long)p * R + r) * N + j];
  STORE(C[c_off + (long)r * c_rs + (long)j * c_ns], s);
}}
"""
