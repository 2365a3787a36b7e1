"""Tensor-core lane campaign on an NVIDIA GPU (one process, beside cuBLAS through PyTorch).

    source .carry/gpu-env.sh && PYTHONUNBUFFERED=1 python3 benchmarks/tc/run_tc.py [--quick]

Phases: capability probe; compile the candidate schedules in worker processes (disk cache),
ptxas register/spill report; screen every candidate at 2048 (accuracy vs float64, time);
time the best few of each mode at 1400/2048/3072/4096 beside cuBLAS fp32 and TF32; accuracy
at every size against numpy float32's error on the same inputs, wide-exponent inputs
(entries x 2^U(-20,20)), odd shapes and every transpose/alignment layout. Writes
$OUT/tc-results.json and prints a table last.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace

import numpy as np

DRY = os.environ.get("TC_DRY") == "1"  # PoCL dry run of this script: emulated kernels, tiny sizes
if DRY:
    os.environ["CLGEMM_TC_EMULATE"] = "1"
    os.environ.setdefault("CLGEMM_DEVICE", "Portable")
OUT = os.environ.get("OUT", "/tmp/tc-out")
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("CLGEMM_CACHE_DIR", tempfile.mkdtemp(prefix="tc-cache-"))

from clgemm.kernels.tensorcore import Dialect, TcLayout, TcSchedule  # noqa: E402

RESULTS: dict = {"phases": {}}


def save():
    with open(os.path.join(OUT, "tc-results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)


def log(*a):
    print(*a, flush=True)


def S(bm, bn, bk, wm, wn, st, mode, fold, ac=1, r=1, c=0, i=0):
    return TcSchedule(bm, bn, bk, wm, wn, st, mode, fold, ac, r, c, i)


def candidates(spec: str | None) -> list[TcSchedule]:
    if spec:
        return [TcSchedule.from_key(k) for k in spec.split(",")]
    out = []
    if os.environ.get("TC_ROUND", "10") == "10":
        # round 10: occupancy. ncu on the H200 (ncu_profile.py) shows the TF32 table kernel at
        # 2 warps per scheduler (192 registers x 128 threads, 2 groups per SM) with the tensor
        # pipe 44% busy and warps stalled on fixed-latency waits: smaller warp tiles (64x32,
        # 32x64: half the accumulators) for 3-4 warps per scheduler.
        def v(s, **kw):
            return replace(s, **kw)
        for base in (S(128, 128, 16, 2, 2, 2, "tf32", 0), S(128, 64, 16, 2, 2, 2, "tf32", 0),
                     S(128, 128, 16, 2, 4, 2, "tf32", 0), S(64, 128, 16, 2, 2, 2, "tf32", 0)):
            out += [base, v(base, convert=1)]
        out += [S(128, 128, 16, 4, 2, 2, "tf32", 0, 1, 1, 1), S(64, 64, 16, 2, 2, 2, "tf32", 0, 1, 1, 1),
                S(128, 64, 16, 2, 2, 3, "tf32", 0, 1, 1, 1)]
        out += [S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4), S(96, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4, 1, 1)]
        for base in (S(128, 64, 16, 2, 2, 2, "3xtf32", 3, 1, 4), S(128, 128, 16, 2, 4, 2, "3xtf32", 3, 1, 4)):
            out += [base, v(base, convert=1, interior=1)]
        out += [S(64, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4, 1, 1),
                S(128, 64, 16, 2, 2, 3, "3xtf32", 3, 1, 4, 1, 1)]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "9":
        # round 9: swizzled local tiles (no pads) fit 128x128x16 in three stages and
        # 256x128x16 / 128x256x16 (one work-group of 8 warps per SM, a third less L2 traffic
        # per flop than two 128x128 groups) in two, within OpenCL's 48 KB.
        def v(s, **kw):
            return replace(s, **kw)
        tf = S(128, 128, 16, 2, 2, 2, "tf32", 0)
        out += [tf, v(tf, convert=1), v(tf, swizzle=1), v(tf, stages=3, swizzle=1),
                v(tf, stages=3, swizzle=1, convert=1)]
        for big in (S(256, 128, 16, 4, 2, 2, "tf32", 0), S(128, 256, 16, 2, 4, 2, "tf32", 0),
                    S(192, 128, 16, 4, 2, 2, "tf32", 0)):
            out += [v(big, swizzle=1), v(big, swizzle=1, convert=1), v(big, swizzle=1, raster=4)]
        out += [v(S(96, 128, 16, 2, 2, 3, "tf32", 0), swizzle=1),
                v(S(96, 128, 16, 2, 2, 2, "tf32", 0), swizzle=1, convert=1),
                v(S(128, 64, 32, 2, 1, 2, "tf32", 0), swizzle=1),
                v(S(64, 128, 32, 1, 2, 2, "tf32", 0), swizzle=1)]
        x3 = S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4)
        out += [x3, v(x3, swizzle=1), v(x3, stages=3, swizzle=1)]
        x96 = S(96, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4, 1, 1)
        out += [x96, v(x96, swizzle=1), v(x96, stages=3, swizzle=1)]
        for big in (S(256, 128, 16, 4, 2, 2, "3xtf32", 3, 1, 4), S(128, 256, 16, 2, 4, 2, "3xtf32", 3, 1, 4),
                    S(192, 128, 16, 4, 2, 2, "3xtf32", 3, 1, 4)):
            out += [v(big, swizzle=1), v(big, swizzle=1, convert=1, interior=1)]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "8":
        # round 8: the instruction budget. Local SASS (clang + libclc + ptxas sm_90) counts 410
        # instructions per k-tile in the TF32 table kernel for 64 HMMA (cvt.rna: two per
        # fragment element; the bounded copy: ~110): issue-bound. convert=1 (raw TF32 bits;
        # 3xTF32 hi by integer rounding) and interior=1 (unbounded copies inside the matrix)
        # bring it to ~200; 3xTF32 fold=3 1012 -> 795 per 192 HMMA.
        def late(s, c, i):
            return replace(s, convert=c, interior=i)
        for base in (S(128, 128, 16, 2, 2, 2, "tf32", 0), S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4)):
            out += [late(base, c, i) for c in (0, 1) for i in (0, 1)]
        for base in (S(96, 128, 16, 2, 2, 2, "tf32", 0), S(96, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4)):
            out += [base, late(base, 1, 1)]
        out += [late(s, 1, 1) for s in (
            S(128, 128, 16, 2, 2, 2, "tf32", 0, 1, 4), S(128, 128, 8, 2, 2, 4, "tf32", 0, 1, 4),
            S(64, 128, 16, 1, 2, 3, "tf32", 0), S(128, 64, 16, 2, 1, 3, "tf32", 0),
            S(256, 128, 8, 4, 2, 2, "tf32", 0), S(128, 256, 8, 2, 4, 3, "tf32", 0),
            S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 1), S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 8),
            S(64, 128, 16, 1, 2, 3, "3xtf32", 3, 1, 4), S(128, 128, 8, 2, 2, 4, "3xtf32", 1, 1, 4))]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "5":
        # round 5: L2 rasterisation and staging around the fold=3 winner
        for r in (1, 2, 4, 8, 16):
            out.append(S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 1, r))
        out += [S(96, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 4), S(96, 128, 16, 2, 2, 2, "3xtf32", 3, 1, 8),
                S(128, 128, 16, 2, 2, 2, "3xtf32", 3, 0, 4), S(64, 64, 32, 2, 1, 2, "3xtf32", 3, 1, 4),
                S(128, 128, 16, 2, 2, 2, "tf32", 0, 1, 8), S(96, 128, 16, 2, 2, 2, "tf32", 0, 1, 8)]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "4":
        # round 4: fold=3 (one chain per mma tile per k-tile) against fold=1, same tiles
        for f in (1, 3):
            out += [S(128, 128, 16, 2, 2, 2, "3xtf32", f), S(128, 128, 16, 2, 2, 2, "3xtf32", f, 1, 4),
                    S(96, 128, 16, 2, 2, 2, "3xtf32", f), S(96, 128, 16, 1, 4, 2, "3xtf32", f),
                    S(64, 128, 16, 1, 2, 3, "3xtf32", f), S(128, 64, 16, 2, 1, 3, "3xtf32", f),
                    S(192, 64, 16, 4, 1, 2, "3xtf32", f)]
        out += [S(128, 128, 16, 2, 2, 2, "tf32", 0), S(96, 128, 16, 2, 2, 2, "tf32", 0)]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "3":
        # round 3: the compact generator; 96/192-row tiles for whole waves at 3072 (132 SMs);
        # fold=2 (a fresh chain per k-tile, fewer float32 adds) on 32-row warp tiles
        for mode in ("3xtf32", "tf32"):
            f = 1 if mode == "3xtf32" else 0
            out += [S(128, 128, 16, 2, 2, 2, mode, f), S(128, 128, 16, 2, 2, 2, mode, f, 1, 4),
                    S(96, 128, 16, 2, 2, 2, mode, f), S(96, 128, 16, 2, 2, 2, mode, f, 1, 4),
                    S(96, 128, 16, 1, 4, 2, mode, f), S(192, 64, 16, 4, 1, 2, mode, f),
                    S(96, 64, 16, 2, 1, 3, mode, f), S(64, 128, 16, 1, 2, 3, mode, f),
                    S(128, 128, 8, 2, 2, 4, mode, f, 1, 4), S(128, 256, 8, 2, 4, 3, mode, f)]
        out += [S(128, 128, 16, 4, 2, 2, "3xtf32", 2), S(128, 128, 16, 4, 2, 2, "3xtf32", 1)]
        return list(dict.fromkeys(out))
    if os.environ.get("TC_ROUND") == "2":
        for mode in ("3xtf32", "tf32"):
            f = 1 if mode == "3xtf32" else 0
            out += [S(128, 128, 16, 2, 2, 2, mode, f), S(128, 128, 16, 2, 2, 2, mode, f, 1, 4),
                    S(128, 256, 8, 2, 4, 2, mode, f), S(128, 256, 8, 2, 4, 3, mode, f),
                    S(256, 128, 8, 4, 2, 2, mode, f), S(64, 256, 8, 1, 4, 3, mode, f),
                    S(64, 256, 8, 1, 4, 4, mode, f), S(256, 64, 8, 4, 1, 2, mode, f),
                    S(128, 128, 8, 2, 2, 4, mode, f, 1, 4), S(64, 128, 16, 1, 2, 3, mode, f),
                    S(128, 64, 16, 2, 1, 3, mode, f)]
        out.append(S(128, 128, 16, 2, 2, 2, "3xtf32", 0))  # the inaccurate reference point
        return list(dict.fromkeys(out))
    for mode, folds in (("3xtf32", (1, 0)), ("tf32", (0,))):
        for fold in folds:
            out += [
                S(128, 128, 16, 2, 2, 2, mode, fold),
                S(128, 128, 8, 2, 2, 4, mode, fold),
                S(128, 128, 16, 2, 4, 2, mode, fold),
                S(128, 128, 16, 4, 2, 2, mode, fold),
                S(64, 128, 16, 1, 4, 3, mode, fold),
                S(128, 64, 16, 2, 2, 3, mode, fold),
                S(64, 64, 16, 2, 2, 4, mode, fold),
                S(128, 256, 8, 2, 4, 3, mode, fold),
                S(128, 128, 16, 2, 2, 2, mode, fold, 1, 8),
                S(128, 128, 16, 2, 2, 2, mode, fold, 0),
            ]
    out.append(S(128, 128, 16, 2, 4, 2, "3xtf32", 2))
    out.append(S(64, 128, 16, 1, 4, 3, "3xtf32", 2))
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


# ---- compile workers ------------------------------------------------------------------------
def _ptxas_report(binary: bytes, tag: str) -> dict:
    rep = {}
    try:
        d = tempfile.mkdtemp()
        ptx = os.path.join(d, "k.ptx")
        with open(ptx, "wb") as f:
            f.write(binary.rstrip(b"\x00"))
        p = subprocess.run(["ptxas", "-arch=sm_90", "-v", ptx, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True, timeout=120)
        text = p.stdout + p.stderr
        m = re.search(r"Used (\d+) registers", text)
        rep["registers"] = int(m.group(1)) if m else None
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
        rep["spill"] = [int(m.group(1)), int(m.group(2))] if m else None
        m = re.search(r"(\d+) bytes stack frame", text)
        rep["stack"] = int(m.group(1)) if m else None
        if p.returncode != 0:
            rep["ptxas_error"] = text[-800:]
        else:
            sass = subprocess.run(["cuobjdump", "-sass", os.path.join(d, "k.cubin")],
                                  capture_output=True, text=True, timeout=120).stdout
            rep["sass"] = {op: len(re.findall(r"\b" + op + r"\b", sass))
                           for op in ("HMMA.1688.F32.TF32", "LDS", "LDS.64", "LDS.128", "LDGSTS",
                                      "LDG.E.128", "FADD", "BAR.SYNC", "LDL", "STL")}
    except Exception as exc:  # noqa: BLE001
        rep["ptxas_exception"] = repr(exc)
    return rep


def _compile(key: str, layout: tuple, report: bool) -> tuple:
    from clgemm.runtime import get_runtime
    from clgemm.lanes.mma import TcKernel

    s = TcSchedule.from_key(key)
    t0 = time.perf_counter()
    try:
        k = TcKernel(get_runtime(), s, TcLayout(*layout))
    except Exception as exc:  # noqa: BLE001
        log_text = getattr(exc, "log", "") or ""
        return key, layout, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc)[:300]} LOG: {log_text[:1500]}", {}
    dt = time.perf_counter() - t0
    rep = _ptxas_report(k.program.binaries[0], "k") if report else {}
    return key, layout, dt, None, rep


def compile_all(jobs: list[tuple[TcSchedule, TcLayout]], report: bool, workers: int = 12) -> dict:
    ctx = multiprocessing.get_context("spawn")
    res = {}
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futs = [pool.submit(_compile, s.key(), (l.trans_a, l.trans_b, l.aligned_a, l.aligned_b),
                            report) for s, l in jobs]
        for f in cf.as_completed(futs):
            try:
                key, layout, dt, err, rep = f.result()
            except Exception as exc:  # noqa: BLE001
                log("worker died:", exc)
                continue
            res[(key, layout)] = {"compile_s": round(dt, 2), "error": err, **rep}
            log(f"  compiled {key} {layout}: {dt:.1f}s " + (f"ERROR {err[:400]}" if err else
                f"regs={rep.get('registers')} spill={rep.get('spill')} sass={rep.get('sass')}"))
    return res


# ---- measuring ----------------------------------------------------------------------------
class Problem:
    def __init__(self, rt, m, n, k, ta=False, tb=False, wide=False, seed=0, pad=0, off=0):
        import pyopencl as cl
        from clgemm.operands import Operand

        self.rt, self.m, self.n, self.k = rt, m, n, k
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        if wide:
            A = (A * np.exp2(rng.uniform(-20, 20, A.shape))).astype(np.float32)
            B = (B * np.exp2(rng.uniform(-20, 20, B.shape))).astype(np.float32)
        self.A, self.B, self.ta, self.tb = A, B, ta, tb

        def store(X):
            r, c = X.shape
            ld = c + pad
            buf = np.zeros(off + r * ld + 4, np.float32)
            buf[off:off + r * ld].reshape(r, ld)[:, :c] = X
            return cl.Buffer(rt.context, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=buf), ld

        ab, lda = store(A)
        bb, ldb = store(B)
        self.a, self.b = Operand(ab, off, lda, ta), Operand(bb, off, ldb, tb)
        self.c_buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, size=4 * m * n)
        self.c = Operand(self.c_buf, 0, n, False)
        self._ref = None
        self._np_err = None

    def layout(self):
        from clgemm.lanes.mma import layout_for

        return layout_for(self.a, self.b)

    def opA(self):
        return self.A.T if self.ta else self.A

    def opB(self):
        return self.B.T if self.tb else self.B

    def ref(self):
        if self._ref is None and DRY:
            self._ref = self.opA().astype(np.float64) @ self.opB().astype(np.float64)
        if self._ref is None:
            import torch

            a = torch.from_numpy(np.ascontiguousarray(self.opA())).cuda().double()
            b = torch.from_numpy(np.ascontiguousarray(self.opB())).cuda().double()
            self._ref = (a @ b).cpu().numpy()
        return self._ref

    def rel(self, out):
        ref = self.ref()
        if not np.isfinite(out).all():
            return float("inf")
        return float(np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref))

    def numpy_error(self):
        if self._np_err is None:
            self._np_err = self.rel(self.opA() @ self.opB())
        return self._np_err

    def run(self, kernel):
        import pyopencl as cl

        cl.enqueue_copy(self.rt.queue, self.c_buf, np.full(self.m * self.n, np.nan, np.float32))
        kernel.enqueue(self.m, self.n, self.k, 1.0, 0.0, self.a, self.b, self.c).wait()
        out = np.empty((self.m, self.n), np.float32)
        cl.enqueue_copy(self.rt.queue, out, self.c_buf)
        return out

    def time(self, kernel, reps=10, warmup=2):
        ts = []
        for i in range(warmup + reps):
            ev = kernel.enqueue(self.m, self.n, self.k, 1.0, 0.0, self.a, self.b, self.c)
            ev.wait()
            if i >= warmup:
                ts.append((ev.profile.end - ev.profile.start) * 1e-9)
        return float(np.median(ts))

    def tflops(self, seconds):
        return 2.0 * self.m * self.n * self.k / seconds / 1e12


def cublas(n, reps=20):
    if DRY:
        return {"fp32": 1.0, "tf32": 2.0}
    import torch

    res = {}
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    out = torch.empty(n, n, device="cuda")
    saved = torch.backends.cuda.matmul.allow_tf32
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        for _ in range(3):
            torch.mm(a, b, out=out)
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            torch.mm(a, b, out=out)
            e1.record()
            e1.synchronize()
            ts.append(e0.elapsed_time(e1) * 1e-3)
        res["tf32" if tf32 else "fp32"] = 2.0 * n**3 / float(np.median(ts)) / 1e12
    torch.backends.cuda.matmul.allow_tf32 = saved
    return res


def cublas_error(p: "Problem", tf32: bool):
    if DRY:
        return p.numpy_error()
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a = torch.from_numpy(np.ascontiguousarray(p.opA())).cuda()
    b = torch.from_numpy(np.ascontiguousarray(p.opB())).cuda()
    out = (a @ b).cpu().numpy()
    torch.backends.cuda.matmul.allow_tf32 = saved
    return p.rel(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", default=None, help="comma-separated TcSchedule keys")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--sizes", default="1400,2048,3072,4096")
    ap.add_argument("--workers", type=int, default=12)
    args = ap.parse_args()
    t_start = time.time()

    from clgemm.runtime import get_runtime
    from clgemm.lanes.mma import get_kernel, search_space
    from clgemm.lanes.probe import tensorcore_support

    rt = get_runtime()
    RESULTS["device"] = rt.device.summary()
    log("device:", rt.device.name, rt.device.driver_version, rt.device.capabilities)
    sup = tensorcore_support(rt)
    if DRY:
        from clgemm.lanes.probe import TcSupport
        sup = TcSupport(True, "dry run", async_copy=True)
    RESULTS["support"] = vars(sup)
    log("support:", sup)
    save()
    if not sup.available:
        # Diagnose: try without the memory clobber, print the compiler's log.
        from clgemm.lanes.probe import PROBE_SCHEDULE, _probe_product

        for d in (Dialect(memory_clobber=False),):
            for ac in (1, 0):
                try:
                    err = _probe_product(rt, replace(PROBE_SCHEDULE, async_copy=ac), d)
                    log("probe", d, ac, "err", err)
                except Exception as exc:  # noqa: BLE001
                    log("probe", d, ac, "failed", exc, getattr(exc, "log", "")[:3000])
        return

    cands = candidates(args.candidates)
    if not sup.async_copy:
        cands = [replace(s, async_copy=0, stages=2) for s in cands]
        cands = list(dict.fromkeys(cands))
    nn = TcLayout(False, False, True, True)
    log(f"compiling {len(cands)} candidates")
    t0 = time.time()
    comp = compile_all([(s, nn) for s in cands], report=True, workers=args.workers)
    log(f"compiled in {time.time() - t0:.0f}s")
    RESULTS["phases"]["compile"] = {f"{k[0]}": v for k, v in comp.items()}
    save()

    # ---- screen at 2048 ----
    p = Problem(rt, *([48] * 3 if DRY else [2048] * 3), seed=1)
    screen = []
    for s in cands:
        entry = {"schedule": s.key(), "mode": s.mode}
        try:
            kern = get_kernel(rt, s, p.layout())
            err = p.rel(p.run(kern))
            t = p.time(kern)
            entry.update(rel_error=err, tflops=p.tflops(t), error_ratio=err / p.numpy_error())
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        screen.append(entry)
        log("  screen", entry)
    RESULTS["phases"]["screen_2048"] = {"numpy_error": p.numpy_error(), "entries": screen}
    save()

    def ok(e):
        if "tflops" not in e:
            return False
        return e["error_ratio"] <= 2.0 if e["mode"] == "3xtf32" else e["rel_error"] < 5e-3

    best = {}
    for mode in ("3xtf32", "tf32"):
        good = sorted((e for e in screen if e["mode"] == mode and ok(e)), key=lambda e: -e["tflops"])
        best[mode] = [TcSchedule.from_key(e["schedule"]) for e in good[:args.top]]
    log("best:", {m: [s.key() for s in v] for m, v in best.items()})

    # ---- sizes beside cuBLAS ----
    sizes = [int(x) for x in args.sizes.split(",")]
    table = []
    for n in sizes:
        row = {"size": n, "cublas": cublas(n)}
        p = Problem(rt, n, n, n, seed=n)
        row["numpy_error"] = p.numpy_error()
        row["cublas_fp32_error"] = cublas_error(p, False)
        row["cublas_tf32_error"] = cublas_error(p, True)
        for mode in ("3xtf32", "tf32"):
            results = []
            for s in best[mode]:
                if not search_space(rt).is_valid(s, p.layout()):
                    continue
                try:
                    kern = get_kernel(rt, s, p.layout())
                    err = p.rel(p.run(kern))
                    t = p.time(kern, reps=15)
                    results.append({"schedule": s.key(), "tflops": p.tflops(t), "rel_error": err,
                                    "error_ratio": err / row["numpy_error"]})
                except Exception as exc:  # noqa: BLE001
                    results.append({"schedule": s.key(), "error": str(exc)[:300]})
            row[mode] = results
        row["cublas_again"] = cublas(n)
        table.append(row)
        log("  size", json.dumps(row, default=str))
        RESULTS["phases"]["sizes"] = table
        save()

    # ---- accuracy: wide exponents, odd shapes, layouts ----
    acc = []
    chosen = {m: (v[0] if v else None) for m, v in best.items()}
    probs = [("wide-48", dict(m=48, n=48, k=48, wide=True)), ("odd-TN-37x29x41", dict(m=37, n=29, k=41, ta=True)),
             ("offset-pad-NN-33x31x19", dict(m=33, n=31, k=19, pad=1, off=1))] if DRY else [("wide-2048", dict(m=2048, n=2048, k=2048, wide=True)),
             ("odd-1000x1003x777", dict(m=1000, n=1003, k=777)),
             ("odd-NT-999x1001x1003", dict(m=999, n=1001, k=1003, tb=True)),
             ("odd-TN-1001x999x1003", dict(m=1001, n=999, k=1003, ta=True)),
             ("odd-TT-1003x1001x999", dict(m=1003, n=1001, k=999, ta=True, tb=True)),
             ("aligned-TT-1024x1000x1028", dict(m=1024, n=1000, k=1028, ta=True, tb=True)),
             ("offset-pad-NN-777x555x333", dict(m=777, n=555, k=333, pad=1, off=1)),
             ("tiny-3x5x7", dict(m=3, n=5, k=7)),
             ("k-tail-256x256x4097", dict(m=256, n=256, k=4097))]
    jobs = []
    built = {}
    for name, kw in probs:
        pp = Problem(rt, **kw, seed=7)
        built[name] = pp
        for mode, s in chosen.items():
            if s is not None:
                jobs.append((s, pp.layout()))
    jobs = list(dict.fromkeys(jobs))
    compile_all(jobs, report=False, workers=args.workers)
    for name, pp in built.items():
        entry = {"problem": name, "numpy_error": pp.numpy_error(),
                 "cublas_fp32_error": cublas_error(pp, False)}
        for mode, s in chosen.items():
            if s is None:
                continue
            try:
                out = pp.run(get_kernel(rt, s, pp.layout()))
                e = pp.rel(out)
                entry[mode] = {"rel_error": e, "error_ratio": e / pp.numpy_error()}
            except Exception as exc:  # noqa: BLE001
                entry[mode] = {"error": str(exc)[:300]}
        acc.append(entry)
        log("  accuracy", json.dumps(entry, default=str))
    RESULTS["phases"]["accuracy"] = acc
    RESULTS["elapsed_s"] = time.time() - t_start
    save()

    # ---- the table ----
    log(f"\n=== {rt.device.name}: tensor-core lane (TFLOPS, median kernel time;"
        " err = rel Frobenius vs fp64) ===")
    log(f"{'size':>5} {'cuBLAS fp32':>11} {'cuBLAS tf32':>11} {'3xTF32':>7} {'ratio':>6} {'err/np':>7}"
        f" {'TF32':>7} {'%tf32':>6} {'tf32 err':>9}")
    for row in table:
        c32 = max(row["cublas"]["fp32"], row["cublas_again"]["fp32"])
        ctf = max(row["cublas"]["tf32"], row["cublas_again"]["tf32"])
        x3 = max((r for r in row["3xtf32"] if "tflops" in r), key=lambda r: r["tflops"], default=None)
        t1 = max((r for r in row["tf32"] if "tflops" in r), key=lambda r: r["tflops"], default=None)
        log(f"{row['size']:>5} {c32:>11.1f} {ctf:>11.1f} "
            + (f"{x3['tflops']:>7.1f} {x3['tflops'] / c32:>6.2f} {x3['error_ratio']:>7.2f}" if x3 else " " * 22)
            + (f" {t1['tflops']:>7.1f} {100 * t1['tflops'] / ctf:>5.0f}% {t1['rel_error']:>9.2e}" if t1 else ""))
    for e in acc:
        log(f"  {e['problem']:<28} np {e['numpy_error']:.2e} " + " ".join(
            f"{m}: {e[m].get('rel_error', float('nan')):.2e} (x{e[m].get('error_ratio', float('nan')):.2f})"
            for m in ("3xtf32", "tf32") if m in e))
    log(f"elapsed {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        save()
        sys.exit(1)
