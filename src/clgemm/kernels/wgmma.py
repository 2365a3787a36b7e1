"""TF32 GEMM on Hopper's warpgroup MMA (`wgmma`), from NVIDIA's OpenCL.

NVIDIA's OpenCL compiler targets sm_90, where `wgmma` is refused. The kernel is OpenCL C whose
inline assembly holds comments naming the wgmma operands (`// CLGEMM_WGMMA_M64N128K8 {%0, ...,
%63}, %64, %65, %66;`): the compiler allocates registers for them as for any asm statement and
prints the comment, register names filled in, into its PTX. `patch_ptx` turns the comments
into sm_90a instructions and the target into sm_90a; the runtime builds that PTX as a program
binary, which the driver compiles for the chip (benchmarks/tc/probe_sm90a.py showed the driver
accepts sm_90a PTX this way and refuses wgmma at sm_90).

Operands: A stored M x K and B stored N x K, both K-contiguous (TF32 wgmma reads both operands
K-major from shared memory; other layouts are transposed into scratch first, by tc.py), with
leading dimensions and offsets that are multiples of 4 floats (16-byte cp.async chunks); any
M, N, K (edge chunks are zero-filled, stores are guarded). C = alpha A B^T + beta C, row-major.
TF32: the tensor cores read the top 19 bits of each float32 operand (a truncation): relative
error about 8e-4 (cuBLAS's TF32, which rounds, 3e-4).

Shared tiles use the 32/64/128-byte swizzle of the wgmma descriptor (one tile row is one
swizzle wide: block_k = swizzle / 4 floats), or none (the interleaved core-matrix layout, 2x
slower on the H200: records/nvidia-h200/tc-notes.md). A work-group is `warpgroups` x 128 threads;
each warpgroup computes block_m / warpgroups rows as m64 blocks of one wgmma m64n{block_n}k8
per k8 step; `in_flight` wgmma groups stay outstanding across k-tiles.

3xTF32 (`splits=3`): float32-level accuracy on the tensor cores. Each operand arrives split
(tc.py's split kernel: hi = float32 rounded to TF32 on its bits, lo = x - hi, exact in
float32) as two K-major arrays, hi and lo, `a_lo` / `b_lo` floats apart; a stage holds four
tiles. Per k8 step three wgmma (a_lo b_hi, a_hi b_lo, a_hi b_hi: small terms first, a_lo b_lo
below float32's resolution) chain into a fresh accumulator that starts each k-tile from zero
(scale-d off) and is added into the float32 total with an ordinary add after the tile: the
tensor core's own accumulate does not round to nearest, and a chain over all of K erred 39x
numpy's float32 error in the mma.sync family (research/.../tensorcore/card.toml, fold0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ScheduleError

KERNEL_NAME = "clgemm_wgmma"


@dataclass(frozen=True)
class WgSchedule:
    block_m: int = 128
    block_n: int = 128
    block_k: int = 16
    stages: int = 3
    warpgroups: int = 1
    in_flight: int = 1
    swizzle: int = 64  # bytes; 0: interleaved core matrices, no swizzle
    splits: int = 1  # 1: TF32; 3: 3xTF32 (hi/lo operands, three products, folded per k-tile)

    @property
    def mode(self) -> str:
        return "tf32" if self.splits == 1 else "3xtf32"

    @property
    def tiles_per_operand(self) -> int:  # shared tiles per operand and stage: hi (and lo)
        return 1 if self.splits == 1 else 2

    @property
    def threads(self) -> int:
        return 128 * self.warpgroups

    @property
    def m64_per_warpgroup(self) -> int:
        return self.block_m // 64 // self.warpgroups

    @property
    def accumulators(self) -> int:  # float registers per thread
        return self.m64_per_warpgroup * self.block_n // 2

    def registers(self) -> int:  # accumulator floats per thread: totals (and one k-tile's chain)
        return self.accumulators * (1 if self.splits == 1 else 2)

    def local_bytes(self) -> int:
        return (4 * self.stages * (self.block_m + self.block_n) * self.block_k
                * self.tiles_per_operand)

    def key(self) -> str:
        return (f"wg-{self.mode}-m{self.block_m}n{self.block_n}k{self.block_k}-s{self.stages}"
                f"-w{self.warpgroups}-q{self.in_flight}-z{self.swizzle}")

    @classmethod
    def from_key(cls, key: str) -> "WgSchedule":
        """The schedule of a key() ("wg-3xtf32-m64n128k16-s2-w1-q0-z64")."""
        m = re.fullmatch(r"wg-(tf32|3xtf32)-m(\d+)n(\d+)k(\d+)-s(\d+)-w(\d+)-q(\d+)-z(\d+)", key)
        if m is None:
            raise ScheduleError(f"not a wgmma schedule key: {key!r}")
        mode, *v = m.groups()
        bm, bn, bk, st, wg, q, z = (int(x) for x in v)
        return cls(block_m=bm, block_n=bn, block_k=bk, stages=st, warpgroups=wg, in_flight=q,
                   swizzle=z, splits=1 if mode == "tf32" else 3)

    def violations(self, local_mem_bytes: int = 49152) -> list[str]:
        bad = []
        if self.warpgroups < 1 or self.block_m % (64 * self.warpgroups):
            bad.append("block_m is whole m64 blocks per warpgroup")
        if self.block_n not in (64, 128, 256):
            bad.append("block_n is 64, 128 or 256 (one wgmma wide)")
        if self.block_k % 8 or self.block_k <= 0:
            bad.append("block_k is whole k8 steps")
        one_row = self.swizzle == 4 * self.block_k
        if self.swizzle not in (0, 32, 64, 128) or (self.swizzle and not one_row):
            bad.append("a swizzled tile row is one swizzle wide (block_k = swizzle / 4)")
        if self.stages < 2:
            bad.append("at least two stages")
        if self.in_flight not in (0, 1):
            bad.append("in_flight is 0 or 1")
        if self.splits not in (1, 3):
            bad.append("splits is 1 (TF32) or 3 (3xTF32)")
        if self.splits == 3 and self.in_flight != 0:
            bad.append("3xTF32 folds each k-tile's chain when it completes: in_flight 0")
        if self.registers() > 128:
            bad.append("at most 128 accumulators per thread")
        for rows in (self.block_m, self.block_n):
            if (rows * self.block_k // 4) % self.threads:
                bad.append("tiles split evenly into 16-byte chunks per thread")
                break
        if self.local_bytes() > local_mem_bytes:
            bad.append("local memory")
        return bad

    def check(self, local_mem_bytes: int = 49152) -> None:
        bad = self.violations(local_mem_bytes)
        if bad:
            raise ScheduleError(f"wgmma schedule {self.key()} is not valid: " + ", ".join(bad))


# The library's kernel on the H200 (records/nvidia-h200/2026-12-02-wgmma-lane2, lane3): one warpgroup
# ahead of two at 2048, 3072 and 4096 (174 against 158 TFLOPS at 3072), behind at 1400; with
# interior copies (wgmma3/run2) 210-215 against 169 at 3072.
DEFAULT = WgSchedule()
# 3xTF32: four tiles per stage, so 48 KiB at 64 x 128 x 16 and two stages. One warpgroup per
# work-group (totals and one chain: 128 registers) lets three work-groups share an SM, whose
# waits and folds then overlap each other's wgmma: fastest of five schedules at 1400, 3072 and
# 4096 on the H200 (records/nvidia-h200/2026-12-02-wgmma3x-run1: 92 TFLOPS at 3072 against 57-63 for the
# two-warpgroup ones); 128 x 64 x 16 with two warpgroups led at 2048, where 64 x 128 tiles
# leave a mostly empty second wave (tc.wgmma_3x_schedule picks between them).
DEFAULT_3X = WgSchedule(block_m=64, block_k=16, stages=2, warpgroups=1, in_flight=0,
                        swizzle=64, splits=3)
WIDE_3X = WgSchedule(block_m=128, block_n=64, block_k=16, stages=2, warpgroups=2, in_flight=0,
                     swizzle=64, splits=3)


def resident_groups(s: WgSchedule, sm_registers: int = 65536, sm_local_bytes: int = 233472,
                    sm_threads: int = 2048) -> int:
    """Work-groups of `s` one SM holds at once (Hopper's limits by default), estimated: the
    registers per thread are taken as the accumulators plus 40 (a local sm_90a build of the
    3xTF32 schedules used 96-168, within 8 of this), the driver's 1 KiB per work-group of
    shared memory added."""
    regs = -(-(s.registers() + 40) // 8) * 8
    return max(1, min(sm_registers // (s.threads * regs),
                      sm_local_bytes // (s.local_bytes() + 1024),
                      sm_threads // s.threads))


_LAYOUT_TYPE = {128: 1, 64: 2, 32: 3}  # the descriptor's 2-bit layout field (bits 62-63)


def render_wgmma(s: WgSchedule) -> str:
    s.check(1 << 30)
    three = s.splits == 3
    nacc = s.block_n // 2
    acc_list = ", ".join(f"%{i}" for i in range(nacc))
    acc_ops = ", ".join(f'"+f"(ACC[H][{i}])' for i in range(nacc))
    if s.swizzle:
        # row r of a tile is one swizzle (block_k floats) wide; its 16-byte chunk c sits at
        # chunk c ^ ((r * swizzle / 128) mod chunks): the hardware's swizzle pattern
        tile_off = (f"((r) * {s.swizzle} + ((((k) >> 2) ^ ((((r) * {s.swizzle}) >> 7) & "
                    f"{s.swizzle // 16 - 1})) << 4) + ((k) & 3) * 4)")
        desc = (f"(ulong)((addr & 0x3FFFF) >> 4) | (1ul << 16)"
                f" | ((ulong)({8 * s.swizzle} >> 4) << 32) | ((ulong){_LAYOUT_TYPE[s.swizzle]} << 62)")
        m64_bytes, k8_bytes = 64 * s.swizzle, 32
    else:
        # 8-row x 16-byte core matrices: along K 128 bytes apart (LBO), along rows SBO
        sbo = s.block_k // 4 * 128
        tile_off = f"(((r) >> 3) * {sbo} + ((k) >> 2) * 128 + ((r) & 7) * 16 + ((k) & 3) * 4)"
        desc = (f"(ulong)((addr & 0x3FFFF) >> 4) | ((ulong)(128 >> 4) << 16)"
                f" | ((ulong)({sbo} >> 4) << 32)")
        m64_bytes, k8_bytes = 8 * sbo, 256
    copy_next = ("if (kt + STAGES - 1 < KT) COPY(kt + STAGES - 1, (kt + STAGES - 1) % STAGES);\n"
                 "    CP_COMMIT();")
    # 3xTF32: each chunk copied twice, hi from X and lo from X + x_lo, into the stage's hi
    # and lo tiles (BM * BK * 4 bytes apart)
    lo_a = " CP16(d_ + BM * BK * 4, s_ + a_lo, nb);" if three else ""
    lo_b = " CP16(d_ + BN * BK * 4, s_ + b_lo, nb);" if three else ""
    if three:
        mma = f"""#pragma unroll
    for (int s8 = 0; s8 < BK / 8; s8++) {{
      const uint b_ = sB + st * B_STAGE + s8 * {k8_bytes};
      const ulong bh = wg_desc(b_), bl = wg_desc(b_ + BN * BK * 4);
      #pragma unroll
      for (int H = 0; H < HPW; H++) {{
        const uint a_ = sA + st * A_STAGE + (wg * HPW + H) * {m64_bytes} + s8 * {k8_bytes};
        const ulong ah = wg_desc(a_), al = wg_desc(a_ + BM * BK * 4);
        WGMMA(fr, H, al, bh, s8 ? one : zero);  // the tile's chain starts from zero
        WGMMA(fr, H, ah, bl, one);
        WGMMA(fr, H, ah, bh, one);
      }}
    }}
    MARK("WGMMA_COMMIT");
    #pragma unroll
    for (int H = 0; H < HPW; H++) WAIT(fr, H, 0);
    #pragma unroll
    for (int H = 0; H < HPW; H++)
      #pragma unroll
      for (int i = 0; i < {nacc}; i++) acc[H][i] += fr[H][i];  // round-to-nearest fold"""
        lo_args = ",\n    const long a_lo, const long b_lo"
        fresh = f"""float fr[HPW][{nacc}];  // one k-tile's chain
  #pragma unroll
  for (int h = 0; h < HPW; h++)
    #pragma unroll
    for (int i = 0; i < {nacc}; i++) fr[h][i] = 0.0f;
  const int zero = K < 0;  // 0 in a register: scale-d off"""
    else:
        mma = f"""#pragma unroll
    for (int s8 = 0; s8 < BK / 8; s8++) {{
      const ulong db = wg_desc(sB + st * B_STAGE + s8 * {k8_bytes});
      #pragma unroll
      for (int H = 0; H < HPW; H++) {{
        const ulong da = wg_desc(sA + st * A_STAGE + (wg * HPW + H) * {m64_bytes} + s8 * {k8_bytes});
        WGMMA(acc, H, da, db, one);
      }}
    }}
    MARK("WGMMA_COMMIT");
    // the accumulators change when a group completes, not at the (comment) wgmma: the wait
    // names them all, so the compiler keeps them in their registers across it
    #pragma unroll
    for (int H = 0; H < HPW; H++) WAIT(acc, H, {s.in_flight});"""
        lo_args = fresh = ""
    final_wait = "" if three else """#pragma unroll
  for (int H = 0; H < HPW; H++) WAIT(acc, H, 0);"""
    tiles = s.tiles_per_operand
    return f"""// clgemm wgmma kernel {s.key()}
#define BM {s.block_m}
#define BN {s.block_n}
#define BK {s.block_k}
#define STAGES {s.stages}
#define HPW {s.m64_per_warpgroup}
#define NT {s.threads}
#define A_STAGE ({tiles} * BM * BK * 4)
#define B_STAGE ({tiles} * BN * BK * 4)
#define SHARED_ADDR(x) ((uint)(size_t)(x))
#define TILE_OFF(r, k) {tile_off}
#define CP16(dst, src, bytes) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory")
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
#define MARK(text) asm volatile("// CLGEMM_" text ::: "memory")
#define WAIT(ACC, H, n) asm volatile("// CLGEMM_WGMMA_WAIT" #n : {acc_ops} :: "memory")
#define WGMMA(ACC, H, da, db, d) asm volatile("// CLGEMM_WGMMA_M64N{s.block_n}K8 {{{acc_list}}}, %{nacc}, %{nacc + 1}, %{nacc + 2};" : {acc_ops} : "l"(da), "l"(db), "r"(d))

ulong wg_desc(uint addr) {{ return {desc}; }}

__attribute__((reqd_work_group_size(NT, 1, 1)))
__kernel void {KERNEL_NAME}(const int M, const int N, const int K,
    const float alpha, const float beta,
    __global const float* restrict A, const int lda, const int a_off,
    __global const float* restrict B, const int ldb, const int b_off,
    __global float* C, const int ldc, const int c_off,
    __global int* nonfinite{lo_args})
{{
  __local float As[STAGES * {tiles} * BM * BK] __attribute__((aligned(1024)));
  __local float Bs[STAGES * {tiles} * BN * BK] __attribute__((aligned(1024)));
  A += a_off; B += b_off; C += c_off;
  const int tid = get_local_id(0), wg = tid >> 7;
  const int tiles_n = (N + BN - 1) / BN;
  const int m0 = (get_group_id(0) / tiles_n) * BM, n0 = (get_group_id(0) % tiles_n) * BN;
  const int KT = (K + BK - 1) / BK;
  const uint sA = SHARED_ADDR(As), sB = SHARED_ADDR(Bs);
  const int one = get_local_size(0) > 0;  // 1 in a register: wgmma's scale-d predicate
  float acc[HPW][{nacc}];
  #pragma unroll
  for (int h = 0; h < HPW; h++)
    #pragma unroll
    for (int i = 0; i < {nacc}; i++) acc[h][i] = 0.0f;
  {fresh}

  // 16-byte chunk c of a tile: row c / (BK / 4), K quad c % (BK / 4). A k-tile wholly inside
  // the matrices copies without bounds (the clamps cost ~56 of the k-tile loop's 200
  // instructions in a local sm_90a build); at the edges a chunk past K is partly or wholly
  // zero-filled (cp.async's source size), rows past M or N wholly
  const int inner_mn = m0 + BM <= M && n0 + BN <= N;
  #define COPY_TILE(kt, st, BOUNDED) do {{ \\
    const int k0_ = (kt) * BK; \\
    _Pragma("unroll") for (int q = 0; q < BM * BK / 4 / NT; q++) {{ \\
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \\
      const int nb = !(BOUNDED) ? 16 : m0 + r < M ? clamp(K - (k0_ + kq), 0, 4) * 4 : 0; \\
      const uint d_ = sA + (st) * A_STAGE + TILE_OFF(r, kq); \\
      __global const float* s_ = nb ? A + (long)(m0 + r) * lda + k0_ + kq : A; \\
      CP16(d_, s_, nb);{lo_a} }} \\
    _Pragma("unroll") for (int q = 0; q < BN * BK / 4 / NT; q++) {{ \\
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \\
      const int nb = !(BOUNDED) ? 16 : n0 + r < N ? clamp(K - (k0_ + kq), 0, 4) * 4 : 0; \\
      const uint d_ = sB + (st) * B_STAGE + TILE_OFF(r, kq); \\
      __global const float* s_ = nb ? B + (long)(n0 + r) * ldb + k0_ + kq : B; \\
      CP16(d_, s_, nb);{lo_b} }} \\
  }} while (0)
  #define COPY(kt, st) do {{ \\
    if (inner_mn && ((kt) + 1) * BK <= K) COPY_TILE(kt, st, 0); else COPY_TILE(kt, st, 1); \\
  }} while (0)

  for (int p = 0; p < STAGES - 1; p++) {{
    if (p < KT) COPY(p, p);
    CP_COMMIT();
  }}
  for (int kt = 0; kt < KT; kt++) {{
    const int st = kt % STAGES;
    CP_WAIT({s.stages - 2});
    MARK("FENCE_PROXY_ASYNC");  // cp.async wrote through the generic proxy; wgmma reads async
    barrier(CLK_LOCAL_MEM_FENCE);
    {copy_next if s.in_flight == 0 else ""}
    MARK("WGMMA_FENCE");
    {mma}
    {copy_next if s.in_flight == 1 else ""}
  }}
  {final_wait}
  CP_WAIT(0);
  // accumulators of m64nNk8 (f32): warp w of the warpgroup holds rows 16w..16w+15; register
  // 4j+e of lane (g = lane / 4, q = lane % 4) is row g + 8 (e >> 1), column 8j + 2q + (e & 1)
  const int w = (tid & 127) >> 5, g = (tid & 31) >> 2, q = tid & 3;
  int bad = 0;
  #pragma unroll
  for (int H = 0; H < HPW; H++)
    #pragma unroll
    for (int j = 0; j < {nacc // 4}; j++)
      #pragma unroll
      for (int e = 0; e < 4; e++) {{
        const int r = m0 + (wg * HPW + H) * 64 + 16 * w + g + 8 * (e >> 1);
        const int cc = n0 + 8 * j + 2 * q + (e & 1);
        if (r < M && cc < N) {{
          __global float* cp = C + (long)r * ldc + cc;
          float v = alpha * acc[H][4 * j + e];
          if (beta != 0.0f) v = fma(beta, *cp, v);
          if (!isfinite(v)) bad = 1;
          *cp = v;
        }}
      }}
  if (bad) nonfinite[0] = 1;
}}
"""


_MARKERS = (("FENCE_PROXY_ASYNC", "fence.proxy.async.shared::cta;"),
            ("WGMMA_FENCE", "wgmma.fence.sync.aligned;"),
            ("WGMMA_COMMIT", "wgmma.commit_group.sync.aligned;"),
            ("WGMMA_WAIT0", "wgmma.wait_group.sync.aligned 0;"),
            ("WGMMA_WAIT1", "wgmma.wait_group.sync.aligned 1;"))

_MMA = re.compile(r"//\s*CLGEMM_WGMMA_M64N(\d+)K8\s*(\{[^}]*\}),\s*([^,]+),\s*([^,]+),\s*([^;\s]+);")


def patch_ptx(ptx: str) -> str:
    """The PTX of `render_wgmma`'s source as the OpenCL compiler wrote it -> sm_90a PTX with
    the wgmma instructions in place of their marker comments."""
    out, count = _MMA.subn(
        r"{ .reg .pred p; setp.ne.b32 p, \5, 0; "
        r"wgmma.mma_async.sync.aligned.m64n\1k8.f32.tf32.tf32 \2, \3, \4, p, 1, 1; }", ptx)
    if count == 0:
        raise ValueError("no wgmma marker in the PTX: the compiler dropped the asm comments")
    for marker, instruction in _MARKERS:
        out = re.sub(r"//\s*CLGEMM_" + marker + r"\b", instruction, out)
    if "CLGEMM_" in out:
        raise ValueError("an unknown clgemm marker is left in the PTX")
    out, targets = re.subn(r"\.target sm_90\b", ".target sm_90a", out)
    if targets != 1:
        raise ValueError("the PTX does not target sm_90: wgmma needs an sm_90 device")
    return out
