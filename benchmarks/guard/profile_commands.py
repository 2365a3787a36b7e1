"""Per-command device time of one checked call (check=True) and of the approximate paths at one
size: every kernel launch and copy the call enqueues is recorded (pyopencl's enqueue functions
wrapped for the duration of the call), with its OpenCL profiling times, so the guard's cost
can be split by kernel and the gaps between commands (launch latency, host work) seen.

    python benchmarks/guard/profile_commands.py OUT [N]     (CLGEMM_DEVICE picks the device,
    PROFILE_CASES=checked,exact a subset of the cases)

Writes OUT/profile-commands.json. The wrapped calls are the library's own; nothing is changed
in what they enqueue.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyopencl as cl


@contextlib.contextmanager
def recording():
    """Record (name, event) of every kernel launch and copy enqueued inside the block."""
    got: list[tuple[str, cl.Event]] = []
    orig_nd, orig_copy, orig_fill = (cl.enqueue_nd_range_kernel, cl.enqueue_copy,
                                     cl.enqueue_fill_buffer)

    def nd(queue, kernel, *a, **kw):
        ev = orig_nd(queue, kernel, *a, **kw)
        got.append((kernel.function_name, ev))
        return ev

    def copy(queue, dest, src, **kw):
        ev = orig_copy(queue, dest, src, **kw)
        kind = "read" if isinstance(dest, np.ndarray) else (
            "write" if isinstance(src, np.ndarray) else "copy")
        got.append((f"copy:{kind}", ev))
        return ev

    def fill(queue, *a, **kw):
        ev = orig_fill(queue, *a, **kw)
        got.append(("fill", ev))
        return ev

    cl.enqueue_nd_range_kernel, cl.enqueue_copy, cl.enqueue_fill_buffer = nd, copy, fill
    try:
        yield got
    finally:
        cl.enqueue_nd_range_kernel, cl.enqueue_copy, cl.enqueue_fill_buffer = (
            orig_nd, orig_copy, orig_fill)


def summarise(got, wall_s: float, marks=None) -> dict:
    """`marks`: (before, after) marker events enqueued around the call: their QUEUED times
    put the host's progress (when each command was enqueued) on the device's clock."""
    rows = []
    for name, ev in got:
        try:
            ev.wait()
            q, s, e = ev.profile.queued, ev.profile.start, ev.profile.end
        except cl.Error:  # an event without profiling info (user event, host copy)
            continue
        rows.append((name, q, s, e))
    if not rows:
        return {"wall_s": wall_s, "commands": []}
    t0 = min(s for _, _, s, _ in rows)
    t1 = max(e for _, _, _, e in rows)
    host = {}
    if marks is not None:
        h0, h1 = (m.profile.queued for m in marks)
        host = {"call_to_first_enqueue_s": (rows[0][1] - h0) * 1e-9,
                "call_to_first_start_s": (t0 - h0) * 1e-9,
                "last_end_to_return_s": (h1 - t1) * 1e-9,
                "enqueued_at_s": [(n, (q - h0) * 1e-9) for n, q, _, _ in rows]}
    rows = [(n, s, e) for n, _, s, e in rows]
    by: dict = {}
    for name, s, e in rows:
        d = by.setdefault(name, {"count": 0, "device_s": 0.0})
        d["count"] += 1
        d["device_s"] += (e - s) * 1e-9
    busy = sum((e - s) for _, s, e in rows) * 1e-9
    return {"wall_s": wall_s, "span_s": (t1 - t0) * 1e-9, "busy_s": busy, **host,
            "by_name": dict(sorted(by.items(), key=lambda kv: -kv[1]["device_s"])),
            "commands": [(n, (s - t0) * 1e-9, (e - s) * 1e-9) for n, s, e in rows]}


def profile(fn, rt, reps: int = 5) -> dict:
    """The best of `reps` recordings of `fn()`; the markers sit on the profiling queue, where
    every case's commands run (each passes return_info=True: the hot path's user queue keeps
    no profiling times)."""
    queue = rt.queue
    for _ in range(2):
        fn()
    rt.finish()
    best = None
    for _ in range(reps):
        rt.finish()
        with recording() as got:
            t = time.perf_counter()
            before = cl.enqueue_marker(queue)
            fn()
            rt.finish()
            after = cl.enqueue_marker(queue)
            wall = time.perf_counter() - t
        after.wait()
        s = summarise(got, wall, (before, after))
        if best is None or s["wall_s"] < best["wall_s"]:
            best = s
    return best


def main() -> None:
    import clgemm
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    rt = get_runtime()
    rng = np.random.default_rng(5)
    A = rng.standard_normal((n, n)).astype(np.float32)
    B = rng.standard_normal((n, n)).astype(np.float32)
    A_lr, B_lr = campaign.lowrank_operands(rng, n, max(2, n // 32))
    dA, dB = clgemm.to_device(A, rt.device), clgemm.to_device(B, rt.device)
    dAl, dBl = clgemm.to_device(A_lr, rt.device), clgemm.to_device(B_lr, rt.device)
    dC = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    from clgemm.lanes.fp32 import choose_schedule

    same = choose_schedule(rt, n, n, n)
    res: dict = {"n": n, "device": rt.device.name}

    def call(a, b, **kw):
        return clgemm.matmul(a, b, C=dC, device=rt.device, return_info=True, **kw)

    cases = {
        "exact": lambda: call(dA, dB),
        "plain_fp32": lambda: call(dA, dB, schedule=same),
        "checked": lambda: call(dA, dB, check=True),
        "plain_beta": lambda: call(dA, dB, beta=0.5),
        "checked_beta": lambda: call(dA, dB, beta=0.5, check=True),
    }
    for budget in (1e-2, 1e-4):
        cases[f"approx_lowrank_{budget:g}"] = lambda b=budget: call(dAl, dBl, rel_tol=b)
        cases[f"approx_fullrank_{budget:g}"] = lambda b=budget: call(dA, dB, rel_tol=b)
    only = os.environ.get("PROFILE_CASES")  # comma-separated names: a subset
    if only:
        cases = {k: v for k, v in cases.items() if k in only.split(",")}
    for name, fn in cases.items():
        try:
            res[name] = profile(fn, rt)
        except Exception as e:  # keep the other cases
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        r = res[name]
        if "by_name" in r:
            top = ", ".join(f"{k} {v['device_s'] * 1e6:.0f}us x{v['count']}"
                            for k, v in list(r["by_name"].items())[:8])
            print(f"[profile] {name}: wall {r['wall_s'] * 1e6:.0f} us, span "
                  f"{r['span_s'] * 1e6:.0f}, busy {r['busy_s'] * 1e6:.0f}; {top}", flush=True)
            if "call_to_first_enqueue_s" in r:
                print(f"[profile]   host: call -> first enqueue "
                      f"{r['call_to_first_enqueue_s'] * 1e6:.0f} us, -> first start "
                      f"{r['call_to_first_start_s'] * 1e6:.0f} us, last end -> return "
                      f"{r['last_end_to_return_s'] * 1e6:.0f} us; enqueued at "
                      + ", ".join(f"{n} {q * 1e6:.0f}" for n, q in r["enqueued_at_s"][:12]),
                      flush=True)
        else:
            print(f"[profile] {name}: {r}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile-commands.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
