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

Convert (how float32 operands become the mma's TF32 inputs)
  0  `cvt.rna.tf32.f32` per fragment element (ptxas: a finiteness test and a predicated add,
     two instructions per element, every warp that reads the element);
  1  tf32: the raw float32 bits; the tensor core reads the top 19 bits, i.e. truncates
     (about twice rna's relative error, still near 1e-3); no instruction at all.
     3xtf32: hi = (bits + 0x1000) & ~0x1fff (round to nearest, ties away: two integer
     instructions), lo = x - hi exact, lo handed over raw (its truncation drops bits below
     float32's 2^-22 of x). A NaN x gives a NaN lo, an Inf x an Inf hi and a NaN lo: the
     non-finite flag still sends such products to the float32 family.

Fold (how mma results reach the float32 total)
  0  one accumulator per output, the mma chain accumulates all of K inside the tensor core;
  1  each k8 step starts its mma chain from zero and the step's result is added into the
     float32 total with an ordinary (round-to-nearest) add: no long chain through the
     tensor core's own accumulate, whose rounding is not IEEE round-to-nearest;
  2  a fresh accumulator per k-tile (block_k deep), added into the total after each tile
     (twice the accumulator registers);
  3  (3xTF32) the same chain length as 2 without the second accumulators: loops run mma
     tile by mma tile over the whole k-tile, holding the k-tile's A fragments and one
     column of B fragments; half fold 1's float32 adds at block_k = 16.

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


class WarpTiling:
    """Work-group geometry shared by the mma kernel families (TcSchedule, the Ozaki lab's
    OzSchedule): warps_m x warps_n warps split a block_m x block_n tile into 16 x 8 mma
    tiles."""

    block_m: int
    block_n: int
    warps_m: int
    warps_n: int

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


# Rasterised work-group order, in OpenCL C: RASTER M-tiles sweep the N tiles together (L2
# reuse); defines m0 and n0, the tile's first row and column (needs M, N, BM, BN, RASTER).
RASTER_TILE_C = """  const int tiles_m = (M + BM - 1) / BM, tiles_n = (N + BN - 1) / BN;
  const int pid = get_group_id(0);
  const int first_m = (pid / (RASTER * tiles_n)) * RASTER;
  const int gsz = min(tiles_m - first_m, RASTER);
  const int tm = first_m + (pid % (RASTER * tiles_n)) % gsz;
  const int tn = (pid % (RASTER * tiles_n)) / gsz;
  const int m0 = tm * BM, n0 = tn * BN;"""


@dataclass(frozen=True, order=True)
class TcSchedule(WarpTiling):
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
    # Added after keys were first recorded: named in a key only away from 0, so every earlier
    # key (tables, artifacts) still names the same kernel.
    convert: int = 0  # 0: cvt.rna per fragment element; 1: integer rounding / raw bits
    interior: int = 0  # 1: tiles wholly inside M, N and K copy without per-chunk bounds
    swizzle: int = 0  # 1: unpadded local tiles, 16-byte chunks XOR-permuted per row

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
        if self.fold == 3:  # the k-tile's A fragments, one column of B fragments
            frag = (self.block_k // 8) * (self.mt * 4 + 2) * 2 + 4
        else:
            frag = (self.mt * 4 + self.nt * 2) * (2 if self.splits == 3 else 1)
        return acc + frag + 24

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        return (f"tc-{self.mode}-b{self.block_m}x{self.block_n}x{self.block_k}"
                f"-w{self.warps_m}x{self.warps_n}-s{self.stages}-f{self.fold}"
                f"-a{self.async_copy}-r{self.raster}"
                + (f"-c{self.convert}" if self.convert else "")
                + (f"-i{self.interior}" if self.interior else "")
                + (f"-x{self.swizzle}" if self.swizzle else ""))

    @classmethod
    def from_key(cls, key: str) -> "TcSchedule":
        try:
            _, mode, b, w, s, f, a, r, *late = key.split("-")
            bm, bn, bk = (int(x) for x in b[1:].split("x"))
            wm, wn = (int(x) for x in w[1:].split("x"))
            extra = {_LATE_FIELDS[part[0]]: int(part[1:]) for part in late}
            return cls(bm, bn, bk, wm, wn, int(s[1:]), mode, int(f[1:]), int(a[1:]), int(r[1:]),
                       **extra)
        except (ValueError, IndexError, KeyError) as exc:
            raise ScheduleError(f"bad tensor-core schedule key {key!r}") from exc

    @classmethod
    def from_dict(cls, values: Mapping) -> "TcSchedule":
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ScheduleError(f"unknown TcSchedule parameter(s) {sorted(unknown)}")
        return cls(**{k: (str(v) if k == "mode" else int(v)) for k, v in values.items()})


_LATE_FIELDS = {"c": "convert", "i": "interior", "x": "swizzle"}  # key letter -> field, see TcSchedule.key


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


def _row_stride(s: TcSchedule, kcont: bool, width: int) -> int:
    """Floats per local tile row: a k-contiguous row holds block_k, an m/n-contiguous one
    `width`; padded against bank conflicts unless the schedule swizzles."""
    if s.swizzle:
        return s.block_k if kcont else width
    return _k_row_stride(s.block_k) if kcont else _mn_row_stride(width)


def _stage_a(s: TcSchedule, trans_a: bool) -> int:
    rows = s.block_k if trans_a else s.block_m
    return rows * _row_stride(s, not trans_a, s.block_m)


def _stage_b(s: TcSchedule, trans_b: bool) -> int:
    rows = s.block_n if trans_b else s.block_k
    return rows * _row_stride(s, trans_b, s.block_n)


# Swizzled tiles (swizzle=1): no pads; the 16-byte chunk q of row r sits at chunk q ^ f(r).
# A k-contiguous row (block_k floats, CPR = block_k / 4 chunks) is read as 8 rows x 4 words
# of one chunk: f(r) = (r * CPR / 8) mod CPR puts the 8 rows on 8 distinct 4-bank groups.
# An m/n-contiguous row (width a multiple of 32) is read as 4 rows x 8 words (two chunks):
# f(r) = 2 (r mod 4) moves each of the 4 rows to its own pair of groups. cp.async chunks stay
# whole, so copies and fragment loads are both conflict-free without the pads' 20-25%.
SWIZZLE_C = """#define SWK(row) ((((row) * (BK / 4)) >> 3) & (BK / 4 - 1))
#define SWLOC_K(row, col) ((row) * BK + (((((col) >> 2) ^ SWK(row)) << 2) | ((col) & 3)))
#define SWLOC_MN(row, col, W) ((row) * (W) + (((((col) >> 2) ^ (((row) & 3) << 1)) << 2) | ((col) & 3)))"""


# ---- the search space -------------------------------------------------------------------
TC_DOMAINS: dict[str, tuple] = {
    # 96 and 192 rows give whole waves where powers of two leave a last, part-empty one
    # (3072 = 32 x 96: 768 tiles of 96 x 128 fill 132 SMs x 2 groups better than 576)
    "block_m": (32, 64, 96, 128, 192, 256),
    "block_n": (32, 64, 128, 256),
    "block_k": (8, 16, 32),
    "warps_m": (1, 2, 4),
    "warps_n": (1, 2, 4),
    "stages": (2, 3, 4),
    "mode": MODES,
    "fold": (0, 1, 2, 3),
    "async_copy": (0, 1),
    "raster": (1, 4, 8),
    "convert": (0, 1),
    "interior": (0, 1),
    "swizzle": (0, 1),
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
        if s.fold not in (0, 1, 2, 3):
            bad.append("fold is 0, 1, 2 or 3")
        elif s.fold == 3 and s.mode != "3xtf32":
            bad.append("fold 3 is a 3xTF32 chain order")
        if s.async_copy not in (0, 1):
            bad.append("async_copy is 0 or 1")
        if s.async_copy == 0 and s.stages != 2:
            bad.append("register staging has two stages")
        if s.async_copy == 0 and s.interior:
            bad.append("the interior copy is a cp.async path")
        if s.stages < 2:
            bad.append("at least two stages")
        if s.raster < 1:
            bad.append("raster >= 1")
        if s.convert not in (0, 1) or s.interior not in (0, 1) or s.swizzle not in (0, 1):
            bad.append("convert, interior and swizzle are 0 or 1")
        elif s.swizzle and (s.block_m % 32 or s.block_n % 32 or s.block_k not in (8, 16, 32)):
            bad.append("swizzle needs 32-float tile widths and 8, 16 or 32-deep k-tiles")
        if not bad:
            need = (4 * s.local_floats(layout.trans_a, layout.trans_b) if layout is not None
                    else s.local_bytes())
            if need > self.local_mem_bytes:
                bad.append("local memory")
            # each thread copies whole chunks, in a pattern fixed at compile time; without a
            # layout, the common one (neither transposed, 16-byte aligned) is checked
            if not copy_fits(s, layout or TcLayout(aligned_a=True, aligned_b=True)):
                bad.append("tiles split evenly into chunks per thread")
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

# The same kernel on any OpenCL device, for tests: cvt.rna emulated on the bits (non-finite
# values pass unchanged, as ptxas's finiteness test does), each mma
# emulated by exchanging the warp's fragments through local memory (PTX's layouts), with
# the tensor core's reading of an operand (its top 19 bits), copies synchronous. Slow; it
# checks the generator's indexing, edges, pipeline and rounding, not speed.
_PRELUDE_EMULATED = r"""
#define TF32(dst, x) dst = isfinite(x) ? ((as_uint(x) + 0x1000u) & 0xffffe000u) : as_uint(x)
#define TC_IN(bits) as_float((uint)(bits) & 0xffffe000u)
#define MMA(d0, d1, d2, d3, a0, a1, a2, a3, b0, b1) do { \
  __local float* xa_ = xch + warp * 192; __local float* xb_ = xa_ + 128; \
  xa_[g * 8 + t] = TC_IN(a0); xa_[(g + 8) * 8 + t] = TC_IN(a1); \
  xa_[g * 8 + t + 4] = TC_IN(a2); xa_[(g + 8) * 8 + t + 4] = TC_IN(a3); \
  xb_[t * 8 + g] = TC_IN(b0); xb_[(t + 4) * 8 + g] = TC_IN(b1); \
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


def render_tc(s: TcSchedule, layout: TcLayout, dialect: Dialect = Dialect(),
              ieee_fallback: bool = False, block_sums: bool = False) -> str:
    """OpenCL C source of one tensor-core kernel.

    The generator fixes every size at compile time and writes the loops over mma tiles, k8
    steps, copy chunks and output elements as `#pragma unroll` loops over small arrays: the
    compiler unrolls them and keeps the arrays in registers, and the source stays short
    enough to read.

    `ieee_fallback`: a work-group whose tile has a non-finite output recomputes that tile
    with plain float32 dot products before anything of it is stored (C_old still intact), so
    the product keeps IEEE propagation in one launch; the flag then says a tile fell back.

    `block_sums` (with `ieee_fallback`; needs cl_khr_fp64): the work-group also writes its
    tile's column sums of C as stored, in double, for the check of check=True whose blocks
    are the kernel's BM rows (guard/abft.py's abft_cblock, taken inside the product): the sum,
    the sum of squares and the sum of |x| of column j over rows [m0, m0 + BM) at
    (m0 / BM) * N + j of S, Q and Sa, read back from C after the stores."""
    TcSearchSpace(local_mem_bytes=1 << 30, max_work_group_size=1 << 20).check(s, layout)
    if block_sums and not ieee_fallback:
        raise ValueError("block_sums is a variant of the IEEE-fallback epilogue")
    ta, tb = layout.trans_a, layout.trans_b
    three = s.splits == 3
    copy = _CopyPlan(s, layout)

    out: list[str] = []
    emit = out.append
    emit(f"// clgemm tensor-core kernel {s.key()} {layout}"
         + (" with C's block sums" if block_sums else ""))
    if block_sums:
        emit("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
    emit('#define CLOBBER : "memory"' if dialect.memory_clobber else "#define CLOBBER")
    emit(_PRELUDE_EMULATED if dialect.emulate else _PRELUDE_PTX)
    consts = {
        "BM": s.block_m, "BN": s.block_n, "BK": s.block_k, "NT": s.threads,
        "WARPS_M": s.warps_m, "WARP_M": s.warp_m, "WARP_N": s.warp_n, "MT": s.mt, "NTL": s.nt,
        "STAGES": s.stages, "RASTER": s.raster,
        "LDAS": _row_stride(s, not ta, s.block_m),
        "LDBS": _row_stride(s, tb, s.block_n),
        "STA": _stage_a(s, ta), "STB": _stage_b(s, tb),
    }
    emit("\n".join(f"#define {k} {v}" for k, v in consts.items()))
    # Fragment offsets inside a stage (PTX m16n8k8 .tf32 layouts, see the module docstring):
    # A element (m, k) of mma tile i, register r; B element (k, n) of tile j, register r.
    a_mk = "(K8) * 8 + 4 * ((R) >> 1)", "(I) * 16 + 8 * ((R) & 1)"
    if s.swizzle:
        # The thread's part (g, t) goes into a_frag / b_frag; the rest of each row and the
        # chunk come here, XORed with the thread's row function (swk: SWK(g); 2t: rows t).
        emit(SWIZZLE_C)
        emit("#define A_OFF(I, R, K8) " + (
            f"(({a_mk[0]}) * LDAS + ((((wm * WARP_M + {a_mk[1]}) >> 2) ^ (2 * t)) << 2))" if ta
            else f"(({a_mk[1]}) * LDAS + (((2 * (K8) + ((R) >> 1)) ^ swk) << 2))"))
        emit("#define B_OFF(J, R, K8) " + (
            "((J) * 8 * LDBS + (((2 * (K8) + (R)) ^ swk) << 2))" if tb
            else "(((K8) * 8 + 4 * (R)) * LDBS + ((((wn * WARP_N + (J) * 8) >> 2) ^ (2 * t)) << 2))"))
    else:
        emit("#define A_OFF(I, R, K8) " + (f"(({a_mk[0]}) * LDAS + {a_mk[1]})" if ta
                                           else f"(({a_mk[1]}) * LDAS + {a_mk[0]})"))
        emit("#define B_OFF(J, R, K8) " + ("((J) * 8 * LDBS + (K8) * 8 + 4 * (R))" if tb
                                           else "(((K8) * 8 + 4 * (R)) * LDBS + (J) * 8)"))
    if three and s.convert:  # hi rounded on the integer bits, lo = x - hi exact, handed raw
        emit("#define SPLIT(HI, LO, X) { const float x_ = (X); "
             "HI = (as_uint(x_) + 0x1000u) & 0xffffe000u; LO = as_uint(x_ - as_float(HI)); }")
    elif three:  # x = hi + lo, both TF32; lo = tf32(x - hi) is exact in float32
        emit("#define SPLIT(HI, LO, X) { const float x_ = (X); TF32(HI, x_); "
             "const float r_ = x_ - as_float(HI); TF32(LO, r_); }")
    elif s.convert:  # the raw bits: the tensor core truncates them to TF32
        emit("#define SPLIT(HI, LO, X) { HI = as_uint(X); }")
    else:
        emit("#define SPLIT(HI, LO, X) { const float x_ = (X); TF32(HI, x_); }")
    emit(copy.defines())
    emit("__attribute__((reqd_work_group_size(NT, 1, 1)))")
    emit(f"__kernel void {KERNEL_NAME}(const int M, const int N, const int K,\n"
         "    const float alpha, const float beta,\n"
         "    __global const float* restrict A, const int lda, const int a_off,\n"
         "    __global const float* restrict B, const int ldb, const int b_off,\n"
         "    __global float* C, const int ldc, const int c_off,\n"
         "    __global int* nonfinite"
         + (",\n    __global double* S, __global double* Q, __global double* Sa"
            if block_sums else "") + ")\n{")
    emit("  __local float As[STAGES * STA] __attribute__((aligned(16)));")
    emit("  __local float Bs[STAGES * STB] __attribute__((aligned(16)));")
    if ieee_fallback:
        emit("  __local int tile_bad;  // any non-finite output in the tile (the epilogue)")
    if dialect.emulate:
        emit(f"  __local float xch[{s.warps_m * s.warps_n * 192}];")
    emit("""  A += a_off; B += b_off; C += c_off;
  const int tid = get_local_id(0);
  const int lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int wm = warp % WARPS_M, wn = warp / WARPS_M;
  // Rasterised work-group order: RASTER M-tiles sweep the N tiles together (L2 reuse).
""" + RASTER_TILE_C + """
  const int KT = (K + BK - 1) / BK;""")
    emit(copy.setup())
    emit("  float acc[MT][NTL][4];")
    if s.fold == 2:
        emit("  float tot[MT][NTL][4];")
    emit("  #pragma unroll\n  for (int i = 0; i < MT; i++)\n  #pragma unroll\n"
         "  for (int j = 0; j < NTL; j++)\n  #pragma unroll\n  for (int q = 0; q < 4; q++)"
         " { acc[i][j][q] = 0.0f;" + (" tot[i][j][q] = 0.0f;" if s.fold == 2 else "") + " }")
    if s.swizzle:  # the warp's m/n offset of an m/n-contiguous tile lies inside the XOR
        emit("  const int swk = SWK(g);")
        emit("  const int a_frag = " + ("t * LDAS + g;" if ta else "(wm * WARP_M + g) * LDAS + t;"))
        emit("  const int b_frag = " + ("(wn * WARP_N + g) * LDBS + t;" if tb else "t * LDBS + g;"))
    else:
        emit("  const int a_frag = " + ("t * LDAS + wm * WARP_M + g;" if ta
                                       else "(wm * WARP_M + g) * LDAS + t;"))
        emit("  const int b_frag = " + ("(wn * WARP_N + g) * LDBS + t;" if tb
                                       else "t * LDBS + wn * WARP_N + g;"))

    if s.async_copy:
        emit("  const uint sA = SHARED_ADDR(As), sB = SHARED_ADDR(Bs);")
        if s.interior:
            emit("  const int inner_mn = m0 + BM <= M && n0 + BN <= N;")
        emit("  for (int p = 0; p < STAGES - 1; p++) {")
        emit("    if (p < KT) {")
        emit(copy.async_copy("p * BK", "p", "      "))
        emit("    }")
        emit("    CP_COMMIT();")
        emit("  }")
        emit("  int rs = 0, ws = STAGES - 1;")
        emit("  for (int kt = 0; kt < KT; kt++) {")
        emit(f"    CP_WAIT({s.stages - 2});")
        emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit("    if (kt + STAGES - 1 < KT) {")
        emit(copy.async_copy("(kt + STAGES - 1) * BK", "ws", "      "))
        emit("    }")
        emit("    CP_COMMIT();")
        emit(_compute(s, "rs"))
        emit("    rs = (rs + 1 == STAGES) ? 0 : rs + 1;")
        emit("    ws = (ws + 1 == STAGES) ? 0 : ws + 1;")
        emit("  }")
        emit("  CP_WAIT(0);")
    else:
        emit(copy.reg_decl())
        emit("  if (KT > 0) {")
        emit(copy.reg_load("0", "    "))
        emit(copy.reg_store("0", "    "))
        emit("  }")
        emit("  barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  for (int kt = 0; kt < KT; kt++) {")
        emit("    const int rs = kt & 1;")
        emit("    if (kt + 1 < KT) {")
        emit(copy.reg_load("(kt + 1) * BK", "      "))
        emit("    }")
        emit(_compute(s, "rs"))
        emit("    if (kt + 1 < KT) {")
        emit(copy.reg_store("rs ^ 1", "      "))
        emit("    }")
        emit("    barrier(CLK_LOCAL_MEM_FENCE);")
        emit("  }")

    # Epilogue: C = alpha * acc + beta * C (C unread when beta == 0). Register q of tile
    # (i, j) holds row g + 8 (q >> 1), column 2 t + (q & 1).
    total = "tot" if s.fold == 2 else "acc"
    # A non-finite output raises `nonfinite` (never cleared here): the split x = hi + lo
    # turns an Inf operand into NaN (Inf - Inf), so the caller recomputes such products with
    # the float32 family to keep IEEE propagation.
    if ieee_fallback:
        emit(_epilogue_with_fallback(total, ta, tb, _BLOCK_SUMS if block_sums else ""))
    else:
        emit(_EPILOGUE_FLAG.replace("TOTAL", total))
    return "\n".join(out) + "\n"


_STORE_LOOP = """  #pragma unroll
  for (int i = 0; i < MT; i++) {
    #pragma unroll
    for (int h = 0; h < 2; h++) {
      const int r = crow + i * 16 + 8 * h;
      if (r < M) {
        __global float* cp = C + (long)r * ldc;
        #pragma unroll
        for (int j = 0; j < NTL; j++) {
          #pragma unroll
          for (int e = 0; e < 2; e++) {
            const int cc = ccol + j * 8 + e;
            if (cc < N) {
              BODY
            }
          }
        }
      }
    }
  }"""

# Stores and flags every non-finite output; the caller decides what to do about it.
_EPILOGUE_FLAG = ("""  const int crow = m0 + wm * WARP_M + g, ccol = n0 + wn * WARP_N + 2 * t;
  int bad = 0;
""" + _STORE_LOOP.replace("BODY", """float v = alpha * TOTAL[i][j][2 * h + e];
              if (beta != 0.0f) v = fma(beta, cp[cc], v);
              if (!isfinite(v)) bad = 1;
              cp[cc] = v;""") + """
  if (bad) nonfinite[0] = 1;
}""")


# C's block sums of the tile as stored (render_tc's block_sums): after a barrier on global
# memory (the work-group's own stores are then visible to it), one work-item a column re-reads
# the tile's rows of C, in double.
_BLOCK_SUMS = """  barrier(CLK_GLOBAL_MEM_FENCE);
  {
    const int r1 = min(M, m0 + BM);
    for (int col = tid; col < BN; col += NT) {
      const int cc = n0 + col;
      if (cc < N) {
        double s_ = 0.0, q_ = 0.0, a_ = 0.0;
        for (int r = m0; r < r1; r++) {
          const double x_ = (double)C[(long)r * ldc + cc];
          s_ += x_; q_ += x_ * x_; a_ += fabs(x_);
        }
        const long at_ = (long)(m0 / BM) * N + cc;
        S[at_] = s_; Q[at_] = q_; Sa[at_] = a_;
      }
    }
  }
"""


def _epilogue_with_fallback(total: str, ta: bool, tb: bool, sums: str = "") -> str:
    """The epilogue of render_tc(ieee_fallback=True): the work-group first asks whether any
    of its outputs is non-finite (alpha times the accumulator: the split's Inf - Inf shows
    there; a non-finite beta C_old propagates through the fma as in the float32 family), and
    only then stores, the tensor-core result or, for that tile alone, plain dot products;
    `sums` (C's block sums) runs after either store."""
    a_at = "A[(long)kk * lda + r]" if ta else "A[(long)r * lda + kk]"
    b_at = "B[(long)cc * ldb + kk]" if tb else "B[(long)kk * ldb + cc]"
    check = _STORE_LOOP.replace("        __global float* cp = C + (long)r * ldc;\n", "").replace(
        "BODY", f"if (!isfinite(alpha * {total}[i][j][2 * h + e])) bad = 1;")
    store = _STORE_LOOP.replace("BODY", f"""float v = alpha * {total}[i][j][2 * h + e];
              if (beta != 0.0f) v = fma(beta, cp[cc], v);
              cp[cc] = v;""")
    return f"""  const int crow = m0 + wm * WARP_M + g, ccol = n0 + wn * WARP_N + 2 * t;
  int bad = 0;
{check}
  if (tid == 0) tile_bad = 0;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (bad) atomic_or(&tile_bad, 1);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (tile_bad) {{
    if (tid == 0) nonfinite[0] = 1;
    for (int e = tid; e < BM * BN; e += NT) {{
      const int r = m0 + e / BN, cc = n0 + e % BN;
      if (r < M && cc < N) {{
        float s = 0.0f;
        for (int kk = 0; kk < K; kk++) s = fma({a_at}, {b_at}, s);
        float v = alpha * s;
        if (beta != 0.0f) v = fma(beta, C[(long)r * ldc + cc], v);
        C[(long)r * ldc + cc] = v;
      }}
    }}
{sums}    return;
  }}
{store}
{sums}}}"""


def _compute(s: TcSchedule, stage: str) -> str:
    """One k-tile of mma work from local stage `stage`: per k8 step, split the warp's A and
    B fragments once, then every (i, j) mma tile. 3xTF32 issues small terms first
    (a_lo b_hi, a_hi b_lo, a_hi b_hi; a_lo b_lo is below float32's resolution)."""
    three = s.splits == 3
    lo = "al[i][0], al[i][1], al[i][2], al[i][3]", "bl[j][0], bl[j][1]"
    hi = "ah[i][0], ah[i][1], ah[i][2], ah[i][3]", "bh[j][0], bh[j][1]"
    pairs = ([(lo[0], hi[1]), (hi[0], lo[1])] if three else []) + [(hi[0], hi[1])]
    if s.fold == 3:
        return _compute_per_tile(s, stage)
    if s.fold == 1:
        # A fresh chain per k8 step, folded into the float32 total with a round-to-nearest
        # add: the tensor core's own accumulate does not round to nearest.
        body = ["        float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};"]
        body += [f"        MMA(d[0], d[1], d[2], d[3], {a}, {b});" for a, b in pairs]
        body.append("        acc[i][j][0] += d[0]; acc[i][j][1] += d[1];"
                    " acc[i][j][2] += d[2]; acc[i][j][3] += d[3];")
    else:
        body = [f"        MMA(acc[i][j][0], acc[i][j][1], acc[i][j][2], acc[i][j][3], {a}, {b});"
                for a, b in pairs]
    lines = [f"    {{ const __local float* Ap = As + ({stage}) * STA + a_frag;",
             f"      const __local float* Bp = Bs + ({stage}) * STB + b_frag;",
             "      #pragma unroll",
             "      for (int k8 = 0; k8 < BK / 8; k8++) {",
             "        uint ah[MT][4], al[MT][4], bh[NTL][2], bl[NTL][2];",
             "        #pragma unroll",
             "        for (int i = 0; i < MT; i++)",
             "          #pragma unroll",
             "          for (int r = 0; r < 4; r++) SPLIT(ah[i][r], al[i][r], Ap[A_OFF(i, r, k8)]);",
             "        #pragma unroll",
             "        for (int j = 0; j < NTL; j++)",
             "          #pragma unroll",
             "          for (int r = 0; r < 2; r++) SPLIT(bh[j][r], bl[j][r], Bp[B_OFF(j, r, k8)]);",
             "        #pragma unroll",
             "        for (int i = 0; i < MT; i++)",
             "        #pragma unroll",
             "        for (int j = 0; j < NTL; j++) {",
             *body,
             "        }",
             "      }"]
    if s.fold == 2:
        lines += ["      #pragma unroll",
                  "      for (int i = 0; i < MT; i++)",
                  "      #pragma unroll",
                  "      for (int j = 0; j < NTL; j++)",
                  "      #pragma unroll",
                  "      for (int q = 0; q < 4; q++) { tot[i][j][q] += acc[i][j][q]; acc[i][j][q] = 0.0f; }"]
    lines.append("    }")
    return "\n".join(lines)


def _compute_per_tile(s: TcSchedule, stage: str) -> str:
    """fold=3 (3xTF32): one chain per mma tile per k-tile, folded into the float32 total
    once per k-tile (half the float32 adds of fold=1 at block_k=16) without fold=2's second
    set of accumulators: the loops run tile by tile, so only the warp's A fragments of the
    whole k-tile and one column of B fragments are live."""
    prods = ["MMA(d[0], d[1], d[2], d[3], al[k8][i][0], al[k8][i][1], al[k8][i][2], al[k8][i][3],"
             " bh[k8][0], bh[k8][1]);",
             "MMA(d[0], d[1], d[2], d[3], ah[k8][i][0], ah[k8][i][1], ah[k8][i][2], ah[k8][i][3],"
             " bl[k8][0], bl[k8][1]);",
             "MMA(d[0], d[1], d[2], d[3], ah[k8][i][0], ah[k8][i][1], ah[k8][i][2], ah[k8][i][3],"
             " bh[k8][0], bh[k8][1]);"]
    return "\n".join([
        f"    {{ const __local float* Ap = As + ({stage}) * STA + a_frag;",
        f"      const __local float* Bp = Bs + ({stage}) * STB + b_frag;",
        "      uint ah[BK / 8][MT][4], al[BK / 8][MT][4];",
        "      #pragma unroll",
        "      for (int k8 = 0; k8 < BK / 8; k8++)",
        "        #pragma unroll",
        "        for (int i = 0; i < MT; i++)",
        "          #pragma unroll",
        "          for (int r = 0; r < 4; r++) SPLIT(ah[k8][i][r], al[k8][i][r], Ap[A_OFF(i, r, k8)]);",
        "      #pragma unroll",
        "      for (int j = 0; j < NTL; j++) {",
        "        uint bh[BK / 8][2], bl[BK / 8][2];",
        "        #pragma unroll",
        "        for (int k8 = 0; k8 < BK / 8; k8++)",
        "          #pragma unroll",
        "          for (int r = 0; r < 2; r++) SPLIT(bh[k8][r], bl[k8][r], Bp[B_OFF(j, r, k8)]);",
        "        #pragma unroll",
        "        for (int i = 0; i < MT; i++) {",
        "          float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};",
        "          #pragma unroll",
        "          for (int k8 = 0; k8 < BK / 8; k8++) {",
        *("            " + p for p in prods),
        "          }",
        "          acc[i][j][0] += d[0]; acc[i][j][1] += d[1]; acc[i][j][2] += d[2]; acc[i][j][3] += d[3];",
        "        }",
        "      }",
        "    }"])


class _CopyPlan:
    """Which thread copies which chunk of the A and B tiles from global to local memory.

    Chunk q of a thread covers tile row r0 + R(q), columns c0 + C(q) .. + vec - 1, where
    (r0, c0) come from the thread id and R(q), C(q) are compile-time expressions: the row of
    `vec`-wide chunks either fits the thread count a whole number of times or is a whole
    number of thread counts wide (checked by TcSearchSpace)."""

    def __init__(self, s: TcSchedule, layout: TcLayout) -> None:
        self.s, self.layout = s, layout

    def _ops(self):
        s, lay = self.s, self.layout
        # (name, k_contiguous, outer tile width, aligned)
        yield "A", not lay.trans_a, s.block_m, lay.aligned_a
        yield "B", lay.trans_b, s.block_n, lay.aligned_b

    def defines(self) -> str:
        code = []
        nt = self.s.threads
        for name, kcont, outer, aligned in self._ops():
            vec, per_row, chunks = _geometry(self.s, kcont, outer, aligned)
            if nt % per_row == 0:
                r, c = f"((Q) * {nt // per_row})", "0"
            else:
                f = per_row // nt
                r, c = f"((Q) / {f})", f"(((Q) % {f}) * {nt * vec})"
            lim = "M" if name == "A" else "N"
            ld = "lda" if name == "A" else "ldb"
            lds = "LDAS" if name == "A" else "LDBS"
            code.append(f"#define {name}_VEC {vec}\n#define {name}_PER_ROW {per_row}\n"
                        f"#define {name}_CHUNKS {chunks}\n#define {name}_R(Q) {r}\n#define {name}_C(Q) {c}")
            # bytes of chunk Q inside the matrix (zero-filled beyond), and its source
            if kcont:  # tile row = outer index, column = k
                code.append(f"#define {name}_BYTES(Q, K0) ((o{name} + {name}_R(Q)) < {lim} ? "
                            f"clamp(K - ((K0) + {name}c + {name}_C(Q)), 0, {vec}) * 4 : 0)")
                code.append(f"#define {name}_SRC(Q, K0) ({name} + g{name} + (long){name}_R(Q) * {ld}"
                            f" + {name}_C(Q) + (K0))")
            else:  # tile row = k, column = outer index
                code.append(f"#define {name}_BYTES(Q, K0) (((K0) + {name}r + {name}_R(Q)) < K ? "
                            f"clamp({lim} - (o{name} + {name}_C(Q)), 0, {vec}) * 4 : 0)")
                code.append(f"#define {name}_SRC(Q, K0) ({name} + g{name} + (long)((K0) + {name}_R(Q))"
                            f" * {ld} + {name}_C(Q))")
            if self.s.swizzle:
                loc = (f"SWLOC_K({name}r + {name}_R(Q), {name}c + {name}_C(Q))" if kcont else
                       f"SWLOC_MN({name}r + {name}_R(Q), {name}c + {name}_C(Q), {lds})")
                code.append(f"#define {name}_LOC(Q) ({loc})")
            else:
                code.append(f"#define {name}_LOC(Q) (l{name} + {name}_R(Q) * {lds} + {name}_C(Q))")
        return "\n".join(code)

    def setup(self) -> str:
        code = []
        for name, kcont, outer, aligned in self._ops():
            o0 = "m0" if name == "A" else "n0"
            ld = "lda" if name == "A" else "ldb"
            lds = "LDAS" if name == "A" else "LDBS"
            code.append(f"  const int {name}r = tid / {name}_PER_ROW, "
                        f"{name}c = (tid % {name}_PER_ROW) * {name}_VEC;")
            if kcont:
                code.append(f"  const long g{name} = (long)({o0} + {name}r) * {ld} + {name}c;")
                code.append(f"  const int o{name} = {o0} + {name}r;")
            else:
                code.append(f"  const long g{name} = (long){name}r * {ld} + {o0} + {name}c;")
                code.append(f"  const int o{name} = {o0} + {name}c;")
            code.append(f"  const int l{name} = {name}r * {lds} + {name}c;")
        return "\n".join(code)

    def _vec(self, name: str, kcont: bool, outer: int, aligned: bool) -> int:
        return _geometry(self.s, kcont, outer, aligned)[0]

    def async_copy(self, k0: str, ws: str, indent: str) -> str:
        """cp.async of k-tile starting at k0 into stage ws (zero-filled beyond the edges).

        With `interior`, a tile wholly inside the matrices (the work-group's rows and
        columns, decided once, and this k-tile) takes a copy with no per-chunk bounds: ptxas
        spends about a dozen instructions per chunk on the clamps, as many as the k-tile's
        mma work issues in the TF32 kernel."""
        if not self.s.interior:
            return self._async_copy(k0, ws, indent, bounded=True)
        return "\n".join([
            f"{indent}if (inner_mn && ({k0}) + BK <= K) {{",
            self._async_copy(k0, ws, indent + "  ", bounded=False),
            f"{indent}}} else {{",
            self._async_copy(k0, ws, indent + "  ", bounded=True),
            f"{indent}}}"])

    def _async_copy(self, k0: str, ws: str, indent: str, bounded: bool) -> str:
        code = []
        for name, kcont, outer, aligned in self._ops():
            vec = self._vec(name, kcont, outer, aligned)
            op = "CP16" if vec == 4 else "CP4"
            base, local, stage = ("sA", "As", "STA") if name == "A" else ("sB", "Bs", "STB")
            dst = f"{base} + (uint)((({ws}) * {stage} + {name}_LOC(q)) * 4)"
            if bounded:
                code += ["#pragma unroll",
                         f"for (int q = 0; q < {name}_CHUNKS; q++) {{",
                         f"  const int nb = {name}_BYTES(q, {k0});",
                         f"  {op}({local}, {dst}, nb > 0 ? {name}_SRC(q, {k0}) : {name}, nb);",
                         "}"]
            else:
                code += ["#pragma unroll",
                         f"for (int q = 0; q < {name}_CHUNKS; q++)",
                         f"  {op}({local}, {dst}, {name}_SRC(q, {k0}), {4 * vec});"]
        return "\n".join(indent + line for line in code)

    def reg_decl(self) -> str:
        return "\n".join(
            f"  {'float4' if self._vec(*op) == 4 else 'float'} r{op[0]}[{op[0]}_CHUNKS];"
            for op in self._ops())

    def reg_load(self, k0: str, indent: str) -> str:
        """Registers <- k-tile starting at k0 (two-stage staging without cp.async)."""
        code = []
        for name, kcont, outer, aligned in self._ops():
            code += ["#pragma unroll",
                     f"for (int q = 0; q < {name}_CHUNKS; q++) {{",
                     f"  const int nb = {name}_BYTES(q, {k0});",
                     f"  __global const float* src = nb > 0 ? {name}_SRC(q, {k0}) : {name};"]
            if self._vec(name, kcont, outer, aligned) == 4:
                code += ["  float4 v = (float4)(0.0f);",
                         "  if (nb == 16) v = *((__global const float4*)src);",
                         "  else { if (nb > 0) v.s0 = src[0]; if (nb > 4) v.s1 = src[1];"
                         " if (nb > 8) v.s2 = src[2]; }",
                         f"  r{name}[q] = v;"]
            else:
                code.append(f"  r{name}[q] = nb > 0 ? src[0] : 0.0f;")
            code.append("}")
        return "\n".join(indent + line for line in code)

    def reg_store(self, ws: str, indent: str) -> str:
        code = []
        for name, kcont, outer, aligned in self._ops():
            local, stage = ("As", "STA") if name == "A" else ("Bs", "STB")
            code += ["#pragma unroll", f"for (int q = 0; q < {name}_CHUNKS; q++)"]
            if self._vec(name, kcont, outer, aligned) == 4:
                code.append(f"  *((__local float4*)({local} + ({ws}) * {stage} + {name}_LOC(q)))"
                            f" = r{name}[q];")
            else:
                code.append(f"  {local}[({ws}) * {stage} + {name}_LOC(q)] = r{name}[q];")
        return "\n".join(indent + line for line in code)


def _geometry(s: TcSchedule, kcont: bool, outer: int, aligned: bool) -> tuple[int, int, int]:
    """(vector width, chunks per tile row, chunks per thread) of one operand's tile copy."""
    vec = 4 if aligned else 1
    per_row = (s.block_k if kcont else outer) // vec
    return vec, per_row, outer * s.block_k // vec // s.threads


def copy_fits(s: TcSchedule, layout: TcLayout) -> bool:
    """The tile copy's chunk rows and the thread count divide one another (both operands)."""
    nt = s.threads
    for kcont, outer, aligned in ((not layout.trans_a, s.block_m, layout.aligned_a),
                                  (layout.trans_b, s.block_n, layout.aligned_b)):
        vec, per_row, _ = _geometry(s, kcont, outer, aligned)
        if (outer * s.block_k) % (vec * nt) or (nt % per_row and per_row % nt):
            return False
    return True


def source_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("//"))
