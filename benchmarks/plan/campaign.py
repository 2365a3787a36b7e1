"""The public call measured as a user makes it, beside PyTorch on the same card (issue: the
plan and the hot path). One process, one card, every figure with its peer in the same run:

  1. host cost per call (device arrays) beyond a bare pyopencl enqueue of an empty kernel on
     a plain queue, with C given and with C allocated by the call, 256 to 4096;
  2. the KPI squares through the public call: chained wall per call against the kernel's
     event time of the same run, and against torch.mm (cuBLAS fp32, TF32 off);
  3. check=True against the unchecked call, 2048 and up;
  4. rel_tol=1e-2: the call's wall outside its product kernel, 1400 and up;
  5. numpy in and out against PyTorch's host-to-host call, 1400 to 4096;
  6. the tensor-core lane's on-device non-finite fallback on the real card.

    python benchmarks/plan/campaign.py --out $OUT/plan.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import pyopencl as cl

import clgemm
from clgemm.bench.env import fingerprint
from clgemm.runtime import get_runtime


def med(xs):
    return float(statistics.median(xs))


def rounds(call, sync, reps: int, count: int = 5, host_only: bool = False) -> list[float]:
    """Seconds per call of `count` rounds of `reps` chained calls, each round ended by
    `sync` (the device's time included), or with `host_only` the calls' own time (the sync
    after the clock stops)."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        for _ in range(reps):
            call()
        if not host_only:
            sync()
        out.append((time.perf_counter() - t0) / reps)
        if host_only:
            sync()
    return out


def host_floor(rt) -> dict:
    """A bare enqueue of an empty kernel with bound arguments: plain and profiling queue."""
    k = cl.Program(rt.context, "__kernel void e(__global float* x) {}").build().e
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 64)
    k.set_args(buf)
    out = {}
    for name, q in (("plain", rt.user_queue), ("profiling", rt.queue)):
        per = []
        for _ in range(5):
            q.finish()
            t0 = time.perf_counter()
            for _ in range(1000):
                cl.enqueue_nd_range_kernel(q, k, (32,), (32,))
            per.append((time.perf_counter() - t0) / 1000)
            q.finish()
        out[name + "_s"] = min(per)
    return out


def host_costs(rt, sizes, rng) -> list[dict]:
    """Host seconds per call of chained matmul calls on device arrays (the enqueue loop
    alone; the device runs behind it)."""
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        c = clgemm.to_device(A)
        reps = 200 if n <= 1024 else 40
        row = {"n": n, "lane": clgemm.plan(n, n, n).lane.name}
        for label, call in (("c_given", lambda: clgemm.matmul(a, b, C=c)),
                            ("c_allocated", lambda: clgemm.matmul(a, b))):
            for _ in range(3):
                call()
            rt.user_queue.finish()
            row[label + "_s"] = min(rounds(call, rt.user_queue.finish, reps, host_only=True))
        p = clgemm.plan(n, n, n)
        row["plan_c_given_s"] = min(rounds(lambda: p(a, b, C=c), rt.user_queue.finish, reps,
                                           host_only=True))
        rows.append(row)
    return rows


def torch_mm(n, A, chain: int):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.from_numpy(A).cuda()
    out = torch.empty((n, n), device="cuda")
    for _ in range(3):
        torch.mm(a, a, out=out)
    torch.cuda.synchronize()
    walls = rounds(lambda: torch.mm(a, a, out=out), torch.cuda.synchronize, chain)
    kern = []
    for _ in range(10):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        torch.mm(a, a, out=out)
        e1.record()
        e1.synchronize()
        kern.append(e0.elapsed_time(e1) * 1e-3)
    return med(walls), med(kern)


def kpi_public(rt, sizes, rng, chain=30) -> list[dict]:
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        c = clgemm.to_device(A)
        kern = []
        for _ in range(10):
            _, info = clgemm.matmul(a, b, C=c, return_info=True)
            kern.append(info.kernel_s)
        walls = {}
        for label, call in (("c_given", lambda: clgemm.matmul(a, b, C=c)),
                            ("c_allocated", lambda: clgemm.matmul(a, b))):
            call()
            rt.user_queue.finish()
            walls[label] = med(rounds(call, rt.user_queue.finish, chain))
        t_wall, t_kern = torch_mm(n, A, chain)
        k = med(kern)
        flops = 2.0 * n ** 3
        rows.append({"n": n, "lane": clgemm.plan(n, n, n).lane.name, "kernel_s": k,
                     "wall_c_given_s": walls["c_given"], "wall_c_allocated_s": walls["c_allocated"],
                     "kernel_over_wall_c_given": k / walls["c_given"],
                     "kernel_over_wall_c_allocated": k / walls["c_allocated"],
                     "torch_wall_s": t_wall, "torch_kernel_s": t_kern,
                     "tflops_call": flops / walls["c_allocated"] / 1e12,
                     "tflops_torch_call": flops / t_wall / 1e12,
                     "call_ratio_to_torch": t_wall / walls["c_allocated"]})
    return rows


def check_costs(rt, sizes, rng) -> list[dict]:
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b, c = clgemm.to_device(A), clgemm.to_device(A), clgemm.to_device(A)
        out = {}
        for label, call, sync in (
                ("unchecked_chained", lambda: clgemm.matmul(a, b, C=c), False),
                ("unchecked_waited", lambda: clgemm.matmul(a, b, C=c), True),
                ("checked", lambda: clgemm.matmul(a, b, C=c, check=True), True)):
            call()
            rt.user_queue.finish()
            per = []
            for _ in range(7):
                t0 = time.perf_counter()
                for _ in range(10):
                    call()
                    if sync:
                        rt.user_queue.finish()
                rt.user_queue.finish()
                per.append((time.perf_counter() - t0) / 10)
            out[label + "_s"] = med(per)
        out["n"] = n
        out["overhead_vs_chained"] = out["checked_s"] / out["unchecked_chained_s"] - 1
        out["overhead_vs_waited"] = out["checked_s"] / out["unchecked_waited_s"] - 1
        rows.append(out)
    return rows


def approx_costs(rt, sizes, rng) -> list[dict]:
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        clgemm.matmul(a, b, rel_tol=1e-2)
        infos = []
        for _ in range(7):
            _, info = clgemm.matmul(a, b, rel_tol=1e-2, return_info=True)
            infos.append(info)
        total = med([i.total_s for i in infos])
        kern = med([i.kernel_s for i in infos])
        rows.append({"n": n, "method": infos[-1].method, "total_s": total, "kernel_s": kern,
                     "outside_fraction": 1 - kern / total if total > 0 else None,
                     "tflops": 2.0 * n ** 3 / total / 1e12})
    return rows


def host_path(rt, sizes, rng) -> list[dict]:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        B = rng.standard_normal((n, n), np.float32)
        clgemm.matmul(A, B)
        ours = []
        for _ in range(5):
            t0 = time.perf_counter()
            clgemm.matmul(A, B)
            ours.append(time.perf_counter() - t0)
        theirs = []
        for _ in range(6):
            t0 = time.perf_counter()
            torch.mm(torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()).cpu().numpy()
            theirs.append(time.perf_counter() - t0)
        rows.append({"n": n, "clgemm_s": med(ours), "torch_s": med(theirs[1:]),
                     "ratio_to_torch": med(ours) / med(theirs[1:])})
    return rows


def nonfinite_fallback(rt, rng) -> dict:
    """Inf operands on the tensor-core lane's hot path: IEEE propagation as numpy float32
    gives, and the finite products around them accurate."""
    n = 2048
    plan = clgemm.plan(n, n, n)
    results = []
    for step, bad in enumerate([False, True, False, True, True, False]):
        A = rng.standard_normal((n, n), np.float32)
        B = rng.standard_normal((n, n), np.float32)
        if bad:
            A[step, 7] = np.inf
        out = clgemm.matmul(clgemm.to_device(A), clgemm.to_device(B)).get()
        with np.errstate(invalid="ignore", over="ignore"):
            ref32 = A @ B
        fin = np.isfinite(ref32)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        err = float(np.linalg.norm(out[fin] - ref[fin]) / np.linalg.norm(ref[fin]))
        np_err = float(np.linalg.norm(ref32[fin] - ref[fin]) / np.linalg.norm(ref[fin]))
        results.append({"inf_operand": bad,
                        "nan_pattern_equal": bool(np.array_equal(np.isnan(out), np.isnan(ref32))),
                        "inf_pattern_equal": bool(np.array_equal(np.isinf(out), np.isinf(ref32))),
                        "rel_error": err, "numpy_rel_error": np_err})
    return {"lane": plan.lane.name, "n": n, "steps": results,
            "ok": all(r["nan_pattern_equal"] and r["inf_pattern_equal"]
                      and r["rel_error"] <= 2 * r["numpy_rel_error"] for r in results)}


def exact_lanes(rt, sizes, rng) -> list[dict]:
    """The exact contract's two lanes through the hot path's launch (chained wall per call,
    the 3xTF32 lane with its gated fallback), beside torch.mm: where 3xTF32 starts to win
    (the table's min_flops)."""
    from clgemm.lanes.fp32 import Fp32Lane, choose_schedule
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc import schedule_for
    from clgemm.lanes.tc_exact import TcExactLane
    from clgemm.operands import Operand

    if not tensorcore_available(rt):
        return [{"skipped": "no tensor-core lane on this device"}]
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b, c = (clgemm.to_device(A) for _ in range(3))
        ops = [Operand(x.base_data, 0, n, False) for x in (a, b, c)]
        fp32 = Fp32Lane(rt, choose_schedule(rt, n, n, n))
        tc = TcExactLane(rt, schedule_for(rt, "3xtf32", n, n, n), fp32)
        lanes = {"fp32": fp32, "3xtf32-mma": tc}
        row = {"n": n, "flops": 2.0 * n ** 3}
        for name, lane in lanes.items():
            launch = lambda: lane.enqueue(n, n, n, 1.0, 0.0, *ops, rt.user_queue)  # noqa: E731
            for _ in range(3):
                launch()
            rt.user_queue.finish()
            row[name + "_s"] = med(rounds(launch, rt.user_queue.finish, 20))
        row["torch_s"], _ = torch_mm(n, A, 20)
        row["tc_over_fp32"] = row["fp32_s"] / row["3xtf32-mma_s"]
        rows.append(row)
    return rows


def gemv(rt, rng) -> dict:
    """Decode products (the small-rows lane) through the hot path, chained, beside torch
    (fp32), and the bytes they must move over the card's copy bandwidth."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    big = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 1 << 30)
    dst = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 1 << 30)
    cl.enqueue_copy(rt.user_queue, dst, big)
    rt.user_queue.finish()
    t0 = time.perf_counter()
    for _ in range(10):
        cl.enqueue_copy(rt.user_queue, dst, big)
    rt.user_queue.finish()
    copy_bw = 2 * 10 * (1 << 30) / (time.perf_counter() - t0)  # bytes read + written
    rows = []
    for m, n, k, tb in ((1, 11008, 4096, True), (16, 11008, 4096, True), (1, 4096, 11008, True),
                        (16, 4096, 11008, True), (1, 32000, 4096, True), (1, 4096, 4096, False),
                        (16, 4096, 4096, False)):
        A = rng.standard_normal((m, k), np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        lane_name = clgemm.plan(m, n, k, trans_b=tb).lane.name
        call = lambda: clgemm.matmul(a, b, trans_b=tb)  # noqa: E731
        for _ in range(3):
            call()
        rt.user_queue.finish()
        ours = med(rounds(call, rt.user_queue.finish, 20))
        ta_, tb_ = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
        opb = tb_.T if tb else tb_
        for _ in range(3):
            torch.matmul(ta_, opb)
        torch.cuda.synchronize()
        theirs = med(rounds(lambda: torch.matmul(ta_, opb), torch.cuda.synchronize, 20))
        moved = 4.0 * (m * k + n * k + m * n)
        variants = {}
        from clgemm.kernels.gemv import GemvSchedule
        from clgemm.lanes.gemv import GemvLane
        from clgemm.operands import Operand

        c = clgemm.to_device(np.zeros((m, n), np.float32))
        ops = (Operand(a.base_data, 0, k, False), Operand(b.base_data, 0, k if tb else n, tb),
               Operand(c.base_data, 0, n, False))
        for items, cols, vec in ((32, 8, 4), (64, 4, 4), (128, 2, 4), (32, 8, 1), (128, 1, 1),
                                 (16, 16, 4)):
            variant = GemvLane(rt, GemvSchedule(dot_items=items, dot_cols=cols, dot_vec=vec))
            launch = lambda: variant.enqueue(m, n, k, 1.0, 0.0, *ops, rt.user_queue)  # noqa: E731
            for _ in range(3):
                launch()
            rt.user_queue.finish()
            variants[variant.schedule.key()] = med(rounds(launch, rt.user_queue.finish, 20))
        rows.append({"m": m, "n": n, "k": k, "trans_b": tb, "lane": lane_name, "clgemm_s": ours,
                     "torch_s": theirs, "speed_vs_torch": theirs / ours,
                     "bandwidth_Bps": moved / ours, "of_copy_bandwidth": moved / ours / copy_bw,
                     "variants_s": variants})
    return {"copy_bandwidth_Bps": copy_bw, "rows": rows}


PARTS = ("floor", "host_costs", "kpi_public", "check", "approx", "host_path",
         "nonfinite_fallback", "exact_lanes", "gemv")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU device)")
    ap.add_argument("--parts", default=",".join(PARTS), help="which parts to run")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    rt = get_runtime(args.device)
    rng = np.random.default_rng(7)
    big = (256, 512) if args.quick else (256, 512, 1024, 2048, 4096)
    kpi = (96, 160) if args.quick else (1400, 2048, 3072, 4096)
    data = {"command": sys.argv, "env": fingerprint(rt.device, sys.argv)}

    def step(name, fn):
        if name not in parts:
            return
        t0 = time.perf_counter()
        try:
            data[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
            data[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[{name}] {time.perf_counter() - t0:.1f} s: {json.dumps(data[name])[:2000]}",
              flush=True)
        with open(args.out, "w") as fh:
            json.dump(data, fh, indent=1)

    step("floor", lambda: host_floor(rt))
    step("host_costs", lambda: host_costs(rt, big, rng))
    step("kpi_public", lambda: kpi_public(rt, kpi, rng))
    step("check", lambda: check_costs(rt, kpi[1:], rng))
    step("approx", lambda: approx_costs(rt, kpi, rng))
    step("host_path", lambda: host_path(rt, kpi, rng))
    if not args.quick:
        step("nonfinite_fallback", lambda: nonfinite_fallback(rt, rng))
    step("exact_lanes", lambda: exact_lanes(rt, (1024, 1400, 1600, 1800, 2048) if not args.quick
                                            else (64,), rng))
    if not args.quick:
        step("gemv", lambda: gemv(rt, rng))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
