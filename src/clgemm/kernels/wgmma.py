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
slower on the H200: benchmarks/tc/h200/wgmma). A work-group is `warpgroups` x 128 threads;
each warpgroup computes block_m / warpgroups rows as m64 blocks of one wgmma m64n{block_n}k8
per k8 step; `in_flight` wgmma groups stay outstanding across k-tiles.
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
    warpgroups: int = 2
    in_flight: int = 1
    swizzle: int = 64  # bytes; 0: interleaved core matrices, no swizzle

    @property
    def threads(self) -> int:
        return 128 * self.warpgroups

    @property
    def m64_per_warpgroup(self) -> int:
        return self.block_m // 64 // self.warpgroups

    @property
    def accumulators(self) -> int:  # float registers per thread
        return self.m64_per_warpgroup * self.block_n // 2

    def local_bytes(self) -> int:
        return 4 * self.stages * (self.block_m + self.block_n) * self.block_k

    def key(self) -> str:
        return (f"wg-tf32-m{self.block_m}n{self.block_n}k{self.block_k}-s{self.stages}"
                f"-w{self.warpgroups}-q{self.in_flight}-z{self.swizzle}")

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
        if self.accumulators > 128:
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


# Measured on the H200 (benchmarks/tc/h200/wgmma/record2): fastest of the tried schedules at
# 1400, 2048 and 4096 (the one-warpgroup variant led at 3072: 208 against 183 TFLOPS).
DEFAULT = WgSchedule()

_LAYOUT_TYPE = {128: 1, 64: 2, 32: 3}  # the descriptor's 2-bit layout field (bits 62-63)


def render_wgmma(s: WgSchedule) -> str:
    s.check(1 << 30)
    nacc = s.block_n // 2
    acc_list = ", ".join(f"%{i}" for i in range(nacc))
    acc_ops = ", ".join(f'"+f"(acc[H][{i}])' for i in range(nacc))
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
    return f"""// clgemm wgmma kernel {s.key()}
#define BM {s.block_m}
#define BN {s.block_n}
#define BK {s.block_k}
#define STAGES {s.stages}
#define HPW {s.m64_per_warpgroup}
#define NT {s.threads}
#define SHARED_ADDR(x) ((uint)(size_t)(x))
#define TILE_OFF(r, k) {tile_off}
#define CP16(dst, src, bytes) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory")
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
#define MARK(text) asm volatile("// CLGEMM_" text ::: "memory")
#define WAIT(H, n) asm volatile("// CLGEMM_WGMMA_WAIT" #n : {acc_ops} :: "memory")
#define WGMMA(H, da, db) asm volatile("// CLGEMM_WGMMA_M64N{s.block_n}K8 {{{acc_list}}}, %{nacc}, %{nacc + 1}, %{nacc + 2};" : {acc_ops} : "l"(da), "l"(db), "r"(one))

ulong wg_desc(uint addr) {{ return {desc}; }}

__attribute__((reqd_work_group_size(NT, 1, 1)))
__kernel void {KERNEL_NAME}(const int M, const int N, const int K,
    const float alpha, const float beta,
    __global const float* restrict A, const int lda, const int a_off,
    __global const float* restrict B, const int ldb, const int b_off,
    __global float* C, const int ldc, const int c_off,
    __global int* nonfinite)
{{
  __local float As[STAGES * BM * BK] __attribute__((aligned(1024)));
  __local float Bs[STAGES * BN * BK] __attribute__((aligned(1024)));
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

  // 16-byte chunk c of a tile: row c / (BK / 4), K quad c % (BK / 4); a chunk past K is
  // partly or wholly zero-filled (cp.async's source size), rows past M or N wholly
  #define COPY(kt, st) do {{ \\
    const int k0_ = (kt) * BK; \\
    _Pragma("unroll") for (int q = 0; q < BM * BK / 4 / NT; q++) {{ \\
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \\
      const int nb = m0 + r < M ? clamp(K - (k0_ + kq), 0, 4) * 4 : 0; \\
      CP16(sA + (st) * BM * BK * 4 + TILE_OFF(r, kq), nb ? A + (long)(m0 + r) * lda + k0_ + kq : A, nb); }} \\
    _Pragma("unroll") for (int q = 0; q < BN * BK / 4 / NT; q++) {{ \\
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \\
      const int nb = n0 + r < N ? clamp(K - (k0_ + kq), 0, 4) * 4 : 0; \\
      CP16(sB + (st) * BN * BK * 4 + TILE_OFF(r, kq), nb ? B + (long)(n0 + r) * ldb + k0_ + kq : B, nb); }} \\
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
    #pragma unroll
    for (int s8 = 0; s8 < BK / 8; s8++) {{
      const ulong db = wg_desc(sB + st * BN * BK * 4 + s8 * {k8_bytes});
      #pragma unroll
      for (int H = 0; H < HPW; H++) {{
        const ulong da = wg_desc(sA + st * BM * BK * 4 + (wg * HPW + H) * {m64_bytes} + s8 * {k8_bytes});
        WGMMA(H, da, db);
      }}
    }}
    MARK("WGMMA_COMMIT");
    // the accumulators change when a group completes, not at the (comment) wgmma: the wait
    // names them all, so the compiler keeps them in their registers across it
    #pragma unroll
    for (int H = 0; H < HPW; H++) WAIT(H, {s.in_flight});
    {copy_next if s.in_flight == 1 else ""}
  }}
  #pragma unroll
  for (int H = 0; H < HPW; H++) WAIT(H, 0);
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
