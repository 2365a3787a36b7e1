"""Tensor-core GEMM from OpenCL C through inline PTX: TF32 and error-compensated 3xTF32.

NVIDIA's OpenCL compiler accepts `asm volatile(...)` with PTX for `.target sm_90` (not sm_90a,
so no `wgmma`): this family issues `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32` from a
warp tile, stages operands from global to local memory with `cp.async` (multi-stage, zero-fill
for the edges) or, where `async_copy=0`, through registers (two stages), and reads the mma
fragments with plain conflict-free local loads (row pads chosen per layout).

Modes
  tf32    operands rounded to TF32 (`cvt.rna.tf32.f32`), float32 accumulation: ~1e-3 relative.
  3xtf32  x = hi + lo, hi = tf32(x), lo = tf32(x - hi) (exact in float32); the product is
          a_lo b_hi + a_hi b_lo + a_hi b_hi (small terms first, a_lo b_lo dropped, ~2^-22
          relative): float32-level accuracy at three mma per step.

Fold (how mma results reach the float32 total)
  0  one accumulator per output, the mma chain accumulates all of K inside the tensor core;
  1  each k8 step starts its mma chain from zero and the step's result is added into the
     float32 total with an ordinary (round-to-nearest) add: no long chain through the
     tensor core's own accumulate, whose rounding is not IEEE round-to-nearest;
  2  a fresh accumulator per k-tile (block_k deep), added into the total after each tile
     (twice the accumulator registers).

Fragment layouts of m16n8k8 .tf32 (PTX ISA, "Matrix Fragments for mma.m16n8k8"), with
g = lane >> 2, t = lane & 3:
  A (16x8, row):  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
  B (8x8, col):   b0 (k=t, n=g)  b1 (k=t+4, n=g)
  C/D (16x8):     c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)

Storage is row-major with leading dimensions, as in kernels/gemm.py: `trans_a` means A is
stored K x M, `trans_b` means B is stored N x K. Any M, N, K >= 0 works: edge chunks are
zero-filled (cp.async src-size), stores are guarded.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, fields
from typing import Iterator, Mapping

from ..errors import ScheduleError

KERNEL_NAME = "clgemm_tc"
MODES = ("tf32", "3xtf32")


@dataclass(frozen=True, order=True)
class TcSchedule:
    """One tensor-core kernel. A work-group of warps_m x warps_n warps computes a
    block_m x block_n tile of C; each warp a (block_m/warps_m) x (block_n/warps_n) warp tile
    made of 16x8 mma tiles; K advances block_k per stage, `stages` tiles in flight."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 16
    warps_m: int = 2
    warps_n: int = 2
    stages: int = 2
    mode: str = "3xtf32"
    fold: int = 1
    async_copy: int = 1
    raster: int = 1  # work-groups of `raster` M-tiles sweep N together (L2 reuse)

    @property
    def warp_m(self) -> int:
        return self.block_m // self.warps_m

    @property
    def warp_n(self) -> int:
        return self.block_n // self.warps_n

    @property
    def mt(self) -> int:  # 16-row mma tiles per warp
        return self.warp_m // 16

    @property
    def nt(self) -> int:  # 8-column mma tiles per warp
        return self.warp_n // 8

    @property
    def threads(self) -> int:
        return 32 * self.warps_m * self.warps_n

    @property
    def splits(self) -> int:
        return 3 if self.mode == "3xtf32" else 1

    def local_floats(self, trans_a: bool = False, trans_b: bool = False) -> int:
        return self.stages * (_stage_a(self, trans_a) + _stage_b(self, trans_b))

    def local_bytes(self) -> int:
        """Worst case over the four layouts (the pads differ)."""
        return 4 * max(self.local_floats(ta, tb) for ta in (False, True) for tb in (False, True))

    def registers_estimate(self) -> int:
        """Accumulators plus live fragments, 32-bit registers per thread (a hint)."""
        acc = self.mt * self.nt * 4 * (2 if self.fold == 2 else 1)
        frag = (self.mt * 4 + self.nt * 2) * (2 if self.splits == 3 else 1)
        return acc + frag + 24

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return (f"tc-{self.mode}-b{self.block_m}x{self.block_n}x{self.block_k}"
                f"-w{self.warps_m}x{self.warps_n}-s{self.stages}-f{self.fold}"
                f"-a{self.async_copy}-r{self.raster}")

    @classmethod
    def from_key(cls, key: str) -> "TcSchedule":
        try:
            _, mode, b, w, s, f, a, r = key.split("-")
            bm, bn, bk = (int(x) for x in b[1:].split("x"))
            wm, wn = (int(x) for x in w[1:].split("x"))
            return cls(bm, bn, bk, wm, wn, int(s[1:]), mode, int(f[1:]), int(a[1:]), int(r[1:]))
        except (ValueError, IndexError) as exc:
            raise ScheduleError(f"bad tensor-core schedule key {key!r}") from exc

    @classmethod
    def from_dict(cls, values: Mapping) -> "TcSchedule":
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ScheduleError(f"unknown TcSchedule parameter(s) {sorted(unknown)}")
        return cls(**{k: (str(v) if k == "mode" else int(v)) for k, v in values.items()})


@dataclass(frozen=True)
class TcLayout:
    """Storage facts baked into one binary."""

    trans_a: bool = False
    trans_b: bool = False
    aligned_a: bool = False  # lda and A's offset multiples of 4: 16-byte chunks
    aligned_b: bool = False


# Row pads (floats) that make the fragment loads conflict-free and keep 16-byte rows:
# a k-contiguous row (A as M x K, B as N x K) is read as 8 rows x 4 consecutive words:
# stride = 4 (mod 8) words; an m/n-contiguous row (A as K x M, B as K x N) is read as
# 4 rows x 8 consecutive words: stride = 8 (mod 32) or 24 (mod 32).
def _k_row_stride(block_k: int) -> int:
    stride = block_k
    while stride % 8 != 4:
        stride += 1
    return stride


def _mn_row_stride(width: int) -> int:
    stride = width
    while stride % 32 not in (8, 24) or stride % 4:
        stride += 1
    return stride


def _stage_a(s: TcSchedule, trans_a: bool) -> int:
    return s.block_k * _mn_row_stride(s.block_m) if trans_a else s.block_m * _k_row_stride(s.block_k)


def _stage_b(s: TcSchedule, trans_b: bool) -> int:
    return s.block_n * _k_row_stride(s.block_k) if trans_b else s.block_k * _mn_row_stride(s.block_n)


# ---- the search space -------------------------------------------------------------------
TC_DOMAINS: dict[str, tuple] = {
    "block_m": (32, 64, 128, 256),
    "block_n": (32, 64, 128, 256),
    "block_k": (8, 16, 32),
    "warps_m": (1, 2, 4),
    "warps_n": (1, 2, 4),
    "stages": (2, 3, 4),
    "mode": MODES,
    "fold": (0, 1, 2),
    "async_copy": (0, 1),
    "raster": (1, 4, 8),
}
assert list(TC_DOMAINS) == [f.name for f in fields(TcSchedule)]

MAX_REGISTERS_HINT = 230  # above this estimate ptxas spills (255 per thread at most)


class TcSearchSpace:
    """Valid tensor-core schedules for a device's limits."""

    def __init__(self, local_mem_bytes: int = 49152, max_work_group_size: int = 1024,
                 domains: Mapping[str, tuple] | None = None) -> None:
        self.local_mem_bytes = local_mem_bytes
        self.max_work_group_size = max_work_group_size
        self.domains = dict(domains or TC_DOMAINS)

    def violations(self, s: TcSchedule, layout: "TcLayout | None" = None) -> list[str]:
        """Broken rules; local memory is checked for `layout`, or for the worst layout."""
        bad = []
        if s.mode not in MODES:
            bad.append(f"mode must be one of {MODES}")
        if s.warps_m < 1 or s.warps_n < 1 or s.block_m % s.warps_m or s.block_n % s.warps_n:
            bad.append("warps divide the block")
        elif s.warp_m % 16 or s.warp_n % 8 or s.warp_m == 0 or s.warp_n == 0:
            bad.append("warp tile is whole 16x8 mma tiles")
        if s.block_k % 8 or s.block_k <= 0:
            bad.append("block_k is whole k8 steps")
        if s.threads > self.max_work_group_size:
            bad.append("work-group size")
        if s.fold not in (0, 1, 2):
            bad.append("fold is 0, 1 or 2")
        if s.async_copy not in (0, 1):
            bad.append("async_copy is 0 or 1")
        if s.async_copy == 0 and s.stages != 2:
            bad.append("register staging has two stages")
        if s.stages < 2:
            bad.append("at least two stages")
        if s.raster < 1:
            bad.append("raster >= 1")
        if not bad:
            need = (4 * s.local_floats(layout.trans_a, layout.trans_b) if layout is not None
                    else s.local_bytes())
            if need > self.local_mem_bytes:
                bad.append("local memory")
            # each thread copies whole 16-byte chunks (and, unaligned, whole elements)
            for rows in (s.block_m, s.block_n):
                if (rows * s.block_k // 4) % s.threads:
                    bad.append("tiles split evenly into 16-byte chunks per thread")
                    break
            if s.registers_estimate() > MAX_REGISTERS_HINT:
                bad.append("registers")
        return bad

    def is_valid(self, s: TcSchedule, layout: "TcLayout | None" = None) -> bool:
        return not self.violations(s, layout)

    def check(self, s: TcSchedule, layout: "TcLayout | None" = None) -> None:
        broken = self.violations(s, layout)
        if broken:
            raise ScheduleError(f"tensor-core schedule {s.key()} is not valid here: breaks "
                                + ", ".join(broken))

    def iter_valid(self) -> Iterator[TcSchedule]:
        names = list(TC_DOMAINS)
        for combo in itertools.product(*(self.domains[n] for n in names)):
            s = TcSchedule(**dict(zip(names, combo)))
            if self.is_valid(s):
                yield s


# ---- code generation ----------------------------------------------------------------------
_PRELUDE_PTX = r"""
#define TF32(dst, x) asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(dst) : "f"(x))
#define MMA(d0, d1, d2, d3, a0, a1, a2, a3, b0, b1) \
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 " \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};" \
               : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3) \
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), \
                 "f"(d0), "f"(d1), "f"(d2), "f"(d3))
#define SHARED_ADDR(p) ((uint)(size_t)(p))
#define CP16(base, dst, src, bytes) \
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" \
               :: "r"(dst), "l"(src), "r"(bytes) CLOBBER)
#define CP4(base, dst, src, bytes) \
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" \
               :: "r"(dst), "l"(src), "r"(bytes) CLOBBER)
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
"""

# The same kernel on any OpenCL device, for tests: cvt.rna emulated on the bits, each mma
# emulated by exchanging the warp's fragments through local memory (PTX's layouts), copies
# synchronous. Slow; it checks the generator's indexing, edges and pipeline, not speed.
_PRELUDE_EMULATED = r"""
#define TF32(dst, x) dst = ((as_uint(x) + 0x1000u) & 0xffffe000u)
#define MMA(d0, d1, d2, d3, a0, a1, a2, a3, b0, b1) do { \
  __local float* xa_ = xch + warp * 192; __local float* xb_ = xa_ + 128; \
  xa_[g * 8 + t] = as_float(a0); xa_[(g + 8) * 8 + t] = as_float(a1); \
  xa_[g * 8 + t + 4] = as_float(a2); xa_[(g + 8) * 8 + t + 4] = as_float(a3); \
  xb_[t * 8 + g] = as_float(b0); xb_[(t + 4) * 8 + g] = as_float(b1); \
  barrier(CLK_LOCAL_MEM_FENCE); \
  float s0_ = 0.0f, s1_ = 0.0f, s2_ = 0.0f, s3_ = 0.0f; \
  for (int k_ = 0; k_ < 8; k_++) { \
    s0_ += xa_[g * 8 + k_] * xb_[k_ * 8 + 2 * t]; \
    s1_ += xa_[g * 8 + k_] * xb_[k_ * 8 + 2 * t + 1]; \
    s2_ += xa_[(g + 8) * 8 + k_] * xb_[k_ * 8 + 2 * t]; \
    s3_ += xa_[(g + 8) * 8 + k_] * xb_[k_ * 8 + 2 * t + 1]; } \
  barrier(CLK_LOCAL_MEM_FENCE); \
  d0 += s0_; d1 += s1_; d2 += s2_; d3 += s3_; } while (0)
#define SHARED_ADDR(p) 0u
#define CP16(base, dst, src, bytes) do { __local float* d_ = (base) + (dst) / 4; \
  for (int i_ = 0; i_ < 4; i_++) d_[i_] = (i_ * 4 < (bytes)) ? (src)[i_] : 0.0f; } while (0)
#define CP4(base, dst, src, bytes) do { (base)[(dst) / 4] = (bytes) > 0 ? (src)[0] : 0.0f; } while (0)
#define CP_COMMIT()
#define CP_WAIT(n)
"""


@dataclass(frozen=True)
class Dialect:
    """How the kernel's primitives are spelled (kept apart from the schedule)."""

    memory_clobber: bool = True  # `: "memory"` on cp.async
    emulate: bool = False  # plain OpenCL C stand-ins for the PTX (tests on any device)


def render_tc(s: TcSchedule, layout: TcLayout, dialect: Dialect = Dialect()) -> str:
    """OpenCL C source of one tensor-core kernel."""
    TcSearchSpace(local_mem_bytes=1 << 30, max_work_group_size=1 << 20).check(s)
    ta, tb = layout.trans_a, layout.trans_b
    bm, bn, bk = s.block_m, s.block_n, s.block_k
    nthreads = s.threads
    lda_s = _mn_row_stride(bm) if ta else _k_row_stride(bk)
    ldb_s = _k_row_stride(bk) if tb else _mn_row_stride(bn)
    stage_a, stage_b = _stage_a(s, ta), _stage_b(s, tb)
    three = s.splits == 3

    out: list[str] = []
    emit = out.append
    emit(f"// clgemm tensor-core kernel {s.key()} {layout}")
    if dialect.memory_clobber:
        emit('#define CLOBBER : "memory"')
    else:
        emit("#define CLOBBER")
    emit(_PRELUDE_EMULATED if dialect.emulate else _PRELUDE_PTX)
    emit(f"#define BM {bm}\n#define BN {bn}\n#define BK {bk}\n#define NT {nthreads}")
    emit(f"#define LDAS {lda_s}\n#define LDBS {ldb_s}\n#define STA {stage_a}\n#define STB {stage_b}")
    emit("__attribute__((reqd_work_group_size(NT, 1, 1)))")
    emit(f"__kernel void {KERNEL_NAME}(const int M, const int N, const int K,\n"
         "    const float alpha, const float beta,\n"
         "    __global const float* restrict A, const int lda, const int a_off,\n"
         "    __global const float* restrict B, const int ldb, const int b_off,\n"
         "    __global float* C, const int ldc, const int c_off)\n{")
    emit(f"  __local float As[{s.stages} * STA] __attribute__((aligned(16)));")
    emit(f"  __local float Bs[{s.stages} * STB] __attribute__((aligned(16)));")
    if dialect.emulate:
        emit(f"  __local float xch[{s.warps_m * s.warps_n * 192}];")
    emit("  A += a_off; B += b_off; C += c_off;")
    emit("  const int tid = get_local_id(0);")
    emit("  const int lane = tid & 31, warp = tid >> 5;")
    emit("  const int g = lane >> 2, t = lane & 3;")
    emit(f"  const int wm = warp % {s.warps_m}, wn = warp / {s.warps_m};")
    # Rasterised work-group order: `raster` M-tiles sweep the N tiles together.
    emit("  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;")
    emit("  const int pid = get_group_id(0);")
    emit(f"  const int in_group = {s.raster} * tiles_n;")
    emit(f"  const int first_m = (pid / in_group) * {s.raster};")
    emit(f"  const int gsz = min(tiles_m - first_m, {s.raster});")
    emit("  const int tm = first_m + (pid % in_group) % gsz;")
    emit("  const int tn = (pid % in_group) / gsz;")
    emit("  const int m0 = tm * BM, n0 = tn * BN;")
    emit("  const int KT = (K + BK - 1) / BK;")

    # --- global -> local copies: per-thread chunk bookkeeping, outside the K loop ---------
    copy = _CopyPlan(s, layout)
    emit(copy.setup())

    # --- accumulators ------------------------------------------------------------------
    mt, nt = s.mt, s.nt
    tiles = [(i, j) for i in range(mt) for j in range(nt)]
    acc_names = [f"c{i}_{j}_{q}" for i, j in tiles for q in range(4)]
    emit("  float " + ", ".join(f"{n} = 0.0f" for n in acc_names) + ";")
    if s.fold == 2:
        emit("  float " + ", ".join(f"{n}t = 0.0f" for n in acc_names) + ";")

    # --- fragment addressing: per-thread base + compile-time offsets ----------------------
    if ta:
        emit("  const int a_frag = t * LDAS + wm * %d + g;" % s.warp_m)
    else:
        emit("  const int a_frag = (wm * %d + g) * LDAS + t;" % s.warp_m)
    if tb:
        emit("  const int b_frag = (wn * %d + g) * LDBS + t;" % s.warp_n)
    else:
        emit("  const int b_frag = t * LDBS + wn * %d + g;" % s.warp_n)

    def a_off(i: int, r: int, kk: int) -> int:
        m = i * 16 + 8 * (r & 1)
        k = kk * 8 + 4 * (r >> 1)
        return k * lda_s + m if ta else m * lda_s + k

    def b_off(j: int, r: int, kk: int) -> int:
        n = j * 8
        k = kk * 8 + 4 * r
        return n * ldb_s + k if tb else k * ldb_s + n

    def compute(stage_expr: str) -> str:
        code = [f"    {{ const __local float* Ap = As + ({stage_expr}) * STA + a_frag;",
                f"      const __local float* Bp = Bs + ({stage_expr}) * STB + b_frag;"]
        for kk in range(bk // 8):
            code.append("      {")
            for i in range(mt):
                for r in range(4):
                    code.append(_split(f"a{i}_{r}", f"Ap[{a_off(i, r, kk)}]", three))
            for j in range(nt):
                for r in range(2):
                    code.append(_split(f"b{j}_{r}", f"Bp[{b_off(j, r, kk)}]", three))
            for i, j in tiles:
                a_hi = [f"a{i}_{r}h" for r in range(4)]
                b_hi = [f"b{j}_{r}h" for r in range(2)]
                a_lo = [f"a{i}_{r}l" for r in range(4)]
                b_lo = [f"b{j}_{r}l" for r in range(2)]
                c = [f"c{i}_{j}_{q}" for q in range(4)]
                products = ([(a_lo, b_hi), (a_hi, b_lo)] if three else []) + [(a_hi, b_hi)]
                if s.fold == 1:
                    d = [f"d{q}" for q in range(4)]
                    code.append("        { float " + ", ".join(f"{x} = 0.0f" for x in d) + ";")
                    for a, b in products:
                        code.append("          MMA(" + ", ".join(d + a + b) + ");")
                    code.append("          " + " ".join(f"{cq} += {dq};" for cq, dq in zip(c, d)) + " }")
                else:
                    for a, b in products:
                        code.append("        MMA(" + ", ".join(c + a + b) + ");")
            code.append("      }")
        if s.fold == 2:
            code.append("      " + " ".join(f"{n}t += {n}; {n} = 0.0f;" for n in acc_names))
        code.append("    }")
        return "\n".join(code)

    # --- the main loop ------------------------------------------------------------------
    if s.async_copy:
        emit("  const uint sA = SHARED_ADDR(As), sB = SHARED_ADDR(Bs);")
        emit(f"  for (int p = 0; p < {s.stages - 1}; p++) {{")
        emit("    if (p < KT) {")
        emit("      const int k0 = p * BK, ws = p;")
        emit(copy.async_copy())
        emit("    }")
        emit("    CP_COMMIT();")
        emit("  }")
        emit("  int rs = 0;")
        emit(f"  int ws = {s.stages - 1};")
        emit("  for (int kt = 0; kt < KT; kt++) {")
        emit(f"    CP_WAIT({s.stages - 2});")
        emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit(f"    if (kt + {s.stages - 1} < KT) {{")
        emit(f"      const int k0 = (kt + {s.stages - 1}) * BK;")
        emit(copy.async_copy())
        emit("    }")
        emit("    CP_COMMIT();")
        emit(compute("rs"))
        emit(f"    rs = (rs + 1 == {s.stages}) ? 0 : rs + 1;")
        emit(f"    ws = (ws + 1 == {s.stages}) ? 0 : ws + 1;")
        emit("  }")
        emit("  CP_WAIT(0);")
    else:
        emit(copy.reg_decl())
        emit("  if (KT > 0) {")
        emit("    const int k0 = 0;")
        emit(copy.reg_load())
        emit("    const int ws = 0;")
        emit(copy.reg_store())
        emit("  }")
        emit("  barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  for (int kt = 0; kt < KT; kt++) {")
        emit("    const int rs = kt & 1;")
        emit("    if (kt + 1 < KT) {")
        emit("      const int k0 = (kt + 1) * BK;")
        emit(copy.reg_load())
        emit("    }")
        emit(compute("rs"))
        emit("    if (kt + 1 < KT) {")
        emit("      const int ws = rs ^ 1;")
        emit(copy.reg_store())
        emit("    }")
        emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  }")

    # --- epilogue: C = alpha * acc + beta * C (C unread when beta == 0) -------------------
    suffix = "t" if s.fold == 2 else ""
    emit(f"  const int crow = m0 + wm * {s.warp_m} + g, ccol = n0 + wn * {s.warp_n} + 2 * t;")
    for i in range(mt):
        for h in range(2):
            emit(f"  {{ const int r = crow + {i * 16 + 8 * h};")
            emit("    if (r < M) {")
            emit("      __global float* cp = C + (long)r * ldc;")
            for j in range(nt):
                for e in range(2):
                    q = 2 * h + e
                    emit(f"      {{ const int cc = ccol + {j * 8 + e};")
                    emit(f"        if (cc < N) {{ float v = alpha * c{i}_{j}_{q}{suffix};"
                         " if (beta != 0.0f) v = fma(beta, cp[cc], v); cp[cc] = v; } }")
            emit("    }")
            emit("  }")
    emit("}")
    return "\n".join(out) + "\n"


def _split(name: str, load: str, three: bool) -> str:
    """Load one operand element and round it to TF32 (and its remainder, in 3xTF32)."""
    if not three:
        return f"        uint {name}h; {{ const float x = {load}; TF32({name}h, x); }}"
    return (f"        uint {name}h, {name}l; {{ const float x = {load}; TF32({name}h, x);"
            f" const float r = x - as_float({name}h); TF32({name}l, r); }}")


class _CopyPlan:
    """Which thread copies which chunk of the A and B tiles from global to local memory.

    Chunk q of a thread covers tile row r0 + R_q, columns c0 + C_q .. + vec - 1, where
    (r0, c0) come from the thread id and (R_q, C_q) are compile-time constants (the tile
    widths and the thread count are powers of two, so one divides the other)."""

    def __init__(self, s: TcSchedule, layout: TcLayout) -> None:
        self.s, self.layout = s, layout

    def _ops(self):
        s, lay = self.s, self.layout
        # (name, k_contiguous, outer tile width, aligned, local row stride)
        yield ("A", not lay.trans_a, s.block_m, lay.aligned_a,
               _mn_row_stride(s.block_m) if lay.trans_a else _k_row_stride(s.block_k))
        yield ("B", lay.trans_b, s.block_n, lay.aligned_b,
               _k_row_stride(s.block_k) if lay.trans_b else _mn_row_stride(s.block_n))

    def _geometry(self, kcont: bool, outer: int, aligned: bool):
        s = self.s
        vec = 4 if aligned else 1
        per_row = (s.block_k if kcont else outer) // vec
        nt = s.threads
        chunks = outer * s.block_k // vec // nt
        if nt % per_row and per_row % nt:
            raise ScheduleError("tile widths and thread count must divide one another")
        offsets = []
        for q in range(chunks):
            if nt % per_row == 0:
                offsets.append((q * (nt // per_row), 0))
            else:
                f = per_row // nt
                offsets.append((q // f, (q % f) * nt * vec))
        return vec, per_row, offsets

    def setup(self) -> str:
        code = []
        for name, kcont, outer, aligned, lds in self._ops():
            vec, per_row, _ = self._geometry(kcont, outer, aligned)
            o0 = "m0" if name == "A" else "n0"
            ld = "lda" if name == "A" else "ldb"
            code.append(f"  const int {name}r = tid / {per_row}, {name}c = (tid % {per_row}) * {vec};")
            if kcont:  # tile row = outer index, column = k
                code.append(f"  const long g{name} = (long)({o0} + {name}r) * {ld} + {name}c;")
                code.append(f"  const int o{name} = {o0} + {name}r;")
            else:  # tile row = k, column = outer index
                code.append(f"  const long g{name} = (long){name}r * {ld} + {o0} + {name}c;")
                code.append(f"  const int o{name} = {o0} + {name}c;")
            code.append(f"  const int l{name} = {name}r * {lds} + {name}c;")
        return "\n".join(code)

    def _chunk(self, name: str, kcont: bool, vec: int, lds: int, R: int, Cq: int):
        """(bytes in range, source pointer expression, local offset expression)."""
        ld = "lda" if name == "A" else "ldb"
        lim = "M" if name == "A" else "N"
        if kcont:
            nbytes = (f"((o{name} + {R}) < {lim} ? clamp(K - (k0 + {name}c + {Cq}), 0, {vec}) * 4 : 0)")
            src = f"{name} + g{name} + (long){R} * {ld} + {Cq} + k0"
        else:
            nbytes = (f"((k0 + {name}r + {R}) < K ? clamp({lim} - (o{name} + {Cq}), 0, {vec}) * 4 : 0)")
            src = f"{name} + g{name} + (long)(k0 + {R}) * {ld} + {Cq}"
        return nbytes, src, f"l{name} + {R * lds + Cq}"

    def async_copy(self) -> str:
        code = []
        for name, kcont, outer, aligned, lds in self._ops():
            vec, _, offsets = self._geometry(kcont, outer, aligned)
            base = "sA" if name == "A" else "sB"
            local = "As" if name == "A" else "Bs"
            stage = "STA" if name == "A" else "STB"
            op = "CP16" if vec == 4 else "CP4"
            for R, Cq in offsets:
                nbytes, src, loc = self._chunk(name, kcont, vec, lds, R, Cq)
                code.append(f"      {{ const int nb = {nbytes};")
                code.append(f"        __global const float* src = nb > 0 ? {src} : {name};")
                code.append(f"        {op}({local}, {base} + (uint)((ws * {stage} + {loc}) * 4), src, nb); }}")
        return "\n".join(code)

    def reg_decl(self) -> str:
        code = []
        for name, kcont, outer, aligned, lds in self._ops():
            vec, _, offsets = self._geometry(kcont, outer, aligned)
            vt = "float4" if vec == 4 else "float"
            code.append(f"  {vt} " + ", ".join(f"r{name}{q}" for q in range(len(offsets))) + ";")
        return "\n".join(code)

    def reg_load(self) -> str:
        code = []
        for name, kcont, outer, aligned, lds in self._ops():
            vec, _, offsets = self._geometry(kcont, outer, aligned)
            for q, (R, Cq) in enumerate(offsets):
                nbytes, src, _ = self._chunk(name, kcont, vec, lds, R, Cq)
                code.append(f"      {{ const int nb = {nbytes};")
                code.append(f"        __global const float* src = nb > 0 ? {src} : {name};")
                if vec == 4:
                    code.append(f"        if (nb == 16) r{name}{q} = *((__global const float4*)src);")
                    code.append(f"        else {{ r{name}{q} = (float4)(0.0f);")
                    code.append(f"          if (nb > 0) r{name}{q}.s0 = src[0];")
                    code.append(f"          if (nb > 4) r{name}{q}.s1 = src[1];")
                    code.append(f"          if (nb > 8) r{name}{q}.s2 = src[2]; }} }}")
                else:
                    code.append(f"        r{name}{q} = nb > 0 ? src[0] : 0.0f; }}")
        return "\n".join(code)

    def reg_store(self) -> str:
        code = []
        for name, kcont, outer, aligned, lds in self._ops():
            vec, _, offsets = self._geometry(kcont, outer, aligned)
            local = "As" if name == "A" else "Bs"
            stage = "STA" if name == "A" else "STB"
            for q, (R, Cq) in enumerate(offsets):
                loc = f"l{name} + {R * lds + Cq}"
                if vec == 4:
                    code.append(f"      *((__local float4*)({local} + ws * {stage} + {loc})) = r{name}{q};")
                else:
                    code.append(f"      {local}[ws * {stage} + {loc}] = r{name}{q};")
        return "\n".join(code)


def source_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("//"))
