"""Ozaki int8 lane on the H100, beside 3xTF32 and cuBLAS in one process.

    source .carry/gpu-env.sh && python3 benchmarks/tc/ozaki/run_ozaki.py
    OZ_DRY=1 python3 benchmarks/tc/ozaki/run_ozaki.py      # PoCL dry run (emulated PTX, tiny sizes)

Phases: capability probe (the PTX compile log is recorded when it fails); compile the
candidate schedules in worker processes (disk cache) with a ptxas -v / cuobjdump report of
the product kernel; screen them at 2048 (accuracy vs float64, time); at 1400/2048/3072/4096
time the best few beside the 3xTF32 kernel (clgemm.lanes.mma) and cuBLAS fp32 / TF32 (PyTorch),
the Ozaki figure being scale + split + product (first start to last end, OpenCL profiling)
with the product kernel alone reported too; accuracy against float64 (GPU) and numpy
float32's error on the same inputs, wide exponents (x 2^U(-20,20)), odd shapes, every
transpose, offsets/leading dimensions and the K-chunk path. Writes $OUT/ozaki-results.json
after every phase and prints a table last. Every failure is recorded, never fatal.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import subprocess
import tempfile
import time
import traceback

import numpy as np

DRY = os.environ.get("OZ_DRY") == "1"
if DRY:
    os.environ["CLGEMM_TC_EMULATE"] = "1"
    os.environ.setdefault("CLGEMM_DEVICE", "Portable")
OUT = os.environ.get("OUT", "/tmp/ozaki-out")
os.makedirs(OUT, exist_ok=True)
os.environ.setdefault("CLGEMM_CACHE_DIR", tempfile.mkdtemp(prefix="oz-cache-"))

from clgemm.kernels.ozaki import OzDialect, OzSchedule  # noqa: E402

RESULTS: dict = {"phases": {}, "errors": []}
T0 = time.time()


def save():
    RESULTS["elapsed_s"] = round(time.time() - T0, 1)
    with open(os.path.join(OUT, "ozaki-results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def S(s, lv, bm, bn, bk, wm, wn, p, r=1):
    return OzSchedule(s, lv, bm, bn, bk, wm, wn, p, r)


def candidates(spec: str | None) -> list[tuple[OzSchedule, bool]]:
    """(schedule, volatile mma). 48 KB of local memory: S = 4 slices x (BM + BN) x BK x stages."""
    if spec:
        return [(OzSchedule.from_key(k), True) for k in spec.split(",")]
    if DRY:
        return [(S(4, 4, 32, 32, 32, 1, 1, 2), True), (S(3, 3, 32, 64, 32, 1, 2, 2), True)]
    out = [
        S(4, 4, 64, 64, 32, 2, 2, 3),      # 48 KB, 4 warps, warp tile 32x32
        S(4, 4, 64, 64, 32, 2, 2, 2),      # 32 KB: two groups per SM
        S(4, 4, 128, 64, 32, 4, 2, 2),     # 48 KB, 8 warps
        S(4, 4, 64, 128, 32, 2, 4, 2),     # 48 KB, 8 warps
        S(4, 4, 64, 64, 32, 2, 2, 3, 8),   # rasterised (L2 reuse)
        S(4, 5, 64, 64, 32, 2, 2, 3),      # 13 products: the accurate point
        S(3, 3, 128, 64, 32, 4, 2, 2),     # 6 products: the approximate point (36 KB)
        S(3, 3, 128, 128, 32, 4, 4, 2),    # 48 KB, 16 warps
    ]
    res = [(s, True) for s in out]
    res.append((out[0], False))  # the mma without `volatile`: may the compiler interleave?
    return res


def ckey(s: OzSchedule, vol: bool) -> str:
    return s.key() + ("" if vol else "-nv")


# ---- compile workers ------------------------------------------------------------------------
def _ptxas_report(binary: bytes) -> dict:
    rep = {}
    try:
        d = tempfile.mkdtemp()
        ptx = os.path.join(d, "k.ptx")
        with open(ptx, "wb") as f:
            f.write(binary.rstrip(b"\x00"))
        p = subprocess.run(["ptxas", "-arch=sm_90", "-v", ptx, "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True, timeout=120)
        text = p.stdout + p.stderr
        # per entry function: "Compiling entry function 'NAME'" ... "Used N registers"
        for name, body in re.findall(r"Compiling entry function '(\w+)'(.*?)(?=Compiling entry|\Z)",
                                     text, re.S):
            r = {}
            m = re.search(r"Used (\d+) registers", body)
            r["registers"] = int(m.group(1)) if m else None
            m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", body)
            r["spill"] = [int(m.group(1)), int(m.group(2))] if m else None
            m = re.search(r"(\d+) bytes smem", body)
            r["smem"] = int(m.group(1)) if m else None
            rep[name] = r
        if p.returncode != 0:
            rep["ptxas_error"] = text[-1500:]
        else:
            sass = subprocess.run(["cuobjdump", "-sass", os.path.join(d, "k.cubin")],
                                  capture_output=True, text=True, timeout=120).stdout
            part = sass.split("Function : clgemm_oz\n")[-1].split("Function :")[0]
            rep["sass_product"] = {op: len(re.findall(r"\b" + re.escape(op) + r"\b", part))
                                   for op in ("IMMA.16832.S8.S8", "LDS", "LDS.64", "LDS.128",
                                              "LDGSTS.E.BYPASS.128", "BAR.SYNC", "LDL", "STL",
                                              "DFMA", "I2F.F64")}
            rep["sass_product"]["IMMA_any"] = len(re.findall(r"\bIMMA\S*", part))
    except Exception as exc:  # noqa: BLE001
        rep["ptxas_exception"] = repr(exc)
    return rep


def _compile(key: str, vol: bool, ta: bool, tb: bool, report: bool) -> tuple:
    from clgemm.lanes.ozaki import OzKernel, default_dialect
    from clgemm.runtime import get_runtime

    s = OzSchedule.from_key(key)
    dialect = OzDialect(emulate=default_dialect().emulate, volatile_mma=vol)
    t0 = time.perf_counter()
    try:
        k = OzKernel(get_runtime(), s, ta, tb, dialect)
    except Exception as exc:  # noqa: BLE001
        return key, vol, (ta, tb), time.perf_counter() - t0, (
            f"{type(exc).__name__}: {str(exc)[:400]} LOG: {(getattr(exc, 'log', '') or '')[:3000]}"), {}
    dt = time.perf_counter() - t0
    rep = _ptxas_report(k.program.binaries[0]) if (report and not DRY) else {}
    return key, vol, (ta, tb), dt, None, rep


def compile_all(jobs, report: bool, workers: int) -> dict:
    res = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futs = [pool.submit(_compile, s.key(), vol, ta, tb, report) for s, vol, ta, tb in jobs]
        for f in cf.as_completed(futs):
            try:
                key, vol, lay, dt, err, rep = f.result()
            except Exception as exc:  # noqa: BLE001
                log("worker died:", exc)
                RESULTS["errors"].append(f"worker died: {exc!r}")
                continue
            res[(ckey(OzSchedule.from_key(key), vol), lay)] = {"compile_s": round(dt, 2),
                                                               "error": err, **rep}
            log(f"  compiled {ckey(OzSchedule.from_key(key), vol)} {lay}: {dt:.1f}s "
                + (f"ERROR {err[:600]}" if err else json.dumps(rep.get("clgemm_oz", {}))
                   + " " + json.dumps(rep.get("sass_product", {}))))
    return res


# ---- problems -------------------------------------------------------------------------------
class Problem:
    def __init__(self, rt, m, n, k, ta=False, tb=False, wide=False, seed=0, pad=0, off=0):
        import pyopencl as cl
        from clgemm.operands import Operand

        self.rt, self.m, self.n, self.k, self.ta, self.tb = rt, m, n, k, ta, tb
        rng = np.random.default_rng(seed)
        A = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        if wide:
            A = (A * np.exp2(rng.uniform(-20, 20, A.shape))).astype(np.float32)
            B = (B * np.exp2(rng.uniform(-20, 20, B.shape))).astype(np.float32)
        self.A, self.B = A, B
        mf = cl.mem_flags

        def store(X, trans):
            r, c = X.shape
            ld = c + pad
            buf = np.zeros(off + r * ld + 4, np.float32)
            buf[off:off + r * ld].reshape(r, ld)[:, :c] = X
            return Operand(cl.Buffer(rt.context, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=buf), off, ld, trans)

        self.a, self.b = store(A, ta), store(B, tb)
        self.c_buf = cl.Buffer(rt.context, mf.READ_WRITE, size=4 * max(m * n, 1))
        self.c = Operand(self.c_buf, 0, n, False)
        self.flag = cl.Buffer(rt.context, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(1, np.int32))
        self._ref = self._np = None

    def opA(self):
        return self.A.T if self.ta else self.A

    def opB(self):
        return self.B.T if self.tb else self.B

    def ref(self):
        if self._ref is None:
            if DRY:
                self._ref = self.opA().astype(np.float64) @ self.opB().astype(np.float64)
            else:
                import torch

                a = torch.from_numpy(np.ascontiguousarray(self.opA())).cuda().double()
                b = torch.from_numpy(np.ascontiguousarray(self.opB())).cuda().double()
                self._ref = (a @ b).cpu().numpy()
        return self._ref

    def rel(self, out):
        if not np.isfinite(out).all():
            return float("inf")
        ref = self.ref()
        return float(np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref))

    def numpy_error(self):
        if self._np is None:
            self._np = self.rel(self.opA() @ self.opB())
        return self._np

    def poison(self):
        import pyopencl as cl

        cl.enqueue_copy(self.rt.queue, self.c_buf, np.full(self.m * self.n, np.nan, np.float32))

    def read(self):
        import pyopencl as cl

        out = np.empty((self.m, self.n), np.float32)
        cl.enqueue_copy(self.rt.queue, out, self.c_buf)
        return out

    def flagged(self) -> int:
        import pyopencl as cl

        got = np.empty(1, np.int32)
        cl.enqueue_copy(self.rt.queue, got, self.flag)
        if got[0]:
            cl.enqueue_copy(self.rt.queue, self.flag, np.zeros(1, np.int32))
        return int(got[0])

    def tflops(self, seconds):
        return 2.0 * self.m * self.n * self.k / seconds / 1e12 if seconds > 0 else None


def oz_run(p: Problem, kern, k_chunk=None):
    p.poison()
    evs = kern.enqueue(p.m, p.n, p.k, 1.0, 0.0, p.a, p.b, p.c, flag=p.flag, k_chunk=k_chunk)
    evs.wait()
    return p.read()


def oz_time(p: Problem, kern, reps=10, warmup=2) -> dict:
    tot, ker, spl, wall = [], [], [], []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        evs = kern.enqueue(p.m, p.n, p.k, 1.0, 0.0, p.a, p.b, p.c, flag=p.flag)
        evs.wait()
        t1 = time.perf_counter()
        if i >= warmup:
            sec = evs.seconds()
            tot.append(sec["total"])
            ker.append(sec["kernel"])
            spl.append(sec["split"])
            wall.append(t1 - t0)
    med = {k: float(np.median(v)) for k, v in (("total", tot), ("kernel", ker), ("split", spl),
                                                ("host_wall", wall))}
    return {"seconds": med, "tflops_total": p.tflops(med["total"]),
            "tflops_kernel": p.tflops(med["kernel"]), "tflops_wall": p.tflops(med["host_wall"])}


def tc_entry(rt, p: Problem, sched, reps=10) -> dict:
    """The 3xTF32 kernel (clgemm.lanes.mma) on the same problem: error and median kernel time."""
    from clgemm.lanes.tc import tc_product

    try:
        p.poison()
        tc_product(rt, "3xtf32", p.m, p.n, p.k, 1.0, 0.0, p.a, p.b, p.c, sched).wait()
        err = p.rel(p.read())
        ts = []
        for i in range(reps + 2):
            ev = tc_product(rt, "3xtf32", p.m, p.n, p.k, 1.0, 0.0, p.a, p.b, p.c, sched)
            ev.wait()
            if i >= 2:
                ts.append((ev.profile.end - ev.profile.start) * 1e-9)
        t = float(np.median(ts))
        return {"schedule": sched.key(), "rel_error": err, "error_ratio": err / p.numpy_error(),
                "seconds": t, "tflops": p.tflops(t)}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}


def cublas(p: Problem, reps=20) -> dict:
    if DRY:
        return {}
    import torch

    res = {}
    a = torch.from_numpy(np.ascontiguousarray(p.opA())).cuda()
    b = torch.from_numpy(np.ascontiguousarray(p.opB())).cuda()
    out = torch.empty(p.m, p.n, device="cuda")
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        for name, tf32 in (("fp32", False), ("tf32", True)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            for _ in range(3):
                torch.mm(a, b, out=out)
            torch.cuda.synchronize()
            err = p.rel(out.cpu().numpy())
            ts = []
            for _ in range(reps):
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                torch.mm(a, b, out=out)
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1) * 1e-3)
            t = float(np.median(ts))
            res[name] = {"tflops": p.tflops(t), "seconds": t, "rel_error": err,
                         "error_ratio": err / p.numpy_error()}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return res


# ---- main -----------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", default=None, help="comma-separated OzSchedule keys")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--sizes", default="24,40,64" if DRY else "1400,2048,3072,4096")
    ap.add_argument("--workers", type=int, default=2 if DRY else 10)
    args = ap.parse_args()

    from clgemm.lanes import ozaki
    from clgemm.kernels.tensorcore import TcSchedule
    from clgemm.runtime import get_runtime
    from clgemm.lanes.mma import DEFAULT_SCHEDULES
    from clgemm.lanes.probe import tensorcore_support

    rt = get_runtime()
    RESULTS["device"] = rt.device.summary()
    log("device:", rt.device.name, rt.device.driver_version)
    if DRY:
        RESULTS["support"] = {"available": True, "reason": "dry run (emulated PTX on PoCL)"}
        tc_sched = TcSchedule(32, 32, 8, 1, 1, 2, "3xtf32", 1, 1, 1)
    else:
        sup = ozaki.ozaki_support(rt)
        RESULTS["support"] = vars(sup)
        tsup = tensorcore_support(rt)
        RESULTS["tc_support"] = vars(tsup)
        tc_sched = DEFAULT_SCHEDULES["3xtf32"]
        if not tsup.async_copy:
            tc_sched = TcSchedule(**{**tc_sched.as_dict(), "async_copy": 0, "stages": 2})
        log("ozaki support:", sup, "| tc support:", tsup.available, tsup.reason)
        if not sup.available:
            save()
            log("the Ozaki probe failed: compile log recorded; continuing to record compile errors")
    save()

    cands = candidates(args.candidates)
    log(f"compiling {len(cands)} candidates")
    comp = compile_all([(s, vol, False, False) for s, vol in cands], report=True,
                       workers=args.workers)
    RESULTS["phases"]["compile"] = {k[0]: v for k, v in comp.items()}
    save()
    if not DRY and not RESULTS["support"]["available"]:
        log("no Ozaki lane on this device: stopping after the compile report")
        return

    # ---- screen ----
    n0 = 48 if DRY else 2048
    p = Problem(rt, n0, n0, n0, seed=1)
    screen = []
    for s, vol in cands:
        entry = {"schedule": ckey(s, vol), "slices": s.slices, "levels": s.levels,
                 "products": s.products}
        if comp.get((ckey(s, vol), (False, False)), {}).get("error"):
            entry["error"] = "compile failed"
            screen.append(entry)
            continue
        try:
            kern = ozaki.get_kernel(rt, s, False, False,
                                    OzDialect(emulate=ozaki.default_dialect().emulate, volatile_mma=vol))
            err = p.rel(oz_run(p, kern))
            entry.update(rel_error=err, error_ratio=err / p.numpy_error(), flag=p.flagged(),
                         **oz_time(p, kern, reps=5 if DRY else 10))
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        screen.append(entry)
        log("  screen", json.dumps(entry, default=str))
    RESULTS["phases"]["screen"] = {"size": n0, "numpy_error": p.numpy_error(), "entries": screen}
    save()

    good = [e for e in screen if "tflops_total" in e]
    exact = sorted((e for e in good if e["slices"] >= 4 and e["error_ratio"] <= 2.0),
                   key=lambda e: -e["tflops_total"])
    approx = sorted((e for e in good if e["slices"] < 4), key=lambda e: -e["tflops_total"])
    chosen = [e["schedule"] for e in exact[:args.top]] + [e["schedule"] for e in approx[:1]]
    RESULTS["chosen"] = chosen
    log("chosen:", chosen)
    by_key = {ckey(s, vol): (s, vol) for s, vol in cands}

    def kernel_for(key, ta=False, tb=False):
        s, vol = by_key[key]
        return ozaki.get_kernel(rt, s, ta, tb, OzDialect(emulate=ozaki.default_dialect().emulate,
                                                           volatile_mma=vol))

    # ---- sizes ----
    table = []
    for n in [int(x) for x in args.sizes.split(",")]:
        p = Problem(rt, n, n, n, seed=n)
        row = {"size": n, "numpy_error": p.numpy_error()}
        try:
            row["cublas"] = cublas(p)
        except Exception as exc:  # noqa: BLE001
            row["cublas"] = {"error": repr(exc)[:300]}
        row["3xtf32"] = tc_entry(rt, p, tc_sched, reps=5 if DRY else 15)
        row["ozaki"] = []
        for key in chosen:
            try:
                kern = kernel_for(key)
                err = p.rel(oz_run(p, kern))
                row["ozaki"].append({"schedule": key, "rel_error": err,
                                     "error_ratio": err / row["numpy_error"],
                                     **oz_time(p, kern, reps=5 if DRY else 15)})
            except Exception as exc:  # noqa: BLE001
                row["ozaki"].append({"schedule": key, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
        try:
            row["cublas_again"] = cublas(p)
        except Exception as exc:  # noqa: BLE001
            row["cublas_again"] = {"error": repr(exc)[:300]}
        table.append(row)
        log("  size", json.dumps(row, default=str))
        RESULTS["phases"]["sizes"] = table
        save()

    # ---- accuracy ----
    best = chosen[0] if chosen else None
    probs = ([("wide-48", dict(m=48, n=48, k=48, wide=True)),
              ("odd-TT-37x29x41-pad", dict(m=37, n=29, k=41, ta=True, tb=True, pad=1, off=1)),
              ("kchunk-NN-40x40x100", dict(m=40, n=40, k=100), 32)] if DRY else
             [("wide-2048", dict(m=2048, n=2048, k=2048, wide=True)),
              ("odd-NN-1000x1003x777", dict(m=1000, n=1003, k=777)),
              ("odd-NT-999x1001x1003", dict(m=999, n=1001, k=1003, tb=True)),
              ("odd-TN-1001x999x1003", dict(m=1001, n=999, k=1003, ta=True)),
              ("odd-TT-1003x1001x999", dict(m=1003, n=1001, k=999, ta=True, tb=True)),
              ("offset-pad-NN-777x555x333", dict(m=777, n=555, k=333, pad=1, off=1)),
              ("tiny-3x5x7", dict(m=3, n=5, k=7)),
              ("kchunk-NN-512x512x8192-chunk2048", dict(m=512, n=512, k=8192), 2048),
              ("k-long-256x256x40000", dict(m=256, n=256, k=40000))])
    acc = []
    if best is not None:
        s, vol = by_key[best]
        lays = sorted({(kw.get("ta", False), kw.get("tb", False)) for _, kw, *_ in probs} - {(False, False)})
        compile_all([(s, vol, ta, tb) for ta, tb in lays], report=False, workers=args.workers)
        for name, kw, *chunk in probs:
            entry = {"problem": name, "schedule": best}
            try:
                pp = Problem(rt, **kw, seed=7)
                entry["numpy_error"] = pp.numpy_error()
                kern = kernel_for(best, pp.ta, pp.tb)
                e = pp.rel(oz_run(pp, kern, k_chunk=chunk[0] if chunk else None))
                entry.update(rel_error=e, error_ratio=e / pp.numpy_error(), flag=pp.flagged())
                if name.startswith("wide"):
                    out = pp.read()
                    rel = np.abs(out - pp.ref()) / np.maximum(np.abs(pp.ref()), 1e-300)
                    rel_np = np.abs(pp.opA() @ pp.opB() - pp.ref()) / np.maximum(np.abs(pp.ref()), 1e-300)
                    entry["elementwise_rel"] = {"median": float(np.median(rel)),
                                                "p99": float(np.quantile(rel, 0.99)),
                                                "numpy_median": float(np.median(rel_np)),
                                                "numpy_p99": float(np.quantile(rel_np, 0.99))}
                    entry["cublas"] = cublas(pp, reps=3)
                    entry["3xtf32"] = tc_entry(rt, pp, tc_sched, reps=3)
            except Exception as exc:  # noqa: BLE001
                entry["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
            acc.append(entry)
            log("  accuracy", json.dumps(entry, default=str))
            RESULTS["phases"]["accuracy"] = acc
            save()

    # ---- table ----
    log("\n=== Ozaki int8 (TFLOPS = 2n^3/time; total = scale+split+product; err = rel Frobenius / numpy's) ===")
    log(f"{'size':>5} {'cuBLAS32':>8} {'3xTF32':>7} {'3x err':>6} | {'schedule':<34} {'total':>7}"
        f" {'kernel':>7} {'split%':>6} {'err/np':>7} {'vs 3x':>6} {'vs cuB':>6}")
    for row in table:
        c32 = max([r.get("fp32", {}).get("tflops") or 0 for r in (row.get("cublas", {}), row.get("cublas_again", {}))]
                  or [0])
        x3 = row["3xtf32"].get("tflops") or 0
        x3e = row["3xtf32"].get("error_ratio", float("nan"))
        for o in row["ozaki"] or [{}]:
            if "tflops_total" not in o:
                log(f"{row['size']:>5} {c32:>8.1f} {x3:>7.1f} {x3e:>6.2f} | {o.get('schedule', '-'):<34} {o.get('error', '')[:60]}")
                continue
            sec = o["seconds"]
            log(f"{row['size']:>5} {c32:>8.1f} {x3:>7.1f} {x3e:>6.2f} | {o['schedule']:<34} "
                f"{o['tflops_total']:>7.1f} {o['tflops_kernel']:>7.1f} {100 * sec['split'] / sec['total']:>5.0f}% "
                f"{o['error_ratio']:>7.2f} {o['tflops_total'] / x3 if x3 else float('nan'):>6.2f} "
                f"{o['tflops_total'] / c32 if c32 else float('nan'):>6.2f}")
    for e in acc:
        log(f"  {e['problem']:<34} " + (f"np {e['numpy_error']:.2e} ozaki {e['rel_error']:.2e} (x{e['error_ratio']:.2f})"
                                       if "rel_error" in e else e.get("error", "")[:100]))
    log(f"elapsed {time.time() - T0:.0f}s")


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        RESULTS["errors"].append(traceback.format_exc())
        traceback.print_exc()
    finally:
        save()
