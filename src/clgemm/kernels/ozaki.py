"""float32 GEMM emulated on the integer tensor cores: an Ozaki-style int8 slice scheme.

Three kernels, one program (see clgemm/ozaki.py for the launcher):

  clgemm_oz_scale   per row of op(A) and per column of op(B): max |x| (its float bits, so
                    that NaN/Inf are seen: bits >= 0x7f800000 raise the non-finite flag),
                    K cut into slabs for parallelism (partial maxima; split reduces them).
  clgemm_oz_split   each element, scaled by its row's (column's) power of two 2^-e with
                    max |x| < 2^e, becomes S balanced int8 digits:
                        r1 = x 2^(6-e);  d_t = rint(r_t);  r_(t+1) = (r_t - d_t) 2^7
                    so x = 2^(e-6) sum_t d_t 2^(-7(t-1)) + (remainder <= 2^(e-7S)), every
                    |d_t| <= 64 (|r1| < 64; later |r_t| <= 64). All steps are exact in float32.
                    Digits go to S int8 planes, k contiguous, zero-padded to whole tiles
                    (rows to the block size, K to the block depth): the product kernel has
                    no edge cases on its loads.
  clgemm_oz       C = alpha 2^(ea+eb-12) sum_(w=2..L+1) 2^(-7(w-2)) P_w + beta C with
                    P_w = sum_(t+u=w) D_t^A D_u^B, each P_w an exact int32 accumulator fed by
                    `mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32`; the recombination runs
                    in float64 in the epilogue (Horner from the smallest weight; exact for
                    L <= 4) and rounds to float32 once.

Accuracy. The representation error of an element is <= 2^(e-7S) <= 2^(1-7S) |row max|: it is
relative to its row's (column's) largest magnitude, not to itself, so an element 2^d below
its row max keeps about 7S - 1 - d significant bits (S = 4: 27 - d; float32 has 24). The dropped pairs (t + u > L + 1) cost
about (S-1) 2^(-7L) of |a_row|max |b_col|max per term. Products whose magnitude is set by the
large entries (Frobenius norm) stay at float32 level for S = L = 4 (measured, tests); small
entries of C built only from the small entries of a wide-exponent row lose relative accuracy.

Exactness of int32 accumulation: |P_w| <= pairs(w) K 64^2 with pairs(w) <= min(S, L), so
K <= (2^31 - 1) / (min(S, L) 2^12) (S = L = 4: 131071); the launcher cuts longer K into chunks
(each chunk scaled on its own, summed with beta = 1).

Fragments of m16n8k32 .s8 (PTX ISA), g = lane >> 2, q = lane & 3, 4 int8 per register,
lowest k in the lowest byte:
  A (16x32, row): a0 (g, 4q..4q+3)  a1 (g+8, 4q..)  a2 (g, 16+4q..)  a3 (g+8, 16+4q..)
  B (32x8, col):  b0 (k = 4q.., n = g)  b1 (k = 16+4q.., n = g)
  C/D (16x8 s32): c0 (g, 2q)  c1 (g, 2q+1)  c2 (g+8, 2q)  c3 (g+8, 2q+1)
Local tiles hold rows of BK bytes (k contiguous) with no pad: 16-byte chunk c of row r is
stored at chunk c ^ ((r >> SH) & (CPR-1)) (CPR = BK/16 chunks per row, SH = log2(8/CPR)), so
the 8 rows x 4 words that a fragment load touches fall on 32 distinct banks, and cp.async
still writes whole 16-byte chunks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Mapping

from ..errors import ScheduleError
from .tensorcore import RASTER_TILE_C, WarpTiling

KERNEL_SCALE = "clgemm_oz_scale"
KERNEL_SPLIT = "clgemm_oz_split"
KERNEL_PRODUCT = "clgemm_oz"
SPLIT_TILE = 32  # the split kernels' tile: 32 outer indices x 32 k
DIGIT_BOUND = 64  # |d_t| <= 64


@dataclass(frozen=True, order=True)
class OzSchedule(WarpTiling):
    """One Ozaki product kernel. A work-group of warps_m x warps_n warps computes a
    block_m x block_n tile of C from S = `slices` int8 planes per operand, keeping the
    weights w = 2 .. levels + 1 (pairs t + u = w); K advances block_k bytes per stage."""

    slices: int = 4
    levels: int = 4
    block_m: int = 64
    block_n: int = 64
    block_k: int = 32
    warps_m: int = 2
    warps_n: int = 2
    stages: int = 3
    raster: int = 1

    def pairs(self) -> list[tuple[int, int]]:
        """(t, u), 1-based slice indices, with t + u <= levels + 1, grouped by weight."""
        s = self.slices
        return [(t, w - t) for w in range(2, self.levels + 2)
                for t in range(1, s + 1) if 1 <= w - t <= s]

    @property
    def products(self) -> int:
        return len(self.pairs())

    def max_pairs_per_level(self) -> int:
        return max(sum(1 for t, u in self.pairs() if t + u == w)
                   for w in range(2, self.levels + 2))

    def k_limit(self) -> int:
        """Largest K (a multiple of block_k) whose int32 accumulation is exact."""
        k = (2**31 - 1) // (self.max_pairs_per_level() * DIGIT_BOUND**2)
        return k - k % self.block_k

    def local_bytes(self) -> int:
        return self.stages * self.slices * (self.block_m + self.block_n) * self.block_k

    def registers_estimate(self) -> int:
        acc = self.levels * self.mt * self.nt * 4
        frag = self.slices * self.nt * 2 + self.mt * 4
        return acc + frag + 24

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return (f"oz-s{self.slices}l{self.levels}-b{self.block_m}x{self.block_n}x{self.block_k}"
                f"-w{self.warps_m}x{self.warps_n}-p{self.stages}-r{self.raster}")

    @classmethod
    def from_key(cls, key: str) -> "OzSchedule":
        try:
            head, sl, b, w, p, r = key.split("-")
            if head != "oz":
                raise ValueError(head)
            s, lv = (int(x) for x in sl[1:].split("l"))
            bm, bn, bk = (int(x) for x in b[1:].split("x"))
            wm, wn = (int(x) for x in w[1:].split("x"))
            return cls(s, lv, bm, bn, bk, wm, wn, int(p[1:]), int(r[1:]))
        except (ValueError, IndexError) as exc:
            raise ScheduleError(f"bad Ozaki schedule key {key!r}") from exc

    @classmethod
    def from_dict(cls, values: Mapping) -> "OzSchedule":
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ScheduleError(f"unknown OzSchedule parameter(s) {sorted(unknown)}")
        return cls(**{k: int(v) for k, v in values.items()})


MAX_REGISTERS_HINT = 230


def violations(s: OzSchedule, local_mem_bytes: int = 49152,
               max_work_group_size: int = 1024) -> list[str]:
    bad = []
    if not 1 <= s.slices <= 6:
        bad.append("slices in 1..6")
    if not 1 <= s.levels <= 2 * s.slices - 1:
        bad.append("levels in 1..2*slices-1")
    if s.block_k not in (32, 64, 128):
        bad.append("block_k is 32, 64 or 128")
    if s.block_m % 32 or s.block_n % 32 or s.block_m <= 0 or s.block_n <= 0:
        bad.append("blocks are multiples of 32 (the split tile)")
    if s.warps_m < 1 or s.warps_n < 1 or s.block_m % s.warps_m or s.block_n % s.warps_n:
        bad.append("warps divide the block")
    elif s.warp_m % 16 or s.warp_n % 8:
        bad.append("warp tile is whole 16x8 mma tiles")
    if s.threads > max_work_group_size:
        bad.append("work-group size")
    if s.stages < 2:
        bad.append("at least two stages")
    if s.raster < 1:
        bad.append("raster >= 1")
    if not bad:
        for rows in (s.block_m, s.block_n):
            if (s.slices * rows * s.block_k // 16) % s.threads:
                bad.append("tiles split evenly into 16-byte chunks per thread")
                break
        if s.local_bytes() > local_mem_bytes:
            bad.append("local memory")
        if s.registers_estimate() > MAX_REGISTERS_HINT:
            bad.append("registers")
    return bad


def check(s: OzSchedule, local_mem_bytes: int = 49152, max_work_group_size: int = 1024) -> None:
    bad = violations(s, local_mem_bytes, max_work_group_size)
    if bad:
        raise ScheduleError(f"Ozaki schedule {s.key()} is not valid here: breaks " + ", ".join(bad))


@dataclass(frozen=True)
class OzDialect:
    """How the PTX primitives are spelled; `emulate` swaps in plain OpenCL C (tests)."""

    emulate: bool = False
    volatile_mma: bool = True  # `asm volatile` on the mma (False lets the compiler move it)


_PRELUDE_PTX = r"""
#define IMMA(d0, d1, d2, d3, a0, a1, a2, a3, b0, b1) \
  asm MMA_VOLATILE("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 " \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};" \
               : "=r"(d0), "=r"(d1), "=r"(d2), "=r"(d3) \
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), \
                 "r"(d0), "r"(d1), "r"(d2), "r"(d3))
#define SHARED_ADDR(p) ((uint)(size_t)(p))
#define CP16(base, dst, src) \
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src) : "memory")
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
"""

# Plain OpenCL C stand-ins (PTX's fragment layouts, exchanged through local memory; copies
# synchronous): they check indexing, swizzle, pipeline and recombination on any device.
_PRELUDE_EMULATED = r"""
inline int dot4_(uint a, uint b) {
  const char4 x = as_char4(a), y = as_char4(b);
  return (int)x.s0 * y.s0 + (int)x.s1 * y.s1 + (int)x.s2 * y.s2 + (int)x.s3 * y.s3;
}
#define XA(T, I, ROW, W) xa[(((T) * MT + (I)) * 16 + (ROW)) * 8 + (W)]
#define XB(U, J, ROW, W) xb[(((U) * NTL + (J)) * 8 + (ROW)) * 8 + (W)]
/* the warp's fragments were exchanged (PTX layouts) into xa/xb: one m16n8k32 from there */
#define IMMA_X(d0, d1, d2, d3, T, I, U, J) do { \
  int s0_ = 0, s1_ = 0, s2_ = 0, s3_ = 0; \
  for (int w_ = 0; w_ < 8; w_++) { \
    s0_ += dot4_(XA(T, I, g, w_), XB(U, J, 2 * q, w_)); \
    s1_ += dot4_(XA(T, I, g, w_), XB(U, J, 2 * q + 1, w_)); \
    s2_ += dot4_(XA(T, I, g + 8, w_), XB(U, J, 2 * q, w_)); \
    s3_ += dot4_(XA(T, I, g + 8, w_), XB(U, J, 2 * q + 1, w_)); } \
  d0 += s0_; d1 += s1_; d2 += s2_; d3 += s3_; } while (0)
#define SHARED_ADDR(p) 0u
#define CP16(base, dst, src) do { __local uint* d_ = (base) + (dst) / 4; \
  d_[0] = (src)[0]; d_[1] = (src)[1]; d_[2] = (src)[2]; d_[3] = (src)[3]; } while (0)
#define CP_COMMIT()
#define CP_WAIT(n)
"""


def render_split(slices: int, kcont_a: bool, kcont_b: bool) -> str:
    """The scale and split kernels for both operands (one launch each: groups [0, ga) work
    on op(A), the rest on op(B)). Element (o, k) of an operand (o: row of op(A) or column of
    op(B)) is at off + o*ld + k when k is contiguous in storage, else off + k*ld + o."""
    T = SPLIT_TILE
    out = [f"// clgemm Ozaki split, {slices} slices, kcont_a={int(kcont_a)} kcont_b={int(kcont_b)}",
           f"#define S {slices}\n#define T {T}"]
    # per thread: element i (0..3) of a 32 x 32 tile; lx = lid & 31, ly = lid >> 5
    for name, kc in (("A", kcont_a), ("B", kcont_b)):
        if kc:  # lanes along k (coalesced), rows along o
            out.append(f"#define {name}_O(I) (ly + 8 * (I))\n#define {name}_K(I) (lx)\n"
                       f"#define {name}_AT(o, k) ((long)(o) * ld + (k))")
        else:
            out.append(f"#define {name}_O(I) (lx)\n#define {name}_K(I) (ly + 8 * (I))\n"
                       f"#define {name}_AT(o, k) ((long)(k) * ld + (o))")
    out.append(r"""
inline int oz_exponent(uint bits) {  /* e with max < 2^e (0 for an all-zero row) */
  return bits == 0u ? 0 : ilogb(as_float(bits)) + 1;
}

#define SCALE_BODY(X) { \
  uint m[4] = {0u, 0u, 0u, 0u}; \
  for (int k0 = kb; k0 < ke; k0 += T) { \
    for (int i = 0; i < 4; i++) { \
      const int o = o0 + X##_O(i), k = k0 + X##_K(i); \
      if (o < n_outer && k < ke) m[i] = max(m[i], as_uint(fabs(x[X##_AT(o, k)]))); \
    } \
  } \
  for (int i = 0; i < 4; i++) red[X##_O(i)][X##_K(i)] = m[i]; \
}

/* partial maxima: group (tile, slab) reduces 32 outer indices over one K slab into
   part[slab * n_pad + o] (float bits of max |x|) */
__attribute__((reqd_work_group_size(256, 1, 1)))
__kernel void clgemm_oz_scale(const int K, const int ga, const int nslab, const int slab,
    __global const float* restrict A, const int lda, const int a_off, const int M, const int MP,
    __global const float* restrict B, const int ldb, const int b_off, const int N, const int NP,
    __global uint* apart, __global uint* bpart, __global int* nonfinite)
{
  __local uint red[T][T + 1];
  const int lid = get_local_id(0), lx = lid & 31, ly = lid >> 5;
  const int isA = get_group_id(0) < ga * nslab;
  const int grp = isA ? get_group_id(0) : get_group_id(0) - ga * nslab;
  const int o0 = (grp / nslab) * T, sl = grp % nslab;
  const int kb = sl * slab, ke = min(K, kb + slab);
  const int n_outer = isA ? M : N;
  const int ld = isA ? lda : ldb;
  __global const float* x = isA ? A + a_off : B + b_off;
  if (isA) SCALE_BODY(A) else SCALE_BODY(B)
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < T) {
    uint v = 0u;
    for (int j = 0; j < T; j++) v = max(v, red[lid][j]);
    (isA ? apart : bpart)[(long)sl * (isA ? MP : NP) + o0 + lid] = v;
    if (v >= 0x7f800000u) nonfinite[0] = 1;
  }
}

#define SPLIT_BODY(X) { \
  for (int i = 0; i < 4; i++) { \
    const int ol = X##_O(i), kl = X##_K(i); \
    const int o = o0 + ol, k = k0 + kl; \
    const float v = (o < n_outer && k < K) ? x[X##_AT(o, k)] : 0.0f; \
    float r = ldexp(v, 6 - e_loc[ol]); \
    for (int t = 0; t < S; t++) { \
      const float d = rint(r); \
      dig[(t * T + ol) * T + kl] = (char)(int)d; \
      r = (r - d) * 128.0f; \
    } \
  } \
}

__attribute__((reqd_work_group_size(256, 1, 1)))
__kernel void clgemm_oz_split(const int K, const int KP, const int ga, const int gka,
    const int gkb, const int nslab,
    __global const float* restrict A, const int lda, const int a_off, const int M, const int MP,
    __global const float* restrict B, const int ldb, const int b_off, const int N, const int NP,
    __global const uint* apart, __global const uint* bpart,
    __global uint* amax, __global uint* bmax,
    __global uint* A8, __global uint* B8)
{
  __local uint words[S * T * T / 4];
  __local int e_loc[T];
  __local char* dig = (__local char*)words;
  const int lid = get_local_id(0), lx = lid & 31, ly = lid >> 5;
  const int isA = get_group_id(0) < ga;
  const int grp = isA ? get_group_id(0) : get_group_id(0) - ga;
  const int gk = isA ? gka : gkb;
  const int o0 = (grp / gk) * T, k0 = (grp % gk) * T;
  const int n_outer = isA ? M : N;
  const int ld = isA ? lda : ldb;
  __global const float* x = isA ? A + a_off : B + b_off;
  if (lid < T) {  /* reduce the slabs' maxima; the first k-tile's group records the total */
    __global const uint* part = isA ? apart : bpart;
    const int np = isA ? MP : NP;
    uint v = 0u;
    for (int j = 0; j < nslab; j++) v = max(v, part[(long)j * np + o0 + lid]);
    e_loc[lid] = oz_exponent(v);
    if (k0 == 0) (isA ? amax : bmax)[o0 + lid] = v;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (isA) SPLIT_BODY(A) else SPLIT_BODY(B)
  barrier(CLK_LOCAL_MEM_FENCE);
  const long plane = (long)(isA ? MP : NP) * (KP / 4);
  __global uint* dst = (isA ? A8 : B8) + (long)(o0 + (lid >> 3)) * (KP / 4) + k0 / 4 + (lid & 7);
  for (int t = 0; t < S; t++) dst[t * plane] = words[t * (T * T / 4) + lid];
}
""")
    return "\n".join(out) + "\n"


def render_product(s: OzSchedule, dialect: OzDialect = OzDialect()) -> str:
    """OpenCL C source of one Ozaki product kernel (all sizes fixed at compile time; loops
    over slices, mma tiles, k32 steps and copy chunks are `#pragma unroll` loops)."""
    check(s, local_mem_bytes=1 << 30, max_work_group_size=1 << 20)
    cpr = s.block_k // 16
    sh = {2: 2, 4: 1, 8: 0}[cpr]
    out: list[str] = []
    emit = out.append
    emit(f"// clgemm Ozaki product kernel {s.key()}")
    emit("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    emit("#define MMA_VOLATILE " + ("volatile" if dialect.volatile_mma else ""))
    emit(_PRELUDE_EMULATED if dialect.emulate else _PRELUDE_PTX)
    consts = {
        "S": s.slices, "L": s.levels, "BM": s.block_m, "BN": s.block_n, "BK": s.block_k,
        "RW": s.block_k // 4, "CPR": cpr, "SH": sh, "NT": s.threads, "WARPS_M": s.warps_m,
        "WARP_M": s.warp_m, "WARP_N": s.warp_n, "MT": s.mt, "NTL": s.nt,
        "STAGES": s.stages, "RASTER": s.raster,
        "STA": s.slices * s.block_m * s.block_k // 4, "STB": s.slices * s.block_n * s.block_k // 4,
        "A_CH": s.slices * s.block_m * cpr // s.threads,
        "B_CH": s.slices * s.block_n * cpr // s.threads,
    }
    emit("\n".join(f"#define {k} {v}" for k, v in consts.items()))
    emit("#define SWZ(row, c) ((c) ^ (((row) >> SH) & (CPR - 1)))")
    emit("__attribute__((reqd_work_group_size(NT, 1, 1)))")
    emit(f"__kernel void {KERNEL_PRODUCT}(const int M, const int N, const int KP,\n"
         "    const float alpha, const float beta,\n"
         "    __global const uint* restrict A8, const long plane_a,\n"
         "    __global const uint* restrict B8, const long plane_b,\n"
         "    __global const uint* restrict amax, __global const uint* restrict bmax,\n"
         "    __global float* C, const int ldc, const int c_off,\n"
         "    __global int* nonfinite)\n{")
    emit("  __local uint As[STAGES * STA] __attribute__((aligned(16)));")
    emit("  __local uint Bs[STAGES * STB] __attribute__((aligned(16)));")
    if dialect.emulate:
        per_warp = s.slices * (s.mt * 128 + s.nt * 64)
        emit(f"  __local uint xch[{s.warps_m * s.warps_n * per_warp}];")
    emit("""  C += c_off;
  const int tid = get_local_id(0);
  const int lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int wm = warp % WARPS_M, wn = warp / WARPS_M;
""" + RASTER_TILE_C + """
  const int KT = KP / BK, KW = KP / 4;
  const int swz = (g >> SH) & (CPR - 1);
  // this thread's 16-byte chunk column (NT is a multiple of CPR) and its sources
  const int cc = tid % CPR;
  __global const uint* gA = A8 + (long)m0 * KW + cc * 4;
  __global const uint* gB = B8 + (long)n0 * KW + cc * 4;
  int acc[L][MT][NTL][4];
  #pragma unroll
  for (int l = 0; l < L; l++)
  #pragma unroll
  for (int i = 0; i < MT; i++)
  #pragma unroll
  for (int j = 0; j < NTL; j++)
  #pragma unroll
  for (int e = 0; e < 4; e++) acc[l][i][j][e] = 0;
  const int a_frag = (wm * WARP_M + g) * RW + q;
  const int b_frag = (wn * WARP_N + g) * RW + q;
  const uint sA = SHARED_ADDR(As), sB = SHARED_ADDR(Bs);""")
    emit("""  for (int p = 0; p < STAGES - 1; p++) {
    if (p < KT) {""")
    emit(_copy_tile("p", "p * BK", "      "))
    emit("""    }
    CP_COMMIT();
  }
  int rs = 0, ws = STAGES - 1;
  for (int kt = 0; kt < KT; kt++) {""")
    emit(f"    CP_WAIT({s.stages - 2});")
    emit("""    barrier(CLK_LOCAL_MEM_FENCE);
    if (kt + STAGES - 1 < KT) {""")
    emit(_copy_tile("ws", "(kt + STAGES - 1) * BK", "      "))
    emit("""    }
    CP_COMMIT();""")
    emit(_compute(s, dialect.emulate))
    emit("""    rs = (rs + 1 == STAGES) ? 0 : rs + 1;
    ws = (ws + 1 == STAGES) ? 0 : ws + 1;
  }
  CP_WAIT(0);""")
    # epilogue: Horner in float64 from the smallest weight, scale, alpha/beta, one rounding
    emit("""  const int crow = m0 + wm * WARP_M + g, ccol = n0 + wn * WARP_N + 2 * q;
  int bad = 0;
  #pragma unroll
  for (int i = 0; i < MT; i++) {
    #pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = crow + i * 16 + 8 * h;
      const uint ab = amax[r];
      const int ea = ab == 0u ? 0 : ilogb(as_float(ab)) + 1;
      if (r < M) {
        __global float* cp = C + (long)r * ldc;
        #pragma unroll
        for (int j = 0; j < NTL; j++) {
          #pragma unroll
          for (int e = 0; e < 2; e++) {
            const int col = ccol + j * 8 + e;
            const uint bb = bmax[col];
            const int eb = bb == 0u ? 0 : ilogb(as_float(bb)) + 1;
            double v = (double)acc[L - 1][i][j][2 * h + e];
            #pragma unroll
            for (int l = L - 2; l >= 0; l--) v = fma(v, 0x1p-7, (double)acc[l][i][j][2 * h + e]);
            v = (double)alpha * ldexp(v, ea + eb - 12);
            if (col < N) {
              if (beta != 0.0f) v = fma((double)beta, (double)cp[col], v);
              const float f = (float)v;
              if (!isfinite(f)) bad = 1;
              cp[col] = f;
            }
          }
        }
      }
    }
  }
  if (bad) nonfinite[0] = 1;
}""")
    return "\n".join(out) + "\n"


def _copy_tile(stage: str, k0: str, indent: str) -> str:
    """cp.async of the k-tile starting at byte k0 of every slice into stage `stage`: chunk
    id = c * NT + tid runs over (slice, row, 16-byte column), the column is tid % CPR."""
    code = []
    for name, rows, plane in (("A", "BM", "plane_a"), ("B", "BN", "plane_b")):
        base, stg, local = ("sA", "STA", "As") if name == "A" else ("sB", "STB", "Bs")
        code += ["#pragma unroll",
                 f"for (int c = 0; c < {name}_CH; c++) {{",
                 "  const int id = (c * NT + tid) / CPR;",
                 f"  const int sl = id / {rows}, row = id % {rows};",
                 f"  CP16({local}, {base} + (uint)((({stage}) * {stg} + sl * {rows} * RW + row * RW"
                 " + SWZ(row, cc) * 4) * 4),",
                 f"       g{name} + sl * {plane} + (long)row * KW + ({k0}) / 4);",
                 "}"]
    return "\n".join(indent + line for line in code)


def _compute(s: OzSchedule, emulate: bool = False) -> str:
    """One k-tile from stage `rs`: per k32 step, the B fragments of every slice, then per A
    slice t its fragments and the mma of every kept pair (t, u) into level t + u - 2.
    Emulated: the same fragment loads, exchanged through local memory in PTX's layouts
    (one barrier pair per k32 step), then every mma computed from the exchange."""
    per_warp = s.slices * (s.mt * 128 + s.nt * 64)
    lines = ["    { const __local uint* Ap = As + rs * STA + a_frag;",
             "      const __local uint* Bp = Bs + rs * STB + b_frag;",
             "      #pragma unroll",
             "      for (int kk = 0; kk < BK / 32; kk++) {",
             "        const int c0 = ((2 * kk) ^ swz) * 4, c1 = ((2 * kk + 1) ^ swz) * 4;",
             "        uint b[S][NTL][2];",
             "        #pragma unroll",
             "        for (int u = 0; u < S; u++)",
             "        #pragma unroll",
             "        for (int j = 0; j < NTL; j++) {",
             "          b[u][j][0] = Bp[u * BN * RW + j * 8 * RW + c0];",
             "          b[u][j][1] = Bp[u * BN * RW + j * 8 * RW + c1];",
             "        }"]
    if emulate:
        lines += [f"        __local uint* xa = xch + warp * {per_warp};",
                  f"        __local uint* xb = xa + {s.slices * s.mt * 128};",
                  "        for (int u = 0; u < S; u++) for (int j = 0; j < NTL; j++) {",
                  "          XB(u, j, g, q) = b[u][j][0]; XB(u, j, g, q + 4) = b[u][j][1]; }"]
    for t in range(1, s.slices + 1):
        us = [u for (tt, u) in s.pairs() if tt == t]
        if not us:
            continue
        lines += ["        {",
                  "          uint a[MT][4];",
                  "          #pragma unroll",
                  "          for (int i = 0; i < MT; i++) {",
                  f"            const __local uint* ap = Ap + {t - 1} * BM * RW + i * 16 * RW;",
                  "            a[i][0] = ap[c0]; a[i][1] = ap[8 * RW + c0];",
                  "            a[i][2] = ap[c1]; a[i][3] = ap[8 * RW + c1];",
                  "          }"]
        if emulate:
            lines += ["          for (int i = 0; i < MT; i++) {",
                      f"            XA({t - 1}, i, g, q) = a[i][0]; XA({t - 1}, i, g + 8, q) = a[i][1];",
                      f"            XA({t - 1}, i, g, q + 4) = a[i][2];"
                      f" XA({t - 1}, i, g + 8, q + 4) = a[i][3]; }}",
                      "        }"]
            continue
        lines += ["          #pragma unroll",
                  "          for (int i = 0; i < MT; i++)",
                  "          #pragma unroll",
                  "          for (int j = 0; j < NTL; j++) {"]
        for u in us:
            lv = t + u - 2
            lines.append(f"            IMMA(acc[{lv}][i][j][0], acc[{lv}][i][j][1], acc[{lv}][i][j][2],"
                         f" acc[{lv}][i][j][3], a[i][0], a[i][1], a[i][2], a[i][3],"
                         f" b[{u - 1}][j][0], b[{u - 1}][j][1]);")
        lines += ["          }", "        }"]
    if emulate:
        lines += ["        barrier(CLK_LOCAL_MEM_FENCE);",
                  "        for (int i = 0; i < MT; i++) for (int j = 0; j < NTL; j++) {"]
        for t, u in s.pairs():
            lv = t + u - 2
            lines.append(f"          IMMA_X(acc[{lv}][i][j][0], acc[{lv}][i][j][1], acc[{lv}][i][j][2],"
                         f" acc[{lv}][i][j][3], {t - 1}, i, {u - 1}, j);")
        lines += ["        }", "        barrier(CLK_LOCAL_MEM_FENCE);"]
    lines += ["      }", "    }"]
    return "\n".join(lines)
