"""The public call measured as a user makes it, beside PyTorch on the same card (issue: the
plan and the hot path). One process, one card, every figure with its peer in the same run:

  1. host cost per call (device arrays) beyond a bare pyopencl enqueue of an empty kernel on
     a plain queue, with C given and with C allocated by the call, 256 to 4096;
  2. the KPI squares through the public call: chained wall per call against the kernel's
     event time of the same run, and against torch.mm (cuBLAS fp32, TF32 off);
  3. check=True against the unchecked call, 2048 and up;
  4. rel_tol=1e-2: the call's wall outside its kernels (reported, and chained on device
     arrays: TF32 judged on the device), 1400 and up;
  5. numpy in and out against PyTorch's host-to-host call, 1400 to 4096;
  6. the tensor-core lane's on-device non-finite fallback on the real card.

    python benchmarks/plan/campaign.py --out $OUT/plan.json [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

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


def torch_wall(x, y, reps: int) -> float:
    """Median seconds per call of torch.matmul(x, y) on CUDA tensors, chained, after three
    warm-up calls (TF32 is switched off by the part that made x and y)."""
    import torch

    for _ in range(3):
        torch.matmul(x, y)
    torch.cuda.synchronize()
    return med(rounds(lambda: torch.matmul(x, y), torch.cuda.synchronize, reps))


def torch_peer(row: dict, A: np.ndarray, B: np.ndarray, trans_a: bool, trans_b: bool,
               reps: int) -> None:
    """torch.matmul of op(A) op(B) on CUDA tensors (fp32, TF32 off) beside a part's row:
    row["torch_s"], or row["torch"] saying why there is none (no torch, no CUDA)."""
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        x, y = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
        row["torch_s"] = torch_wall(x.transpose(-2, -1) if trans_a else x,
                                    y.transpose(-2, -1) if trans_b else y, reps)
    except Exception as exc:  # noqa: BLE001 - no torch or no CUDA here
        row["torch"] = f"absent: {type(exc).__name__}"


def poisoned_error(launch, c, ref) -> float:
    """C filled with NaN, `launch()` once, then its max relative error against float64 `ref`
    (a kernel that writes nothing shows as NaN, not as an earlier lane's result)."""
    c.fill(np.float32(np.nan))
    launch()
    got = c.get().astype(np.float64)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


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
    """check=True against the unchecked call on device arrays (C given), wall per call over
    rounds of 10: chained (one wait a round; the checked rounds end with clgemm.settle(),
    which reads every verdict), waited (a wait after each call), and the check that waits
    for its verdict in every call (CLGEMM_CHECK_DEFER=0's path, `checked_blocking`)."""
    from clgemm.guard import deferred

    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b, c = clgemm.to_device(A), clgemm.to_device(A), clgemm.to_device(A)
        out = {}
        for label, call, sync, defer in (
                ("unchecked_chained", lambda: clgemm.matmul(a, b, C=c), False, True),
                ("unchecked_waited", lambda: clgemm.matmul(a, b, C=c), True, True),
                ("checked_chained", lambda: clgemm.matmul(a, b, C=c, check=True), False, True),
                ("checked_waited", lambda: clgemm.matmul(a, b, C=c, check=True), True, True),
                ("checked_blocking", lambda: clgemm.matmul(a, b, C=c, check=True), True,
                 False),
                # outputs allocated by the call: a chain whose checks need not wait for each
                # other (one C written again waits on the device for the check before it)
                ("unchecked_chained_alloc", lambda: clgemm.matmul(a, b), False, True),
                ("checked_chained_alloc", lambda: clgemm.matmul(a, b, check=True), False,
                 True),
                # C's block sums on the side queue after the product's event for a C given
                # (CLGEMM_CHECK_CSUMS=side), and in order on the user queue for a C allocated
                # (=user): the placements the default does not take, for an A/B in one process
                ("checked_chained_side", lambda: clgemm.matmul(a, b, C=c, check=True), False,
                 True),
                ("checked_chained_alloc_user", lambda: clgemm.matmul(a, b, check=True), False,
                 True),
                # C's block sums taken inside the 3xTF32 product where its tiles are the
                # check's blocks (CLGEMM_CHECK_FUSED_SUMS=1)
                ("checked_chained_fused", lambda: clgemm.matmul(a, b, C=c, check=True), False,
                 True),
                ("checked_chained_alloc_fused", lambda: clgemm.matmul(a, b, check=True), False,
                 True)):
            deferred.ENABLED = defer
            fused = deferred.FUSED_SUMS
            deferred.FUSED_SUMS = fused or label.endswith("_fused")
            placement = deferred.C_SUMS
            deferred.C_SUMS = ("side" if label.endswith("_side") else
                               "user" if label.endswith("_user") else placement)
            try:
                call()
                clgemm.settle()
                rt.user_queue.finish()
                per = []
                for _ in range(7):
                    t0 = time.perf_counter()
                    for _ in range(10):
                        call()
                        if sync:
                            rt.user_queue.finish()
                    bad = [v for v in clgemm.settle() if not v.ok or v.detected]
                    rt.user_queue.finish()
                    per.append((time.perf_counter() - t0) / 10)
                    if bad:
                        out.setdefault("verdicts_not_clean", []).append(bad[0].as_dict())
            finally:
                deferred.ENABLED = True
                deferred.C_SUMS = placement
                deferred.FUSED_SUMS = fused
            out[label + "_s"] = med(per)
        out["checked_s"] = out["checked_blocking_s"]  # the name of earlier records
        # where a checked call's time goes on the host (guard/abft.checked_core): from its
        # entry to the guard's last enqueue, the summary's read (the wait), and after it;
        # `outside_core_s`: the call's wall outside checked_core (plan, station, operands)
        phases = []
        for _ in range(7):
            _, info = clgemm.matmul(a, b, C=c, check=True, return_info=True)
            host = dict(info.extra["abft"]["host"])
            host["outside_core_s"] = info.total_s - sum(host.values())
            phases.append(host)
        out["checked_host"] = {key: med([p[key] for p in phases]) for key in phases[0]}
        out["n"] = n
        # each checked chain over its unchecked one; the bar's figure: overhead_vs_chained
        for key, checked, unchecked in (
                ("overhead_vs_chained", "checked_chained", "unchecked_chained"),
                ("overhead_vs_waited", "checked_waited", "unchecked_waited"),
                ("blocking_overhead_vs_chained", "checked_blocking", "unchecked_chained"),
                ("overhead_vs_chained_alloc", "checked_chained_alloc",
                 "unchecked_chained_alloc"),
                ("side_overhead_vs_chained", "checked_chained_side", "unchecked_chained"),
                ("user_overhead_vs_chained_alloc", "checked_chained_alloc_user",
                 "unchecked_chained_alloc"),
                ("fused_overhead_vs_chained", "checked_chained_fused", "unchecked_chained"),
                ("fused_overhead_vs_chained_alloc", "checked_chained_alloc_fused",
                 "unchecked_chained_alloc")):
            out[key] = out[checked + "_s"] / out[unchecked + "_s"] - 1

        rows.append(out)
    return rows


def approx_probe_nosplit(rt, sizes, rng) -> list[dict]:
    """approx_costs with the judge's probe products unsplit (CLGEMM_JUDGE_PROBE_SPLITS=1:
    three gemv_reduce launches fewer, fewer work-groups): does the host's shorter path win
    where the chained judged call is host-bound (1400 on the H100: 213 us against 175 us of
    kernels, records/nvidia-h100/2026-12-07-plan-traces-2)?"""
    import os

    keys = (("budget judge", "user"), ("budget judge", "station"))
    os.environ["CLGEMM_JUDGE_PROBE_SPLITS"] = "1"
    try:
        for key in keys:
            rt.forget(key)
        return approx_costs(rt, sizes, rng)
    finally:
        os.environ.pop("CLGEMM_JUDGE_PROBE_SPLITS", None)
        for key in keys:
            rt.forget(key)


def approx_costs(rt, sizes, rng) -> list[dict]:
    """rel_tol=1e-2 on device arrays: a reported call (its wall, the TF32 kernel's and every
    kernel's device time, the verdict read back) and chained calls that report nothing (the
    plan's judged path, approx/judged.py), whose wall per call against the device time of
    all the call's kernels is the issue's "work outside its kernels"."""
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        c = clgemm.matmul(a, b, rel_tol=1e-2)
        infos = []
        for _ in range(7):
            _, info = clgemm.matmul(a, b, rel_tol=1e-2, return_info=True)
            infos.append(info)
        total = med([i.total_s for i in infos])
        kern = med([i.kernel_s for i in infos])
        tc = [i.extra.get("approx", {}).get("tensor_core", {}) for i in infos]
        device = med([t.get("device_s", 0.0) for t in tc]) if tc[-1] else None
        reps = max(10, min(60, int(0.03 / max(total, 1e-6))))
        # chained with and without the replay (lanes/recording.py), in alternating rounds
        plan_module = importlib.import_module("clgemm.plan")
        sides: dict[bool, list[float]] = {True: [], False: []}
        try:
            for turn in range(4):
                for replay in ((True, False) if turn % 2 == 0 else (False, True)):
                    plan_module.REPLAY = replay
                    sides[replay] += rounds(lambda: clgemm.matmul(a, b, C=c, rel_tol=1e-2),
                                            rt.finish, reps)
        finally:
            plan_module.REPLAY = True
        chained, unreplayed = med(sides[True]), med(sides[False])
        rows.append({"n": n, "method": infos[-1].method, "total_s": total, "kernel_s": kern,
                     "outside_fraction": 1 - kern / total if total > 0 else None,
                     "tflops": 2.0 * n ** 3 / total / 1e12,
                     "judged": bool(tc[-1].get("judged_on_device")),
                     "all_kernels_s": device,
                     "reported_outside_all": (1 - device / total) if device else None,
                     "chained_s": chained,
                     "chained_outside_all": (1 - device / chained) if device else None,
                     "chained_no_replay_s": unreplayed,
                     "chained_no_replay_outside_all": ((1 - device / unreplayed) if device
                                                       else None),
                     "chained_outside_product": 1 - kern / chained,
                     "chained_tflops": 2.0 * n ** 3 / chained / 1e12})
    return rows


def host_path(rt, sizes, rng) -> list[dict]:
    """numpy in and out: clgemm.matmul with no page-locked staging (CLGEMM_STAGING=0), the
    default (a GPU's reads from staging.READ_STAGED_FROM staged) and every copy staged
    (CLGEMM_STAGING=1), against torch's host-to-host product, with the call's phases."""
    import os

    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        B = rng.standard_normal((n, n), np.float32)
        row = {"n": n}
        for label, env in (("pageable", "0"), ("default", None), ("staged", "1")):
            if env is None:
                os.environ.pop("CLGEMM_STAGING", None)
            else:
                os.environ["CLGEMM_STAGING"] = env
            clgemm.matmul(A, B)
            ours = []
            for _ in range(5):
                t0 = time.perf_counter()
                clgemm.matmul(A, B)
                ours.append(time.perf_counter() - t0)
            phases = []
            for _ in range(3):
                _, info = clgemm.matmul(A, B, return_info=True)
                phases.append({"total_s": info.total_s, "h2d_s": info.h2d_s,
                               "kernel_s": info.kernel_s, "d2h_s": info.d2h_s})
            row[f"clgemm_{label}_s"] = med(ours)
            row[f"phases_{label}"] = phases
        os.environ.pop("CLGEMM_STAGING", None)
        theirs = []
        for _ in range(6):
            t0 = time.perf_counter()
            torch.mm(torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()).cpu().numpy()
            theirs.append(time.perf_counter() - t0)
        row["torch_s"] = med(theirs[1:])
        row["clgemm_s"] = row["clgemm_default_s"]
        row["ratio_to_torch"] = row["clgemm_s"] / row["torch_s"]
        row["staged_ratio_to_torch"] = row["clgemm_staged_s"] / row["torch_s"]
        row["pageable_ratio_to_torch"] = row["clgemm_pageable_s"] / row["torch_s"]
        rows.append(row)
    return rows


@contextlib.contextmanager
def captured_enqueues(copies: bool = True):
    """pyopencl's kernel enqueues (and copies) wrapped while the block runs; yields the list
    of (kernel name or "copy", event, queue) they append, in enqueue order."""
    seen: list[tuple] = []
    real_kernel, real_copy = cl.enqueue_nd_range_kernel, cl.enqueue_copy

    def kernel(queue, k, *args, **kwargs):
        ev = real_kernel(queue, k, *args, **kwargs)
        seen.append((k.function_name, ev, queue))
        return ev

    def copy(queue, *args, **kwargs):
        ev = real_copy(queue, *args, **kwargs)
        seen.append(("copy", ev, queue))
        return ev

    cl.enqueue_nd_range_kernel = kernel
    if copies:
        cl.enqueue_copy = copy
    try:
        yield seen
    finally:
        cl.enqueue_nd_range_kernel, cl.enqueue_copy = real_kernel, real_copy


def profiled(seen: list[tuple]) -> list[dict]:
    """Each captured command's name, queue and device interval (start_ns, end_ns), or the
    error its event's profile raised (a queue without profiling)."""
    items = []
    for name, ev, queue in seen:
        try:
            ev.wait()
            items.append({"name": name, "queue": queue, "start_ns": ev.profile.start,
                          "end_ns": ev.profile.end})
        except Exception as exc:  # noqa: BLE001 - a queue without profiling
            items.append({"name": name, "error": type(exc).__name__})
    return items


def check_chain_profile(rt, sizes, rng, calls: int = 4) -> list[dict]:
    """A chain of checked calls into one C (the deferred check, guard/deferred.py) with the
    user queue swapped for a profiling one: every command's device interval on both queues,
    with C's block sums after the product on its queue, on the side queue, and taken inside
    the product (FUSED_SUMS, where the lane's tiles are the check's blocks), and the
    unchecked chain's products beside: where the checked chain's extra time goes."""
    from clgemm.guard import deferred

    rows = []
    plain = rt.user_queue
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b, c = clgemm.to_device(A), clgemm.to_device(A), clgemm.to_device(A)
        for label, check, where in (("unchecked", False, "given"),
                                    ("checked", True, "given"),
                                    ("checked_side", True, "side"),
                                    ("checked_fused", True, "given")):
            placement, fused = deferred.C_SUMS, deferred.FUSED_SUMS
            deferred.FUSED_SUMS = label == "checked_fused"
            rt.user_queue = cl.CommandQueue(
                rt.context, properties=cl.command_queue_properties.PROFILING_ENABLE)
            deferred.C_SUMS = where
            # the hot path takes arrays bound to the user queue (plan._on)
            profiling = rt.user_queue
            qa, qb, qc = (x.with_queue(profiling) for x in (a, b, c))
            try:
                for _ in range(2):  # the plan, the guard's buffers and queue made
                    clgemm.matmul(qa, qb, C=qc, check=check)
                clgemm.settle()
                rt.finish()
                with captured_enqueues(copies=False) as seen:
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        clgemm.matmul(qa, qb, C=qc, check=check)
                    verdicts = clgemm.settle()
                    rt.finish()
                    wall = time.perf_counter() - t0
            finally:
                rt.user_queue.finish()
                rt.user_queue = plain
                deferred.C_SUMS, deferred.FUSED_SUMS = placement, fused
            items = profiled(seen)
            for i in items:
                if "error" not in i:
                    i["user_queue"] = i.pop("queue") is profiling
            timed = [i for i in items if "start_ns" in i]
            t_0 = min((i["start_ns"] for i in timed), default=0)
            for i in timed:
                i["start_us"] = (i["start_ns"] - t_0) * 1e-3
                i["us"] = (i["end_ns"] - i["start_ns"]) * 1e-3
            span = (max(i["end_ns"] for i in timed) - t_0) * 1e-9 if timed else None
            rows.append({"n": n, "case": label, "calls": calls, "wall_s": wall,
                         "device_span_s": span,
                         "verdicts_clean": all(v.ok and not v.detected for v in verdicts),
                         "items": items})
    return rows


def call_profile(rt, sizes, rng, **contract) -> list[dict]:
    """Where a call's time goes (check=True, rel_tol=...): every kernel and copy it enqueues,
    captured by wrapping pyopencl's enqueue functions for one call, with its device time (the
    stations' queue profiles), against the call's wall and the unchecked kernel. The call asks
    for its info: a rel_tol call that reports nothing runs on the user queue, which has no
    profiling (every event's time was a RuntimeError on the H200, records/nvidia-h200/
    2026-12-07-plan-traces); a reported one runs the same kernels on the stations' queue."""
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(A)
        for _ in range(3):
            clgemm.matmul(a, b, return_info=True, **contract)
        rt.finish()
        with captured_enqueues() as seen:
            t0 = time.perf_counter()
            clgemm.matmul(a, b, return_info=True, **contract)
            rt.finish()
            wall = time.perf_counter() - t0
        items = profiled(seen)
        for i in items:
            i.pop("queue", None)
            if "error" not in i:
                i["s"] = (i["end_ns"] - i["start_ns"]) * 1e-9
        timed = [i for i in items if "s" in i]
        span = ((max(i["end_ns"] for i in timed) - min(i["start_ns"] for i in timed)) * 1e-9
                if timed else None)
        rows.append({"n": n, "wall_s": wall, "device_span_s": span,
                     "device_busy_s": sum(i["s"] for i in timed), "items": items})
    return rows


def transfers(rt, sizes, rng) -> list[dict]:
    """Host-device copies of one n x n float32 matrix, each way: from pageable numpy memory,
    from page-locked memory (a mapped ALLOC_HOST_PTR buffer), the host memcpy into and out
    of page-locked memory, and torch's copies (pageable and pinned) beside."""
    import torch

    from clgemm.staging import pinned_host

    q = rt.queue
    rows = []
    for n in sizes:
        host = rng.standard_normal((n, n), np.float32)
        back = np.empty_like(host)
        pinned, _keep = pinned_host(rt, (n, n), np.float32)
        buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, host.nbytes)

        def timed(fn, reps=7):
            fn()
            out = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
            return med(out)

        row = {"n": n, "bytes": host.nbytes,
               "write_pageable_s": timed(lambda: cl.enqueue_copy(q, buf, host, is_blocking=True)),
               "write_pinned_s": timed(lambda: cl.enqueue_copy(q, buf, pinned, is_blocking=True)),
               "read_pageable_s": timed(lambda: cl.enqueue_copy(q, back, buf, is_blocking=True)),
               "read_pinned_s": timed(lambda: cl.enqueue_copy(q, pinned, buf, is_blocking=True)),
               "memcpy_s": timed(lambda: np.copyto(pinned, host))}
        t = torch.from_numpy(host)
        tp = torch.empty((n, n), pin_memory=True)
        g = t.cuda()
        row["torch_write_pageable_s"] = timed(lambda: (t.cuda(), torch.cuda.synchronize()))
        row["torch_write_pinned_s"] = timed(lambda: (tp.cuda(non_blocking=True),
                                                    torch.cuda.synchronize()))
        row["torch_read_pageable_s"] = timed(lambda: g.cpu())
        rows.append(row)
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


def lane_wall(rt, lane, m: int, n: int, k: int, ops, reps: int) -> float:
    """Median seconds per call of a lane's launch (alpha 1, beta 0) chained on the user
    queue, after three warm-up calls."""
    launch = lambda: lane.enqueue(m, n, k, 1.0, 0.0, *ops, rt.user_queue)  # noqa: E731
    for _ in range(3):
        launch()
    rt.user_queue.finish()
    return med(rounds(launch, rt.user_queue.finish, reps))


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
            row[name + "_s"] = lane_wall(rt, lane, n, n, n, ops, 20)
        row["torch_s"], _ = torch_mm(n, A, 20)
        row["tc_over_fp32"] = row["fp32_s"] / row["3xtf32-mma_s"]
        rows.append(row)
    return rows


# Products of the model traces whose float32 grid leaves most of the H100's units idle
# (records/nvidia-h100/2026-12-07-plan-traces): ResNet-50's classifier (16 tiles, 4.19x
# torch) and TinyLlama's K/V projections at prefill (64 tiles, 2.95x), then wider and deeper.
SKINNY = ((32, 1000, 2048), (512, 256, 2048), (64, 1000, 4096), (128, 512, 8192),
          (256, 256, 11008))


def skinny(rt, rng, quick: bool = False) -> list[dict]:
    """The split-K lane (lanes/splitk.SplitKLane) against the float32 family's plain launch
    on underfilled products, B stored transposed as a Linear weight, chained wall per call
    on the user queue, beside torch.matmul: the cost model's slices and 2 / 4 / 8 forced.
    The evidence that made CLGEMM_SPLITK the default (the lane verdict, H200)."""
    from clgemm.lanes import splitk
    from clgemm.lanes.fp32 import choose_schedule, lane_for
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc import schedule_for
    from clgemm.operands import Operand

    rows = []
    for m, n, k in ((16, 40, 600), (8, 64, 1024)) if quick else SKINNY:
        A = rng.standard_normal((m, k), np.float32)
        W = rng.standard_normal((n, k), np.float32)
        a, w = clgemm.to_device(A), clgemm.to_device(W)
        c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
        ops = (Operand(a.base_data, 0, k, False), Operand(w.base_data, 0, k, True),
               Operand(c.base_data, 0, n, False))
        chosen = choose_schedule(rt, m, n, k)
        model = splitk.plan(rt, m, n, k, chosen)
        lanes = {"fp32": lane_for(rt, chosen),
                 f"splitk-model-s{model.slices}": splitk.SplitKLane(rt, model)}
        for sl in (2, 4, 8):
            lanes[f"splitk-s{sl}"] = splitk.SplitKLane(rt, splitk.Plan(model.schedule, sl))
        if tensorcore_available(rt):  # 3xTF32 over K (the route's TcSplitKLane)
            tc_s = schedule_for(rt, "3xtf32", m, n, k)
            sl = splitk.tc_slices(rt, tc_s, m, n, k)
            if sl > 1:
                lanes[f"3xtf32-splitk-s{sl}"] = splitk.TcSplitKLane(rt, tc_s, sl)
        ref = A.astype(np.float64) @ W.T.astype(np.float64)
        row = {"m": m, "n": n, "k": k, "table_schedule": chosen.key(),
               "model_schedule": model.schedule.key(), "model_slices": model.slices,
               "underfilled": splitk.underfilled(rt, chosen, m, n)}
        for name, lane in lanes.items():
            row[name + "_s"] = lane_wall(rt, lane, m, n, k, ops, 20)
            got = c.get().astype(np.float64)
            row[name + "_rel_error"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        try:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False
            row["torch_s"] = torch_wall(torch.from_numpy(A).cuda(),
                                        torch.from_numpy(W).cuda().T, 20)
        except Exception as exc:  # noqa: BLE001 - no torch or no CUDA here
            row["torch"] = f"absent: {type(exc).__name__}"
        rows.append(row)
    return rows


def _trace_products(rng, lo: float, hi: float, min_rows: int = 0):
    """Each distinct unbatched product of the model traces between `lo` and `hi` flops whose
    m and n are at least `min_rows`, once: (trace path, call, A, B, C poisoned with NaN, the
    three operands as the trace lays them out)."""
    from clgemm.bench.model import trace_calls
    from clgemm.operands import Operand

    seen = set()
    for path in sorted(Path("traces/models").glob("*.jsonl")):
        for call in trace_calls(path):
            m, n, k, ta, tb = call.shape
            if (call.batch != 1 or not lo <= 2.0 * m * n * k <= hi or call.shape in seen
                    or min(m, n) < min_rows):
                continue
            seen.add(call.shape)
            A = rng.standard_normal((k, m) if ta else (m, k), np.float32)
            B = rng.standard_normal((n, k) if tb else (k, n), np.float32)
            a, b = clgemm.to_device(A), clgemm.to_device(B)
            c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
            ops = (Operand(a.base_data, 0, m if ta else k, ta),
                   Operand(b.base_data, 0, k if tb else n, tb), Operand(c.base_data, 0, n, False))
            yield path, call, A, B, c, ops


def trace_lanes(rt, rng, lo: float = 1e9, hi: float = 2e10) -> list[dict]:
    """The exact contract's lanes on every distinct product of the model traces between
    `lo` and `hi` flops (the float32 family's table schedule, and the 3xTF32 lane's schedule
    for the shape, forced whatever min_flops and the tiles rule say, and that schedule split
    over K where tc_slices would split it), chained wall per call on the user queue, operands
    as the trace lays them out, each result's error against float64, torch.matmul beside:
    the evidence for the table's min_flops, the route's tiles rule and CLGEMM_TC_SPLITK on
    shapes that are not squares (exact_lanes times squares only)."""
    from clgemm.lanes import splitk
    from clgemm.lanes.fp32 import choose_schedule, lane_for
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc import schedule_for
    from clgemm.lanes.tc_exact import TcExactLane

    if not tensorcore_available(rt):
        return [{"skipped": "no tensor-core lane on this device"}]
    rows = []
    for path, call, A, B, c, ops in _trace_products(rng, lo, hi):
        m, n, k, ta, tb = call.shape
        flops = 2.0 * m * n * k
        fp32 = lane_for(rt, choose_schedule(rt, m, n, k))
        tc_s = schedule_for(rt, "3xtf32", m, n, k)
        lanes = {"fp32": fp32, "3xtf32": TcExactLane(rt, tc_s, fp32)}
        slices = splitk.tc_slices(rt, tc_s, m, n, k)
        if slices > 1:  # the split-K 3xTF32 lane (CLGEMM_TC_SPLITK) where it would split
            lanes["3xtf32-splitk"] = splitk.TcSplitKLane(rt, tc_s, slices)
        row = {"trace": path.stem, "name": call.name, "m": m, "n": n, "k": k,
               "trans_a": ta, "trans_b": tb, "flops": flops,
               "tc_tiles": -(-m // tc_s.block_m) * -(-n // tc_s.block_n),
               "tc_block": [tc_s.block_m, tc_s.block_n], "tc_slices": slices,
               "compute_units": rt.device.compute_units}
        ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
        for name, lane in lanes.items():
            c.set(np.full((m, n), np.nan, np.float32))  # poisoned before each lane
            row[name + "_s"] = lane_wall(rt, lane, m, n, k, ops, 10)
            got = c.get().astype(np.float64)
            row[name + "_rel_error"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        row["tc_over_fp32"] = row["fp32_s"] / row["3xtf32_s"]
        torch_peer(row, A, B, ta, tb, 10)
        rows.append(row)
    return rows


# 3xTF32 schedules the traces' shape classes may take instead of the table's two (the
# squares' 128 x 128 and 96 x 128 tiles): narrower and shorter tiles whose grids fill a
# mid-sized product's waves, each kept correct by an earlier round of benchmarks/tc/run_tc.py.
TC_CLASS_CANDIDATES = (
    "tc-3xtf32-b128x128x16-w2x2-s2-f3-a1-r1",
    "tc-3xtf32-b128x128x16-w2x2-s2-f3-a1-r4",
    "tc-3xtf32-b96x128x16-w2x2-s2-f3-a1-r4",
    "tc-3xtf32-b128x64x16-w2x2-s2-f3-a1-r4",
    "tc-3xtf32-b64x128x16-w2x2-s2-f3-a1-r4",
    "tc-3xtf32-b128x64x16-w2x2-s3-f3-a1-r4",
    "tc-3xtf32-b64x64x32-w2x1-s2-f3-a1-r4",
    "tc-3xtf32-b128x128x16-w2x4-s2-f3-a1-r4",
)


def tc_classes(rt, rng, lo: float = 1e9, hi: float = 2e10,
               keys: tuple[str, ...] = TC_CLASS_CANDIDATES) -> list[dict]:
    """Every distinct product of the model traces between `lo` and `hi` flops (not the
    small-rows lane's), through the route's lane and through 3xTF32 with each candidate
    schedule: one launch, and split over K where the route's tile rule would split it
    (tc_slices); chained wall per call on the user queue, operands as the trace lays them
    out, each result's error against float64: the evidence for per-class entries of the
    table's 3xTF32 lane (benchmarks/plan/tc_classes.py distills them)."""
    from clgemm.kernels.gemv import MAX_ROWS
    from clgemm.kernels.tensorcore import TcSchedule
    from clgemm.lanes import splitk
    from clgemm.lanes.fp32 import choose_schedule, lane_for
    from clgemm.lanes.mma import layout_for, valid_for
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc_exact import TcExactLane
    from clgemm.route import MIN_TILES_PER_UNIT

    if not tensorcore_available(rt):
        return [{"skipped": "no tensor-core lane on this device"}]
    schedules = [TcSchedule.from_key(k) for k in keys]
    units = rt.device.compute_units
    rows = []
    for path, call, A, B, c, ops in _trace_products(rng, lo, hi, min_rows=MAX_ROWS + 1):
        m, n, k, ta, tb = call.shape
        flops = 2.0 * m * n * k
        ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)

        def timed(lane) -> tuple[float, float]:
            c.set(np.full((m, n), np.nan, np.float32))  # poisoned before each lane
            t = lane_wall(rt, lane, m, n, k, ops, 10)
            got = c.get().astype(np.float64)
            return t, float(np.linalg.norm(got - ref) / np.linalg.norm(ref))

        route = clgemm.plan(m, n, k, trans_a=ta, trans_b=tb)
        fp32 = lane_for(rt, choose_schedule(rt, m, n, k))
        row = {"trace": path.stem, "name": call.name, "m": m, "n": n, "k": k,
               "trans_a": ta, "trans_b": tb, "flops": flops, "compute_units": units,
               "route_lane": route.lane.name, "route_schedule": route.lane.schedule.key(),
               "candidates": {}}
        row["route_s"], row["route_rel_error"] = timed(route.lane)
        layout = layout_for(ops[0], ops[1])
        for s in schedules:
            cand = {"tiles": -(-m // s.block_m) * -(-n // s.block_n)}
            if not valid_for(rt, s, layout):
                cand["skipped"] = "does not fit this layout"
            else:
                try:
                    cand["s"], cand["rel_error"] = timed(TcExactLane(rt, s, fp32))
                    slices = splitk.tc_slices(rt, s, m, n, k)
                    if cand["tiles"] < MIN_TILES_PER_UNIT * units and slices > 1:
                        cand["slices"] = slices
                        cand["split_s"], cand["split_rel_error"] = timed(
                            splitk.TcSplitKLane(rt, s, slices))
                except Exception as exc:  # noqa: BLE001 - one candidate must not end the part
                    cand["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            row["candidates"][s.key()] = cand
        rows.append(row)
    return rows


# 3xTF32 on tiles of 16 rows (one mma row of tiles: m16n8k8) for decode's 16-row products,
# which the small-rows lane streams at a third to a half of the card's copy bandwidth
# (16 x 11008 x 4096 NT: 132.5 us, torch 102, on the H200: records/nvidia-h200/
# 2026-12-07-plan-traces-5): the tensor cores take the 16 FMAs per weight that bound it
TC_ROWS_CANDIDATES = (
    "tc-3xtf32-b16x128x32-w1x4-s3-f3-a1-r1",
    "tc-3xtf32-b16x128x32-w1x4-s3-f1-a1-r1",
    "tc-3xtf32-b16x64x32-w1x2-s3-f3-a1-r1",
    "tc-3xtf32-b16x64x32-w1x4-s4-f3-a1-r1",
    "tc-3xtf32-b16x256x32-w1x4-s3-f3-a1-r1",
    "tc-3xtf32-b16x128x32-w1x2-s4-f3-a1-r1",
    "tc-3xtf32-b32x128x32-w2x2-s3-f3-a1-r1",
)
TC_ROWS_SHAPES = ((16, 4096, 4096, True), (16, 11008, 4096, True), (16, 4096, 11008, True),
                  (16, 32000, 4096, True), (16, 2048, 2048, True), (16, 256, 2048, True),
                  (16, 5632, 2048, True), (16, 2048, 5632, True), (16, 4096, 4096, False),
                  (32, 4096, 4096, True), (1, 11008, 4096, True), (8, 4096, 4096, True))


def tc_rows(rt, rng, quick: bool = False) -> list[dict]:
    """Decode's products of 1-32 rows on 3xTF32 with 16- and 32-row tiles, K split in
    tc_slices' slices and twice that (TcSplitKLane: the slabs then one sum), against the
    route's lane (the small-rows lane) and torch.matmul, chained wall per call on the user
    queue; each result poisoned first and judged against float64 as a ratio to numpy
    float32's error (the exact contract: at most 2)."""
    from clgemm.kernels.tensorcore import TcSchedule
    from clgemm.lanes import splitk
    from clgemm.lanes.mma import layout_for, valid_for
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.operands import Operand

    if not quick and not tensorcore_available(rt):
        return [{"skipped": "no tensor-core lane on this device"}]
    shapes = ((16, 40, 300, True), (5, 70, 260, False)) if quick else TC_ROWS_SHAPES
    # (quick: a small tile of 16 rows, which PoCL compiles emulated in seconds)
    keys = ("tc-3xtf32-b16x16x16-w1x2-s2-f3-a1-r1",) if quick else TC_ROWS_CANDIDATES
    rows = []
    for m, n, k, tb in shapes:
        A = rng.standard_normal((m, k), np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), np.float32)
        opB = B.T if tb else B
        ref = A.astype(np.float64) @ opB.astype(np.float64)
        np_err = float(np.linalg.norm(A @ opB - ref) / np.linalg.norm(ref))
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
        ops = (Operand(a.base_data, 0, k, False), Operand(b.base_data, 0, k if tb else n, tb),
               Operand(c.base_data, 0, n, False))

        def timed(lane) -> tuple[float, float]:
            c.set(np.full((m, n), np.nan, np.float32))
            t = lane_wall(rt, lane, m, n, k, ops, 20)
            got = c.get().astype(np.float64)
            return t, float(np.linalg.norm(got - ref) / np.linalg.norm(ref)) / np_err

        route = clgemm.plan(m, n, k, trans_b=tb)
        row = {"m": m, "n": n, "k": k, "trans_b": tb, "route_lane": route.lane.name,
               "route_schedule": route.lane.schedule.key(), "bytes": 4.0 * (m * k + n * k + m * n),
               "candidates": {}}
        row["route_s"], row["route_error_vs_numpy"] = timed(route.lane)
        if not quick:
            import torch

            torch.backends.cuda.matmul.allow_tf32 = False
            ta_, tb_ = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
            row["torch_s"] = torch_wall(ta_, tb_.T if tb else tb_, 20)
        layout = layout_for(ops[0], ops[1])
        for key in keys:
            s = TcSchedule.from_key(key)
            cand: dict = {}
            if not valid_for(rt, s, layout):
                cand["skipped"] = "does not fit this layout"
            else:
                base = splitk.tc_slices(rt, s, m, n, k)
                for slices in sorted({base, 2 * base}):
                    if slices > k // splitk.MIN_SLICE:
                        continue
                    try:
                        t, err = timed(splitk.TcSplitKLane(rt, s, slices))
                        cand[str(slices)] = {"s": t, "error_vs_numpy": err}
                    except Exception as exc:  # noqa: BLE001 - one must not end the part
                        cand[str(slices)] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            row["candidates"][key] = cand
        timed_ = {(key, sl): v["s"] for key, cand in row["candidates"].items()
                  for sl, v in cand.items() if isinstance(v, dict) and "s" in v
                  and v["error_vs_numpy"] <= 2.0}
        if timed_:
            (key, sl) = min(timed_, key=timed_.get)
            row["best"] = {"schedule": key, "slices": int(sl), "s": timed_[(key, sl)],
                           "speed_over_route": row["route_s"] / timed_[(key, sl)]}
            if "torch_s" in row:
                row["best"]["speed_over_torch"] = row["torch_s"] / timed_[(key, sl)]
        rows.append(row)
    return rows


def trace_host(rt, rng, traces: tuple[str, ...] = ("llama-7b-decode", "tinyllama-1.1b"),
               passes: int = 5) -> list[dict]:
    """Whether a trace's pass through matmul is bound by the host: for each trace, passes
    of every call in order (device arrays, outputs allocated by the call, as the model suite
    times them), each call's own host time (perf_counter around the call, nothing waited),
    the host's time to the last call's return and the pass's wall to the queue's finish;
    torch's the same way beside. A pass whose host time nears its wall is host-bound: the
    products' own loops hid the host behind the device, the pass cannot (the traces' passes
    ran 13% over their products' loops on the H200, torch's 3%: records/nvidia-h200/
    2026-12-07-plan-traces-5)."""

    plan_module = importlib.import_module("clgemm.plan")  # its REPLAY switch
    rows = []
    try:
        for name in traces:
            rows += _trace_host_rows(rt, name, passes, plan_module)
    finally:
        plan_module.REPLAY = True  # the parts after this one replay, whatever happened
    return rows


def _trace_host_rows(rt, name: str, passes: int, plan_module) -> list[dict]:
    """trace_host's rows of one trace: clgemm with its hot calls launched from recordings
    (lanes/recording.py) and without (CLGEMM_REPLAY=0's path), in one process, and torch."""
    from clgemm.bench.model import _Clgemm, _Operands, _Torch, trace_calls

    rows = []
    calls = trace_calls(Path("traces/models") / f"{name}.jsonl")
    ops = _Operands(calls, 0)
    sides = [(_Clgemm(ops, rt.device), "clgemm", True),
             (_Clgemm(ops, rt.device), "clgemm-no-replay", False)]
    try:
        sides.append((_Torch(ops), "torch", None))
    except Exception as exc:  # noqa: BLE001 - no torch or no CUDA here
        rows.append({"trace": name, "torch": f"absent: {type(exc).__name__}"})
    for side, side_name, replay in sides:
        if replay is not None:
            plan_module.REPLAY = replay
        _passes(side, calls, 2)  # warm: plans, kernels, pools
        walls, hosts, per_call = [], [], [[] for _ in calls]
        for _ in range(passes):
            t0 = time.perf_counter()
            for i, c in enumerate(calls):
                t = time.perf_counter()
                side.call(c)
                per_call[i].append(time.perf_counter() - t)
            hosts.append(time.perf_counter() - t0)
            side.sync()
            walls.append(time.perf_counter() - t0)
        rows.append({"trace": name, "side": side_name, "calls": len(calls),
                     "pass_wall_s": med(walls), "pass_host_s": med(hosts),
                     "host_share": med(hosts) / med(walls),
                     "per_call": [{"name": c.name, "m": c.m, "n": c.n, "k": c.k,
                                   "batch": c.batch, "host_s": med(x)}
                                  for c, x in zip(calls, per_call)]})
    return rows


def host_profile(rt, rng, traces: tuple[str, ...] = ("llama-7b-decode", "tinyllama-1.1b"),
                 passes: int = 20, top: int = 40) -> list[dict]:
    """Where a trace's host time goes, function by function: cProfile over `passes` passes
    of every call (device arrays, outputs allocated, as trace_host times them), the
    functions by their own time per call of the trace. The CPU device's route differs from
    a GPU's (no tensor-core lanes, PoCL's packing), so the hot path a GPU call takes is
    profiled where it runs. cProfile adds its own cost to every Python call: compare the
    functions with each other, not with trace_host's figures."""
    import cProfile
    import pstats

    from clgemm.bench.model import _Clgemm, _Operands, trace_calls

    rows = []
    for name in traces:
        calls = trace_calls(Path("traces/models") / f"{name}.jsonl")
        side = _Clgemm(_Operands(calls, 0), rt.device)
        _passes(side, calls, 2)  # warm: plans, kernels, pools
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        _passes(side, calls, passes)
        prof.disable()
        wall = time.perf_counter() - t0
        n_calls = passes * len(calls)
        stats = pstats.Stats(prof).stats
        funcs = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
        rows.append({
            "trace": name, "calls": n_calls, "wall_per_call_s": wall / n_calls,
            "functions": [{"function": f"{Path(file).name}:{line}({fn})",
                           "calls_per_call": round(nc / n_calls, 3),
                           "own_s_per_call": tt / n_calls, "cum_s_per_call": ct / n_calls}
                          for (file, line, fn), (_, nc, tt, ct, _) in funcs]})
    return rows


def _passes(side, calls, passes: int) -> None:
    """`passes` passes of a trace's calls on one side (clgemm, torch), each waited for."""
    for _ in range(passes):
        for c in calls:
            side.call(c)
        side.sync()


def tc_epilogue(rt, sizes, rng) -> list[dict]:
    """The 3xTF32 kernel with its IEEE fallback inside (one launch a call) against the
    flag-only kernel followed by the gated float32 kernel (two launches): kernel time from
    events (the same schedule and layout), chained wall per call, and torch.mm beside."""
    from clgemm.lanes.fp32 import Fp32Lane, choose_schedule
    from clgemm.lanes.mma import get_kernel, layout_for, nonfinite_flag
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc import schedule_for
    from clgemm.operands import Operand

    if not tensorcore_available(rt):
        return [{"skipped": "no tensor-core lane on this device"}]
    flag = nonfinite_flag(rt)
    rows = []
    for n in sizes:
        A = rng.standard_normal((n, n), np.float32)
        a, b, c = (clgemm.to_device(A) for _ in range(3))
        ops = [Operand(x.base_data, 0, n, False) for x in (a, b, c)]
        s = schedule_for(rt, "3xtf32", n, n, n)
        layout = layout_for(ops[0], ops[1])
        inside = get_kernel(rt, s, layout, ieee_fallback=True)
        flag_only = get_kernel(rt, s, layout)
        fp32 = Fp32Lane(rt, choose_schedule(rt, n, n, n))
        row = {"n": n, "schedule": s.key()}

        def one(kernel):
            return kernel.enqueue(n, n, n, 1.0, 0.0, *ops, queue=rt.queue, flag=flag.scratch)

        def two():
            with flag.lock:
                up, clear, slot = flag.next_gate()
                flag_only.enqueue(n, n, n, 1.0, 0.0, *ops, queue=rt.user_queue, flag=up)
                fp32.enqueue(n, n, n, 1.0, 0.0, *ops, rt.user_queue, gate=(up, clear),
                             slot=slot)

        for name, kernel in (("inside", inside), ("flag_only", flag_only)):
            for _ in range(3):
                one(kernel)
            rt.queue.finish()
            row[name + "_kernel_s"] = med([rt.timed(lambda: one(kernel)) for _ in range(15)])
        launch_inside = lambda: inside.enqueue(n, n, n, 1.0, 0.0, *ops,  # noqa: E731
                                               queue=rt.user_queue, flag=flag.scratch)
        for label, call in (("inside_wall_s", launch_inside), ("two_launch_wall_s", two)):
            for _ in range(3):
                call()
            rt.user_queue.finish()
            row[label] = med(rounds(call, rt.user_queue.finish, 20))
        row["torch_wall_s"], row["torch_kernel_s"] = torch_mm(n, A, 20)
        got = c.get()
        ref = A.astype(np.float64) @ A.astype(np.float64)
        row["max_rel_error"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        rows.append(row)
    return rows


# TinyLlama-1.1B's decode products (B stored N x K), whose one-row 2048 x 2048 ran 1.86x
# torch on the H100 (records/nvidia-h100/2026-12-07-replay-traces): the small-rows lane's
# dot variants (K split or not) at its hidden size
TINY_DECODE = ((1, 2048, 2048, True), (1, 256, 2048, True), (1, 5632, 2048, True),
               (1, 2048, 5632, True), (16, 2048, 2048, True), (16, 256, 2048, True))


def gemv(rt, rng, dot_only: bool = False, shapes: tuple | None = None) -> dict:
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
    from clgemm.kernels.gemv import GemvSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand

    dot_variants = [GemvSchedule(dot_lanes=(l,) * 5, dot_items=l * g, cpw=(c,) * 5, stage=(st,) * 5,
                                 dot_fill=(f,) * 5)
                    for l, g in ((16, 16), (32, 8), (64, 4)) for c in (1, 2, 4)
                    for st in (0, 1) for f in (0, 4, 8)]
    axpy_variants = [GemvSchedule(axpy_cols=c, axpy_slices=s, axpy_fill=f)
                     for c, s, f in ((32, 8, 4), (64, 4, 4), (16, 16, 4), (32, 8, 8),
                                     (32, 8, 2), (64, 4, 8))]
    for m, n, k, tb in shapes or ((1, 11008, 4096, True), (16, 11008, 4096, True), (1, 4096, 11008, True),
                        (16, 4096, 11008, True), (1, 32000, 4096, True), (16, 32000, 4096, True),
                        (1, 4096, 4096, True), (16, 4096, 4096, True),
                        (4, 4096, 4096, True), (8, 4096, 4096, True),
                        (1, 4096, 4096, False), (16, 4096, 4096, False),
                        (1, 11008, 4096, False), (16, 11008, 4096, False),
                        (1, 1024, 128, True), (1, 128, 1024, False)):
        if dot_only and not tb:
            continue
        A = rng.standard_normal((m, k), np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        lane = clgemm.plan(m, n, k, trans_b=tb).lane
        call = lambda: clgemm.matmul(a, b, trans_b=tb)  # noqa: E731
        for _ in range(3):
            call()
        rt.user_queue.finish()
        ours = med(rounds(call, rt.user_queue.finish, 20))
        host = min(rounds(call, rt.user_queue.finish, 20, host_only=True))
        ta_, tb_ = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
        theirs = torch_wall(ta_, tb_.T if tb else tb_, 20)
        moved = 4.0 * (m * k + n * k + m * n)
        variants = {}
        c = clgemm.to_device(np.zeros((m, n), np.float32))
        ops = (Operand(a.base_data, 0, k, False), Operand(b.base_data, 0, k if tb else n, tb),
               Operand(c.base_data, 0, n, False))
        ref = A.astype(np.float64) @ (B.T if tb else B).astype(np.float64)
        if lane.name == "gemv":
            for schedule in (dot_variants if tb else axpy_variants):
                variant = GemvLane(rt, schedule)
                launch = lambda: variant.enqueue(m, n, k, 1.0, 0.0, *ops, rt.user_queue)  # noqa: E731
                for _ in range(3):
                    launch()
                rt.user_queue.finish()
                got = c.get()
                err = float(np.abs(got - ref).max() / np.abs(ref).max())
                variants[schedule.key()] = {"s": med(rounds(launch, rt.user_queue.finish, 20)),
                                            "max_rel_error": err}
        rows.append({"m": m, "n": n, "k": k, "trans_b": tb, "lane": lane.name,
                     "schedule": lane.schedule.key(), "clgemm_s": ours, "clgemm_host_s": host,
                     "torch_s": theirs, "speed_vs_torch": theirs / ours,
                     "bandwidth_Bps": moved / ours, "of_copy_bandwidth": moved / ours / copy_bw,
                     "variants": variants})
    return {"copy_bandwidth_Bps": copy_bw, "rows": rows}


def batched(rt, rng, quick: bool = False) -> list[dict]:
    """Batches of attention-like products (batch 8-64 of 64-512, both transposes) through
    matmul on device arrays, chained, beside torch.matmul on CUDA tensors (fp32), with the
    error of one batch against float64."""
    if not quick:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
    shapes = ((8, 64, 64, 64), (32, 128, 128, 64), (64, 128, 128, 64), (16, 256, 256, 64),
              (32, 512, 512, 64), (32, 512, 64, 512), (8, 512, 512, 512), (64, 256, 64, 256),
              (12, 512, 512, 64), (12, 512, 64, 512))
    if quick:
        shapes = ((4, 24, 40, 16),)
    rows = []
    for batch, m, n, k in shapes:
        for ta, tb in ((False, True), (False, False), (True, False)):
            A = rng.standard_normal((batch, k, m) if ta else (batch, m, k), np.float32)
            B = rng.standard_normal((batch, n, k) if tb else (batch, k, n), np.float32)
            a, b = clgemm.to_device(A), clgemm.to_device(B)
            call = lambda: clgemm.matmul(a, b, trans_a=ta, trans_b=tb)  # noqa: E731
            got = call().get()
            ref = np.matmul((np.swapaxes(A, 1, 2) if ta else A).astype(np.float64),
                            (np.swapaxes(B, 1, 2) if tb else B).astype(np.float64))
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            ours = med(rounds(call, rt.user_queue.finish, 30))
            host = min(rounds(call, rt.user_queue.finish, 30, host_only=True))
            row = {"batch": batch, "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb,
                   "clgemm_s": ours, "clgemm_host_s": host, "max_rel_error": err,
                   "plan": clgemm.plan(m, n, k, batch=batch, trans_a=ta, trans_b=tb).why}
            if not quick:
                ta_, tb_ = torch.from_numpy(A).cuda(), torch.from_numpy(B).cuda()
                theirs = torch_wall(ta_.transpose(1, 2) if ta else ta_,
                                    tb_.transpose(1, 2) if tb else tb_, 30)
                row.update(torch_s=theirs, speed_vs_torch=theirs / ours)
            rows.append(row)
    return rows


def _batch_operands(rng, nb: int, m: int, n: int, k: int, ta: bool, tb: bool):
    """A batch's random operands as the trace lays them out, on the host and the device, C
    poisoned with NaN, and the float64 result: (A, B, a, b, c, ref)."""
    A = rng.standard_normal((nb, k, m) if ta else (nb, m, k), np.float32)
    B = rng.standard_normal((nb, n, k) if tb else (nb, k, n), np.float32)
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    c = clgemm.to_device(np.full((nb, m, n), np.nan, np.float32))
    ref = np.matmul((np.swapaxes(A, 1, 2) if ta else A).astype(np.float64),
                    (np.swapaxes(B, 1, 2) if tb else B).astype(np.float64))
    return A, B, a, b, c, ref


# 3xTF32 tiles 64 wide (the H100 table's for ResNet-50's 64-wide outputs, 1.187-1.264x there:
# records/nvidia-h100/2026-12-07-tc-classes), tried on batches of 64-wide products (attention's
# contexts, 512 x 64 x 512: the float32 family's batched kernel 0.73-0.85x torch.bmm, 3xTF32's
# 128 x 128 tiles 0.84x the route's lane)
NARROW_3X = "tc-3xtf32-b128x64x16-w2x2-s3-f3-a1-r4"


def batched_lanes(rt, rng) -> list[dict]:
    """Every distinct batched product of the model traces (attention: decode's 1-16 query
    rows, prefill's 512) on each lane that can run it in one launch, chained wall per call
    on the user queue, beside torch.matmul: the route's choice through matmul, the small-rows
    lane (m or n at most 16), the float32 family's batched kernel and 3xTF32's (where the
    device has tensor cores); each result's error against float64. Decode attention ran
    2.2-4.3x torch's time on the small-rows lane (records/nvidia-h100/2026-12-07-plan-traces):
    the evidence for that rule."""
    from clgemm.kernels.gemv import MAX_ROWS
    from clgemm.kernels.tensorcore import TcSchedule
    from clgemm.lanes.gemv import GemvLane
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.lanes.tc import schedule_for
    from clgemm.lanes.tc_batched import TcBatchedLane

    rows = []
    for path, call, p, pr in _trace_batches(rng):
        m, n, k, ta, tb = call.shape
        nb = call.batch
        A, B, c, ref = pr["A"], pr["B"], pr["c"], pr["ref"]
        a, b, ops, strides = pr["a"], pr["b"], pr["ops"], pr["strides"]
        row = {"trace": path.stem, "name": call.name, "batch": nb, "m": m, "n": n, "k": k,
               "trans_a": ta, "trans_b": tb, "route": p.lane.name, "why": p.why}

        def err() -> float:
            got = c.get().astype(np.float64)
            return float(np.abs(got - ref).max() / np.abs(ref).max())

        call_ = lambda: clgemm.matmul(a, b, C=c, trans_a=ta, trans_b=tb)  # noqa: E731
        call_()
        row["matmul_s"] = med(rounds(call_, rt.user_queue.finish, 20))
        row["matmul_error"] = err()
        lanes = {"fp32-batched": p.fallback}
        if min(m, n) <= MAX_ROWS:
            lanes["gemv"] = rt.cached("gemv lane", lambda: GemvLane(rt))
        if tensorcore_available(rt):  # 3xTF32's batched kernel (CLGEMM_TC_BATCH)
            lanes["3xtf32-batched"] = TcBatchedLane(rt, schedule_for(rt, "3xtf32", m, n, k))
            if n <= 64:  # (attention's contexts, 64 wide): the H100 table's 64-wide tiles
                lanes["3xtf32-batched-n64"] = TcBatchedLane(rt, TcSchedule.from_key(NARROW_3X))
            if m <= 32:  # decode's 1-16 query rows: tiles of 16 rows (the tc_rows part's)
                for key in ("tc-3xtf32-b16x64x32-w1x4-s4-f3-a1-r1",
                            "tc-3xtf32-b16x64x32-w1x2-s3-f3-a1-r1"):
                    lanes["3xtf32-batched-" + key] = TcBatchedLane(rt, TcSchedule.from_key(key))
        for name, lane in lanes.items():
            launch = lambda lane=lane: lane.enqueue_batched(  # noqa: E731
                nb, m, n, k, 1.0, 0.0, *ops, strides, rt.user_queue)
            try:
                launch()
            except Exception as exc:  # noqa: BLE001 - a schedule this layout refuses
                row[name + "_failed"] = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            row[name + "_s"] = med(rounds(launch, rt.user_queue.finish, 20))
            row[name + "_error"] = err()
        torch_peer(row, A, B, ta, tb, 20)
        rows.append(row)
    return rows


def _axpy_variants(rt, quick: bool) -> list:
    """gemv_axpy's launch shapes a sweep tries: work-groups of 4 x `cols` columns and `slices`
    slices of K (at most the device's work-group size), K split until about `fill` work-groups
    a compute unit run (0: never split)."""
    from clgemm.kernels.gemv import GemvSchedule

    cols = (8, 32) if quick else (16, 32)
    slices = (2, 8) if quick else (4, 8, 16, 32)
    fills = (0, 4) if quick else (0, 1, 2, 4, 8)
    most = rt.device.max_work_group_size
    return [GemvSchedule(axpy_cols=c, axpy_slices=s, axpy_fill=f)
            for c in cols for s in slices for f in fills if c * s <= most]


def gemv_axpy(rt, rng, quick: bool = False) -> list[dict]:
    """The small-rows lane's axpy kernel (B stored K x N, the few rows against it: a decode
    step's attention context, P V) over launch shapes: every distinct such product of the
    model traces, batched as the trace has it, and a plain one of each row count, on the
    route's lane through matmul, the small-rows lane under each shape of _axpy_variants (one
    launch of the batch; wall per call, chained), the float32 family's batched kernel, and
    torch.matmul; each result checked against float64 (C poisoned with NaN before the
    lanes). The context products ran 2.3-3.0x torch's time on the H200
    (records/nvidia-h200/2026-12-07-plan-traces-5: 16 x 128 x 1024 batch 32 in 39.5 against
    13.3 us), and the shapes the lane runs there were never swept on a GPU."""
    from clgemm.bench.model import trace_calls
    from clgemm.kernels.gemv import MAX_ROWS
    from clgemm.lanes.gemv import GemvLane
    from clgemm.operands import Operand

    shapes = []
    for path in sorted(Path("traces/models").glob("*.jsonl")):
        for call in trace_calls(path):
            m, n, k, ta, tb = call.shape
            shape = (m, n, k, ta, tb, call.batch)
            if m <= MAX_ROWS and not tb and not ta and shape not in shapes:
                shapes.append(shape)
    shapes += [(1, 128, 1024, False, False, 1), (16, 128, 1024, False, False, 1),
               (1, 4096, 4096, False, False, 1), (16, 4096, 4096, False, False, 1)]
    if quick:
        shapes = [(m, min(n, 64), min(k, 128), ta, tb, min(nb, 4))
                  for m, n, k, ta, tb, nb in shapes[:2]]
    variants = _axpy_variants(rt, quick)
    rows = []
    for m, n, k, ta, tb, nb in shapes:
        A = rng.standard_normal((nb, m, k), np.float32)
        B = rng.standard_normal((nb, k, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        c = clgemm.to_device(np.full((nb, m, n), np.nan, np.float32))
        ref = np.matmul(A.astype(np.float64), B.astype(np.float64))
        batch = nb if nb > 1 else None
        p = clgemm.plan(m, n, k, batch=batch)
        row = {"m": m, "n": n, "k": k, "batch": nb, "route": p.lane.name,
               "route_schedule": p.lane.schedule.key(), "variants": {}}

        aa, bb = (a, b) if nb > 1 else (a.reshape(m, k), b.reshape(k, n))
        cc = c if nb > 1 else c.reshape(m, n)
        call_ = lambda: clgemm.matmul(aa, bb, C=cc)  # noqa: E731
        row["matmul_error"] = poisoned_error(call_, c, ref)
        row["matmul_s"] = med(rounds(call_, rt.user_queue.finish, 20))
        ops = (Operand(a.base_data, 0, k, False), Operand(b.base_data, 0, n, False),
               Operand(c.base_data, 0, n, False))
        strides = (m * k, k * n, m * n)
        lanes = [("fp32-batched", p.fallback)] + [(s.key(), GemvLane(rt, s)) for s in variants]
        for name, lane in lanes:
            launch = lambda lane=lane: lane.enqueue_batched(  # noqa: E731
                nb, m, n, k, 1.0, 0.0, *ops, strides, rt.user_queue)
            try:
                e = poisoned_error(launch, c, ref)
                row["variants"][name] = {"s": med(rounds(launch, rt.user_queue.finish, 20)),
                                         "max_rel_error": e}
            except Exception as exc:  # noqa: BLE001 - a shape the device refuses
                row["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        timed = {name: v["s"] for name, v in row["variants"].items()
                 if "s" in v and v["max_rel_error"] < 1e-5}
        if timed:
            row["best"] = min(timed, key=timed.get)
            row["best_s"] = timed[row["best"]]
        torch_peer(row, A, B, False, False, 20)
        rows.append(row)
    return rows


def _trace_batches(rng, quick: bool = False, keep=lambda plan: True, singles: bool = False):
    """Each distinct batched product (with `singles`, each product of one matrix) of the
    model traces whose plan `keep` accepts, with
    operands (small with `quick`): (trace path, call, plan, product), product holding name,
    batch, m, n, k, trans_a, trans_b, the host operands A and B, the device arrays a, b and c
    (C poisoned), the launch's operands `ops` and `strides`, and the float64 result `ref`."""
    from clgemm.bench.model import trace_calls
    from clgemm.operands import Operand

    seen = set()
    for path in sorted(Path("traces/models").glob("*.jsonl")):
        for call in trace_calls(path):
            m, n, k, ta, tb = call.shape
            nb = call.batch
            if (nb == 1) != singles or (call.shape, nb) in seen:
                continue
            seen.add((call.shape, nb))
            # a product of one matrix is planned as matmul plans it (no batch: a batch of
            # one takes the batched route)
            p = clgemm.plan(m, n, k, batch=None if singles else nb, trans_a=ta, trans_b=tb)
            if not keep(p):
                continue
            if quick:
                m, n, k, nb = min(m, 48), min(n, 40), min(k, 36), min(nb, 3)
            A, B, a, b, c, ref = _batch_operands(rng, nb, m, n, k, ta, tb)
            ops = (Operand(a.base_data, 0, m if ta else k, ta),
                   Operand(b.base_data, 0, k if tb else n, tb),
                   Operand(c.base_data, 0, n, False))
            yield path, call, p, {"name": call.name, "batch": nb, "m": m, "n": n, "k": k,
                                  "trans_a": ta, "trans_b": tb, "A": A, "B": B, "a": a,
                                  "b": b, "c": c, "ops": ops, "strides": (m * k, k * n, m * n),
                                  "ref": ref}


def _fp32_batches(rng, quick: bool):
    """_trace_batches of the float32 family's batched kernel (the route's choice)."""
    return _trace_batches(rng, quick, keep=lambda p: p.lane is p.fallback)


def _fp32_singles(rng, quick: bool):
    """The traces' products of one matrix that the route gives the float32 family's plain
    launch, from 1e9 flops (BERT's 768 x 768 x 1024 class ran 1.4-1.7x torch there on the
    H100: records/nvidia-h100/2026-12-07-replay-traces)."""
    def keep(p) -> bool:
        k = p.key
        return p.lane is p.fallback and 2.0 * k.m * k.n * k.k >= 1e9

    return _trace_batches(rng, quick, keep=keep, singles=True)


def _launch_on(rt, lane, pr):
    """A thunk launching `pr` (a _trace_batches product) on `lane`: its batched kernel, or
    the plain launch for a product of one matrix (as the route runs it)."""
    if pr["batch"] == 1:
        return lambda: lane.enqueue(pr["m"], pr["n"], pr["k"], 1.0, 0.0, *pr["ops"],
                                    rt.user_queue)
    return lambda: lane.enqueue_batched(pr["batch"], pr["m"], pr["n"], pr["k"], 1.0, 0.0,
                                        *pr["ops"], pr["strides"], rt.user_queue)


def fp32_batch_classes(rt, rng, quick: bool = False) -> list[dict]:
    """Every distinct batched product of the model traces that the route gives the float32
    family's batched kernel, launched (chained wall per batch on the user queue) under each
    schedule the device table ships (Table.candidates: its classes' entries and default);
    each result against float64, C poisoned with NaN first. The table's entry for such a
    class was distilled from plain products of the class, not batches: BERT's attention
    batches ran 1.2-1.5x torch.bmm's time on it (records/nvidia-h100/2026-12-07-plan-traces-6)."""
    from clgemm.lanes.fp32 import lane_for
    from clgemm.select import table as tables

    candidates = tables.load_table(rt.device).candidates()
    rows = []
    for path, call, p, pr in _fp32_batches(rng, quick):
        m, n, k, nb = pr["m"], pr["n"], pr["k"], pr["batch"]
        ops, strides, c, ref = pr["ops"], pr["strides"], pr["c"], pr["ref"]
        row = {"trace": path.stem, "name": call.name, "batch": nb, "m": m, "n": n, "k": k,
               "trans_a": pr["trans_a"], "trans_b": pr["trans_b"],
               "table": p.fallback.schedule.key(), "schedules": {}}
        for sched in (candidates[:2] if quick else candidates):
            lane = lane_for(rt, sched)
            launch = lambda lane=lane: lane.enqueue_batched(  # noqa: E731
                nb, m, n, k, 1.0, 0.0, *ops, strides, rt.user_queue)
            try:
                err = poisoned_error(launch, c, ref)
                row["schedules"][sched.key()] = {
                    "s": med(rounds(launch, rt.user_queue.finish, 20)), "max_rel_error": err}
            except Exception as exc:  # noqa: BLE001 - a schedule this layout refuses
                row["schedules"][sched.key()] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        timed = {key: v["s"] for key, v in row["schedules"].items()
                 if "s" in v and v["max_rel_error"] < 1e-5}
        if timed:
            row["best"] = min(timed, key=timed.get)
            row["speed_over_table"] = timed.get(row["table"], float("nan")) / timed[row["best"]]
        rows.append(row)
    return rows


def stacked_rows(rt, rng, quick: bool = False) -> list[dict]:
    """Products of 17 to 32 rows against a large operand (ResNet-50's classifier, 32 x 1000
    x 2048 against its weight stored N x K, ran 1.75-2.0x torch's time on the float32
    family split over K: records/nvidia-h100/2026-12-07-plan-traces-8) on the small-rows
    lane as blocks of 16 rows (GemvSchedule.stack_rows: one batched launch, the large
    operand shared), beside the route's lane and torch.matmul; chained wall per launch on
    the user queue, each result against float64 (C poisoned with NaN first)."""
    import dataclasses

    from clgemm.lanes.gemv import GemvLane, device_schedule
    from clgemm.operands import Operand

    stacked = GemvLane(rt, dataclasses.replace(device_schedule(rt), stack_rows=32))
    shapes = [(32, 1000, 2048, True), (32, 4096, 4096, True), (24, 4096, 4096, True),
              (32, 11008, 4096, True), (32, 4096, 4096, False)]
    if quick:
        shapes = [(20, 70, 64, True)]
    rows = []
    for m, n, k, tb in shapes:
        A = rng.standard_normal((m, k), np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), np.float32)
        a, b = clgemm.to_device(A), clgemm.to_device(B)
        c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
        ref = A.astype(np.float64) @ (B.T if tb else B).astype(np.float64)
        p = clgemm.plan(m, n, k, trans_b=tb)
        ops = (Operand(a.base_data, 0, k, False), Operand(b.base_data, 0, k if tb else n, tb),
               Operand(c.base_data, 0, n, False))
        row = {"m": m, "n": n, "k": k, "trans_b": tb, "route": p.lane.name,
               "route_schedule": p.lane.schedule.key()}
        for name, lane in (("route", p.lane), ("stacked", stacked)):
            launch = lambda lane=lane: lane.enqueue(m, n, k, 1.0, 0.0, *ops,  # noqa: E731
                                                    rt.user_queue)
            row[name + "_error"] = poisoned_error(launch, c, ref)
            row[name + "_s"] = med(rounds(launch, rt.user_queue.finish, 20))
        call = lambda: clgemm.matmul(a, b, C=c, trans_b=tb)  # noqa: E731
        row["matmul_s"] = med(rounds(call, rt.user_queue.finish, 20))
        torch_peer(row, A, B, False, tb, 20)
        rows.append(row)
    return rows


def fp32_batch_search(rt, rng, quick: bool = False, budget: int = 40,
                      singles: bool = False) -> list[dict]:
    """The float32 family's schedule space searched for each shape class of the traces'
    batches that its batched kernel serves (fp32_batch_classes timed only the table's own
    schedules): the engine's prior-free `forest` strategy, told the table's schedules first,
    asks `budget` more; a candidate's cost is the geometric mean over the class's batches of
    the chained wall per launch (rounds of 10), a wrong result (against float64, C poisoned
    first) a failure. BERT's and TinyLlama's attention contexts (512 x 64 x 512, NN and TN)
    ran 0.73-0.85x torch.bmm on the table's entry (records/nvidia-h100/
    2026-12-07-plan-traces-8), no other schedule of the table beat it by 1.1x. With
    `singles`, the traces' products of one matrix on the float32 family (_fp32_singles)."""
    from clgemm.engine import Space, Strategy
    from clgemm.lanes.fp32 import lane_for, search_space
    from clgemm.schedule import Schedule
    from clgemm.select import table as tables

    table = tables.load_table(rt.device)
    classes: dict[str, list] = {}
    for _, call, _, pr in (_fp32_singles if singles else _fp32_batches)(rng, quick):
        classes.setdefault(tables.shape_class(*call.shape[:3]), []).append(pr)
    space = Space.from_search_space(search_space(rt))
    out = []
    for cls, products in (list(classes.items())[:1] if quick else classes.items()):
        def cost(schedule) -> float | None:
            lane = lane_for(rt, schedule)
            times = per_product.setdefault(schedule.key(), [])
            for pr in products:
                launch = _launch_on(rt, lane, pr)
                try:
                    err = poisoned_error(launch, pr["c"], pr["ref"])
                except Exception:  # noqa: BLE001 - a schedule this layout or device refuses
                    return None
                if not err < 1e-5:
                    return None
                times.append(med(rounds(launch, rt.user_queue.finish, 10, count=3)))
            return float(np.exp(np.mean(np.log(times))))

        entry = table.lookup(products[0]["m"], products[0]["n"], products[0]["k"])
        strategy = Strategy("forest", space, seed=0)
        per_product: dict[str, list[float]] = {}  # a candidate's seconds, product by product
        tried: dict[str, float | None] = {}
        for schedule in table.candidates()[:2 if quick else None]:
            if schedule.key() in tried or not search_space(rt).is_valid(schedule):
                continue
            tried[schedule.key()] = cost(schedule)
            strategy.tell(schedule, tried[schedule.key()])
        t0 = time.perf_counter()
        for _ in range(3 if quick else budget):
            asked = strategy.ask(1)
            if not asked:
                break
            schedule = asked[0]
            tried[schedule.key()] = cost(schedule)
            strategy.tell(schedule, tried[schedule.key()])
        timed = {key: t for key, t in tried.items() if t is not None}
        best = min(timed, key=timed.get) if timed else None
        confirm = (_confirm(rt, products, (entry, Schedule.from_key(best)), 1 if quick else 5)
                   if best and best != entry.key() and entry.key() in timed else {})
        out.append({
            "class": cls, "products": [{k: v for k, v in pr.items()
                                        if k in ("name", "batch", "m", "n", "k", "trans_a",
                                                 "trans_b")} for pr in products],
            "table_entry": entry.key(), "table_entry_s": tried.get(entry.key()),
            "best": best, "best_s": timed.get(best) if best else None,
            "speed_over_entry": (tried[entry.key()] / timed[best]
                                 if best and tried.get(entry.key()) else None),
            "evaluations": len(tried), "failures": sum(t is None for t in tried.values()),
            "search_s": time.perf_counter() - t0, "tried": tried,
            "per_product": {key: per_product[key] for key in timed},
            "confirm": confirm,
            "confirmed_speed_over_entry": (
                float(np.exp(np.mean(np.log(confirm[entry.key()]))
                             - np.mean(np.log(confirm[best])))) if confirm else None)})
    return out


def _confirm(rt, products, schedules, turns: int) -> dict[str, list[float]]:
    """Each schedule's seconds per product, timed again in `turns` alternations (the median
    of its turns): the search ranks a candidate by one sample, which on launch-bound
    products of 14-22 us is noise (records/nvidia-h200/2026-12-07-stacked-rows)."""
    from clgemm.lanes.fp32 import lane_for

    out: dict[str, list[float]] = {s.key(): [] for s in schedules}
    for pr in products:
        samples: dict[str, list[float]] = {s.key(): [] for s in schedules}
        for _ in range(turns):
            for s in schedules:
                launch = _launch_on(rt, lane_for(rt, s), pr)
                samples[s.key()].append(med(rounds(launch, rt.user_queue.finish, 10, count=3)))
        for key, xs in samples.items():
            out[key].append(med(xs))
    return out


PARTS = ("floor", "host_costs", "kpi_public", "check", "check_profile", "check_chain_profile",
         "approx",
         "approx_probe_nosplit",
         "approx_profile", "host_path",
         "transfers", "gemv_dot", "gemv_tiny",
         "nonfinite_fallback", "exact_lanes", "tc_epilogue", "gemv", "batched", "skinny",
         "trace_lanes", "batched_lanes", "tc_classes", "tc_rows", "trace_host", "gemv_axpy",
         "fp32_batch_classes", "stacked_rows", "fp32_batch_search", "fp32_single_search",
         "host_profile")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU device)")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="which parts to run, in this order")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {unknown}; the parts: {', '.join(PARTS)}")
    rt = get_runtime(args.device)
    rng = np.random.default_rng(7)
    big = (256, 512) if args.quick else (256, 512, 1024, 2048, 4096)
    kpi = (96, 160) if args.quick else (1400, 2048, 3072, 4096)
    data = {"command": sys.argv, "env": fingerprint(rt.device, sys.argv)}

    # the parts, each a thunk; those of GPU only (torch peers, big sweeps) absent in --quick
    table = {
        "floor": lambda: host_floor(rt),
        "host_costs": lambda: host_costs(rt, big, rng),
        "kpi_public": lambda: kpi_public(rt, kpi, rng),
        "check": lambda: check_costs(rt, kpi[1:], rng),
        "check_profile": lambda: call_profile(rt, kpi[1:], rng, check=True),
        "check_chain_profile": lambda: check_chain_profile(rt, kpi[1:3], rng),
        "approx_profile": lambda: call_profile(rt, kpi, rng, rel_tol=1e-2),
        "approx": lambda: approx_costs(rt, kpi, rng),
        "approx_probe_nosplit": lambda: approx_probe_nosplit(rt, kpi, rng),
        "host_path": lambda: host_path(rt, kpi, rng),
        "exact_lanes": lambda: exact_lanes(rt, (64,) if args.quick
                                           else (1024, 1400, 1600, 1800, 2048), rng),
        "batched": lambda: batched(rt, rng, args.quick),
        "skinny": lambda: skinny(rt, rng, args.quick),
        "trace_lanes": lambda: trace_lanes(rt, rng),
        "tc_rows": lambda: tc_rows(rt, rng, args.quick),
        "tc_classes": lambda: tc_classes(rt, rng, *((1e5, 1e7) if args.quick else ())),
        "gemv_axpy": lambda: gemv_axpy(rt, rng, args.quick),
        "fp32_batch_classes": lambda: fp32_batch_classes(rt, rng, args.quick),
        "stacked_rows": lambda: stacked_rows(rt, rng, args.quick),
        "fp32_batch_search": lambda: fp32_batch_search(rt, rng, args.quick),
        "fp32_single_search": lambda: fp32_batch_search(rt, rng, args.quick, singles=True),
        "host_profile": lambda: (host_profile(rt, rng, ("tinyllama-1.1b",), passes=1)
                                 if args.quick else host_profile(rt, rng)),
        "trace_host": lambda: (trace_host(rt, rng, ("tinyllama-1.1b",), passes=2) if args.quick
                               else trace_host(rt, rng)),
    }
    if not args.quick:
        table.update({
            "transfers": lambda: transfers(rt, kpi, rng),
            "nonfinite_fallback": lambda: nonfinite_fallback(rt, rng),
            "tc_epilogue": lambda: tc_epilogue(rt, kpi, rng),
            "gemv": lambda: gemv(rt, rng),
            "gemv_dot": lambda: gemv(rt, rng, dot_only=True),
            "gemv_tiny": lambda: gemv(rt, rng, shapes=TINY_DECODE),
            "batched_lanes": lambda: batched_lanes(rt, rng),
        })
    # in the order asked: a call cut short by the device's limit keeps the first parts
    for name in parts:
        if name not in table:
            continue
        t0 = time.perf_counter()
        try:
            data[name] = table[name]()
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
            data[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[{name}] {time.perf_counter() - t0:.1f} s: {json.dumps(data[name])[:2000]}",
              flush=True)
        with open(args.out, "w") as fh:
            json.dump(data, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
