"""Lab proof of concept: TF32 GEMM on Hopper's warpgroup MMA (`wgmma`) from NVIDIA's OpenCL.

NVIDIA's OpenCL compiler targets sm_90, where `wgmma` is refused (probe_sm90a.py). The kernel
below is OpenCL C whose inline assembly holds *comments* that name the wgmma operands
(`// WGMMA {%0, ..., %63}, %64, %65, %66;`): the compiler allocates the registers as for any
asm statement and prints the comment with their names into the PTX. The PTX is then patched
(comments -> wgmma instructions, `.target sm_90` -> `sm_90a`) and built again as a program
binary, which the driver JIT-compiles for the chip.

Layout: C = A B^T-stored, A row-major M x K, B stored N x K (K-major: tf32 wgmma reads both
operands K-major from shared memory), C row-major. Work-group = one warpgroup (128 threads)
computing a BM x 128 tile as BM/64 wgmma m64n128k8 per k8 step. Shared tiles are stored in
the no-swizzle (interleaved) canonical layout: 8-row x 16-byte core matrices, 128 bytes
each, core matrices along K adjacent (LBO = 128 bytes), rows of core matrices SBO apart.

    source .carry/gpu-env.sh; PYTHONPATH=src CLGEMM_DEVICE=NVIDIA python3 benchmarks/tc/wgmma_poc.py OUT
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass

import numpy as np
import pyopencl as cl


@dataclass(frozen=True)
class Poc:
    bm: int = 128  # rows per work-group: 64 per wgmma m64, `wgs` warpgroups side by side
    bk: int = 16  # floats of K per stage (a multiple of 8)
    stages: int = 3
    swap_lbo_sbo: int = 0  # 1: the other reading of the descriptor's two offsets
    bn: int = 128  # columns per work-group: one wgmma m64n{bn}k8 covers them
    wgs: int = 1  # warpgroups (128 threads each) per work-group
    depth: int = 0  # wgmma groups left in flight across k-tiles (0: wait for each)
    swz: int = 0  # shared-memory swizzle in bytes (32, 64, 128; a tile row is one swizzle wide)

    @property
    def key(self) -> str:
        return (f"wg-tf32-m{self.bm}n{self.bn}k{self.bk}-s{self.stages}-w{self.wgs}"
                f"-q{self.depth}-d{self.swap_lbo_sbo}" + (f"-z{self.swz}" if self.swz else ""))

    @property
    def nacc(self) -> int:  # f32 accumulators per thread per m64 x bn
        return self.bn // 2

    @property
    def hpw(self) -> int:  # m64 blocks per warpgroup
        return self.bm // 64 // self.wgs


def source(p: Poc) -> str:
    nacc, threads = p.nacc, 128 * p.wgs
    acc_list = ", ".join(f"%{i}" for i in range(nacc))
    acc_args = ", ".join(f'"+f"(acc[H][{i}])' for i in range(nacc))
    a_chunks, b_chunks = p.bm * p.bk // 4 // threads, p.bn * p.bk // 4 // threads
    assert a_chunks * threads * 4 == p.bm * p.bk and b_chunks * threads * 4 == p.bn * p.bk
    if p.swz:
        assert p.bk * 4 == p.swz, "a swizzled tile row is one swizzle wide"
        layout = {32: 3, 64: 2, 128: 1}[p.swz]
        tile_off = (f"((r) * {p.swz} + (((((k) >> 2) ^ ((((r) * {p.swz}) >> 7) & {p.swz // 16 - 1}))) << 4)"
                    " + ((k) & 3) * 4)")
        desc_body = (f"return (ulong)((addr & 0x3FFFF) >> 4) | (1ul << 16) | ((ulong)({8 * p.swz} >> 4) << 32)"
                     f" | ((ulong){layout} << 62);")
        half_rows = f"64 * {p.swz}"  # bytes from one m64 block to the next
        k8_step = "32"
    else:
        tile_off = "(((r) >> 3) * SBO + ((k) >> 2) * LBO + ((r) & 7) * 16 + ((k) & 3) * 4)"
        lead, stride = ("SBO", "LBO") if p.swap_lbo_sbo else ("LBO", "SBO")
        desc_body = (f"const ulong lead = {lead}, stride = {stride};\n"
                     "  return (ulong)((addr & 0x3FFFF) >> 4) | ((lead >> 4) << 16) | ((stride >> 4) << 32);")
        half_rows = "8 * SBO"
        k8_step = "2 * LBO"
    copy_next = "if (kt + STAGES - 1 < KT) COPY(kt + STAGES - 1, (kt + STAGES - 1) % STAGES);\n    CP_COMMIT();"
    return f"""
#define BM {p.bm}
#define BN {p.bn}
#define BK {p.bk}
#define STAGES {p.stages}
#define HPW {p.hpw}
#define NT {threads}
#define SBO ((BK / 4) * 128)
#define LBO 128
#define SHARED_ADDR(x) ((uint)(size_t)(x))
// the byte offset of element (r, k) in a K-major no-swizzle tile of 16-byte core rows
#define TILE_OFF(r, k) {tile_off}
#define CP16(dst, src, bytes) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory")
#define CP_COMMIT() asm volatile("cp.async.commit_group;" ::: "memory")
#define CP_WAIT(n) asm volatile("cp.async.wait_group " #n ";" ::: "memory")
#define MARK(text) asm volatile("// " text ::: "memory")
#define WAIT(H, n) asm volatile("// WGMMA_WAIT" #n : {acc_args} :: "memory")
#define WGMMA(H, da, db) asm volatile("// WGMMA_M64N{p.bn}K8 {{{acc_list}}}, %{nacc}, %{nacc + 1}, %{nacc + 2};" : {acc_args} : "l"(da), "l"(db), "r"(one))

ulong desc(uint addr) {{
  // start address >> 4 (14 bits), LBO >> 4 at bit 16, SBO >> 4 at bit 32, layout at bit 62
  {desc_body}
}}

__attribute__((reqd_work_group_size(NT, 1, 1)))
__kernel void wg_tf32(const int M, const int N, const int K,
                      __global const float* restrict A, const int lda,
                      __global const float* restrict Bt, const int ldb,
                      __global float* C, const int ldc)
{{
  __local float As[STAGES * BM * BK] __attribute__((aligned(1024)));
  __local float Bs[STAGES * BN * BK] __attribute__((aligned(1024)));
  const int tid = get_local_id(0), wg = tid >> 7;
  const int tiles_n = (N + BN - 1) / BN;
  const int m0 = (get_group_id(0) / tiles_n) * BM, n0 = (get_group_id(0) % tiles_n) * BN;
  const int KT = (K + BK - 1) / BK;
  const uint sA = SHARED_ADDR(As), sB = SHARED_ADDR(Bs);
  const int one = get_local_size(0) > 0;  // 1, as a register: wgmma's scale-d predicate
  float acc[HPW][{nacc}];
  #pragma unroll
  for (int h = 0; h < HPW; h++)
    #pragma unroll
    for (int i = 0; i < {nacc}; i++) acc[h][i] = 0.0f;

  // chunk c of a tile (16 bytes): row c / (BK/4), K quad c % (BK/4)
  #define COPY(kt, st) do {{ \
    const int k0_ = (kt) * BK; \
    _Pragma("unroll") for (int q = 0; q < {a_chunks}; q++) {{ \
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \
      const int ok = (m0 + r < M) && (k0_ + kq < K); \
      CP16(sA + (st) * BM * BK * 4 + TILE_OFF(r, kq), ok ? A + (long)(m0 + r) * lda + k0_ + kq : A, ok ? 16 : 0); }} \
    _Pragma("unroll") for (int q = 0; q < {b_chunks}; q++) {{ \
      const int c = tid + q * NT, r = c / (BK / 4), kq = (c % (BK / 4)) * 4; \
      const int ok = (n0 + r < N) && (k0_ + kq < K); \
      CP16(sB + (st) * BN * BK * 4 + TILE_OFF(r, kq), ok ? Bt + (long)(n0 + r) * ldb + k0_ + kq : Bt, ok ? 16 : 0); }} \
  }} while (0)

  for (int p = 0; p < STAGES - 1; p++) {{
    if (p < KT) COPY(p, p);
    CP_COMMIT();
  }}
  for (int kt = 0; kt < KT; kt++) {{
    const int st = kt % STAGES;
    CP_WAIT({p.stages - 2});
    MARK("FENCE_PROXY_ASYNC");
    barrier(CLK_LOCAL_MEM_FENCE);
    {copy_next if p.depth == 0 else ""}
    MARK("WGMMA_FENCE");
    #pragma unroll
    for (int s = 0; s < BK / 8; s++) {{
      const ulong db = desc(sB + st * BN * BK * 4 + s * {k8_step});
      #pragma unroll
      for (int H = 0; H < HPW; H++) {{
        const ulong da = desc(sA + st * BM * BK * 4 + (wg * HPW + H) * {half_rows} + s * {k8_step});
        WGMMA(H, da, db);
      }}
    }}
    MARK("WGMMA_COMMIT");
    // the accumulators change when a group completes, not at the (comment) wgmma: the wait
    // names them all, so the compiler keeps them in place across it
    #pragma unroll
    for (int H = 0; H < HPW; H++) WAIT(H, {p.depth});
    {copy_next if p.depth == 1 else ""}
  }}
  #pragma unroll
  for (int H = 0; H < HPW; H++) WAIT(H, 0);
  CP_WAIT(0);
  // accumulator layout of m64nNk8 (f32): warp w holds rows 16w..16w+15; register 4j+e of
  // lane (g = lane/4, q = lane%4) is row g + 8 (e >> 1), column 8j + 2q + (e & 1)
  const int w = (tid & 127) >> 5, g = (tid & 31) >> 2, q = tid & 3;
  #pragma unroll
  for (int H = 0; H < HPW; H++)
    #pragma unroll
    for (int j = 0; j < {nacc // 4}; j++)
      #pragma unroll
      for (int e = 0; e < 4; e++) {{
        const int r = m0 + (wg * HPW + H) * 64 + 16 * w + g + 8 * (e >> 1), c = n0 + 8 * j + 2 * q + (e & 1);
        if (r < M && c < N) C[(long)r * ldc + c] = acc[H][4 * j + e];
      }}
}}
"""


def patch(ptx: str) -> str:
    """The marker comments -> sm_90a instructions; the target -> sm_90a."""
    out, n = re.subn(r"//\s*WGMMA_M64N(\d+)K8\s*(\{[^}]*\}),\s*([^,]+),\s*([^,]+),\s*([^;\s]+);",
                     r"{ .reg .pred p; setp.ne.b32 p, \5, 0; "
                     r"wgmma.mma_async.sync.aligned.m64n\1k8.f32.tf32.tf32 \2, \3, \4, p, 1, 1; }",
                     ptx)
    if n == 0:
        raise RuntimeError("no wgmma marker in the PTX")
    for marker, instr in (("FENCE_PROXY_ASYNC", "fence.proxy.async.shared::cta;"),
                          ("WGMMA_FENCE", "wgmma.fence.sync.aligned;"),
                          ("WGMMA_COMMIT", "wgmma.commit_group.sync.aligned;"),
                          ("WGMMA_WAIT0", "wgmma.wait_group.sync.aligned 0;"),
                          ("WGMMA_WAIT1", "wgmma.wait_group.sync.aligned 1;")):
        out = re.sub(r"//\s*" + marker + r"\b", instr, out)
    return re.sub(r"\.target sm_90\b", ".target sm_90a", out)


TRANSPOSE_C = """
__kernel __attribute__((reqd_work_group_size(32, 8, 1)))
void transpose(const int R, const int Cn, __global const float* restrict X, const int ldx,
               __global float* restrict Y, const int ldy)
{
  // Y (Cn x R) = X^T (X: R x Cn), 32 x 32 tiles through local memory (+1 column: no conflicts)
  __local float tile[32][33];
  const int bx = get_group_id(0) * 32, by = get_group_id(1) * 32;
  const int tx = get_local_id(0), ty = get_local_id(1);
  for (int j = ty; j < 32; j += 8)
    if (by + j < R && bx + tx < Cn) tile[j][tx] = X[(long)(by + j) * ldx + bx + tx];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int j = ty; j < 32; j += 8)
    if (bx + j < Cn && by + tx < R) Y[(long)(bx + j) * ldy + by + tx] = tile[tx][j];
}
"""


def build(ctx, dev, p: Poc):
    prog = cl.Program(ctx, source(p)).build(options="-cl-mad-enable")
    ptx = prog.binaries[0].rstrip(b"\x00").decode()
    patched = patch(ptx)
    built = cl.Program(ctx, [dev], [patched.encode() + b"\x00"]).build()
    return built.wg_tf32, patched


def main() -> None:
    import torch
    from timing import cublas_tflops

    out_dir = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wgmma"
    os.makedirs(out_dir, exist_ok=True)
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    ctx, dev, queue = rt.context, rt.cl_device, rt.queue
    report = {"device": rt.device.name, "variants": {}}
    record = len(sys.argv) > 2 and sys.argv[2] == "record"
    variants = [Poc(128, 8, 3, bn=256, wgs=2, depth=1),  # round 2's best, unswizzled
                Poc(128, 8, 3, bn=256, wgs=2, depth=1, swz=32), Poc(128, 8, 4, wgs=2, depth=1, swz=32),
                Poc(256, 8, 4, wgs=2, depth=1, swz=32), Poc(128, 16, 3, wgs=2, depth=1, swz=64),
                Poc(128, 16, 3, depth=1, swz=64), Poc(128, 16, 2, bn=256, wgs=2, depth=1, swz=64),
                Poc(64, 32, 2, depth=1, swz=128), Poc(256, 16, 2, wgs=2, depth=1, swz=64)]
    if record:  # round 3's best three, measured with the accuracy and NN checks
        variants = [Poc(128, 16, 3, depth=1, swz=64), Poc(128, 16, 3, wgs=2, depth=1, swz=64)]
    kernels = {}
    for p in variants:
        try:
            kernels[p] = build(ctx, dev, p)
            with open(os.path.join(out_dir, p.key + ".ptx"), "w") as f:
                f.write(kernels[p][1])
            report["variants"][p.key] = {"built": True}
        except Exception as exc:  # noqa: BLE001
            report["variants"][p.key] = {"built": False, "error": str(exc)[:1500]}
        print(p.key, report["variants"][p.key], flush=True)

    transpose = cl.Kernel(cl.Program(ctx, TRANSPOSE_C).build(), "transpose")  # retrieved once

    def run(kern, p, m, n, k, reps=0, wide=False, nn=False):
        rng = np.random.default_rng(m + n + k)
        A = rng.standard_normal((m, k)).astype(np.float32)
        Bt = rng.standard_normal((n, k)).astype(np.float32)
        if wide:  # entries x 2^U(-20, 20): a wide exponent range
            A = (A * np.exp2(rng.uniform(-20, 20, A.shape))).astype(np.float32)
            Bt = (Bt * np.exp2(rng.uniform(-20, 20, Bt.shape))).astype(np.float32)
        mf = cl.mem_flags
        a = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=A)
        b = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=Bt)
        c = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.full((m, n), np.nan, np.float32))
        groups = -(-m // p.bm) * -(-n // p.bn)
        args = (np.int32(m), np.int32(n), np.int32(k), a, np.int32(k), b, np.int32(k), c, np.int32(n))
        nt = 128 * p.wgs
        kern(queue, (groups * nt,), (nt,), *args).wait()
        got = np.empty((m, n), np.float32)
        cl.enqueue_copy(queue, got, c)
        ref = (torch.from_numpy(A).cuda().double() @ torch.from_numpy(Bt).cuda().double().T).cpu().numpy()
        err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref)) if np.isfinite(got).all() else float("nan")
        res = {"rel_err": err, "nonfinite": int((~np.isfinite(got)).sum())}
        if not np.isfinite(err) or err > 1e-2:
            bad = np.abs(got - ref) > 1e-2 * np.abs(ref).max()
            res["bad_rows"] = np.flatnonzero(bad.any(1))[:16].tolist()
            res["bad_cols"] = np.flatnonzero(bad.any(0))[:16].tolist()
            res["sample"] = [[float(got[i, j]), float(ref[i, j])] for i, j in ((0, 0), (0, 1), (1, 0), (8, 0), (0, 8), (16, 0))]
        if wide or nn:
            f32 = (torch.from_numpy(A).cuda() @ torch.from_numpy(Bt).cuda().T).cpu().numpy()
            res["numpy_like_f32_err"] = float(np.linalg.norm(f32 - ref) / np.linalg.norm(ref))
        if reps:
            ts = []
            for _ in range(reps):
                ev = kern(queue, (groups * nt,), (nt,), *args)
                ev.wait()
                ts.append((ev.profile.end - ev.profile.start) * 1e-9)
            res["tflops"] = 2.0 * m * n * k / float(np.median(ts)) / 1e12
        if reps and nn:
            # B stored K x N (row-major, the NN layout): transpose into N x K first, timed with it
            Bkn = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=np.ascontiguousarray(Bt.T))
            transpose.set_args(np.int32(k), np.int32(n), Bkn, np.int32(n), b, np.int32(k))
            ts, tt = [], []
            for _ in range(reps):
                e1 = cl.enqueue_nd_range_kernel(queue, transpose, (-(-n // 32) * 32, -(-k // 32) * 8), (32, 8))
                e2 = kern(queue, (groups * nt,), (nt,), *args)
                e2.wait()
                tt.append((e1.profile.end - e1.profile.start) * 1e-9)
                # device time of the two kernels (their sum: the gap between them is the host's)
                ts.append(tt[-1] + (e2.profile.end - e2.profile.start) * 1e-9)
            res["transpose_s"] = float(np.median(tt))
            res["tflops_nn_with_transpose"] = 2.0 * m * n * k / float(np.median(ts)) / 1e12
        return res

    def cublas_tf32(n, reps=20, tf32=True):
        return cublas_tflops(n, tf32, reps)

    for p, (kern, _) in kernels.items():
        entry = report["variants"][p.key]
        entry["tile"] = run(kern, p, p.bm, p.bn, p.bk)
        entry["small"] = run(kern, p, 200, 264, 72)
        print(p.key, "tile", entry["tile"], "small", entry["small"], flush=True)
        if entry["small"]["rel_err"] < 1e-2:
            for n in (1400, 2048, 3072, 4096):
                entry[str(n)] = run(kern, p, n, n, n, reps=30 if record else 15, nn=record)
                print(p.key, n, entry[str(n)], flush=True)
            if record:
                entry["odd-1000x1003x776"] = run(kern, p, 1000, 1003, 776)
                entry["wide-2048"] = run(kern, p, 2048, 2048, 2048, wide=True)
                print(p.key, "odd", entry["odd-1000x1003x776"], "wide", entry["wide-2048"], flush=True)
    report["cublas_tf32"] = {str(n): cublas_tf32(n) for n in (1400, 2048, 3072, 4096)}
    print("cublas tf32", report["cublas_tf32"], flush=True)
    if record:
        report["cublas_fp32"] = {str(n): cublas_tf32(n, tf32=False) for n in (1400, 2048, 3072, 4096)}
        report["cublas_tf32_again"] = {str(n): cublas_tf32(n) for n in (1400, 2048, 3072, 4096)}
        print("cublas fp32", report["cublas_fp32"], "tf32 again", report["cublas_tf32_again"], flush=True)
    with open(os.path.join(out_dir, "wgmma-poc.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
