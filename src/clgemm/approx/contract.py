"""matmul(rel_tol=...): the cheapest method that meets a relative Frobenius error budget.

    ||C_returned - C_exact||_F <= rel_tol ||C_exact||_F, C_exact = alpha op(A) op(B) + beta C

Planner, in order of cost:
  1. TF32 on the tensor cores (budgets >= TC_MIN_BUDGET, where the device has the lane:
     `tensor_cores_serve`), judged on the device (approx/judged.py): kept when its probe
     estimate meets the budget, else replaced there by the exact float32 product (not by
     the methods below); on device arrays with no Info asked the call does not wait;
  2. randomized low rank (guard/lowrank.py) when the shape can pay for it: one sketch
     op(A) op(B) [Omega | probes] of l + 16 columns (l ~ min(m, n) / 24, capped so that the
     sketch costs about WASTE_FRAC of the exact product's flops); a product whose probes stand
     out of the sketch is turned away after that sketch and one small read (full rank);
     otherwise the projection onto the sketch, with its probe estimate, one more small read;
  3. exact float32.
Every approximate result is checked by an a-posteriori estimate on fresh Gaussian probes
before it is returned; above the budget the call falls back to exact. The planner remembers,
per shape, lane and decade of budget, the measured wall of low rank and of exact
(MethodCosts): where low rank lost it goes exact, trying low rank again every EXPLORE_EVERY
calls.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import pyopencl.array as cla

from ..info import Info
from ..lanes.fp32 import Fp32Lane
from ..lanes.probe import tensorcore_available
from ..lanes.tc import tf32_schedule
from ..operands import Operand, run_product, transposed_c
from ..runtime import Runtime
from . import judged, lowrank

MIN_DIM = 96  # below this in m, n or k a low-rank product cannot pay for its sketches
WASTE_FRAC = 0.12  # flops spent on sketches before giving up, relative to the exact product
MAX_RANK_FRAC = 0.25  # never beyond this fraction of min(m, n, k)


TC_MIN_BUDGET = 5e-3  # TF32 (10-bit mantissa products) serves budgets from here on


def tensor_cores_serve(rt: Runtime, budget: float) -> bool:
    """Whether the TF32 lane may be tried for this budget: >= TC_MIN_BUDGET and a device with
    the tensor-core lane (the exact contract and 3xTF32 stay with the api)."""
    if budget is None or not budget >= TC_MIN_BUDGET:
        return False
    if os.environ.get("CLGEMM_APPROX_TC", "1") == "0":  # measure the other methods alone
        return False
    return tensorcore_available(rt)


LOWRANK_TF32_MIN_BUDGET = 1e-2  # low-rank products in TF32 from here on (3xTF32 below)


def lowrank_lane(rt: Runtime, budget: float) -> str | None:
    """Where the low-rank path's big products run: TF32 for loose budgets (its ~3e-4 error
    is under 3% of them, so the probe estimate stays meaningful), 3xTF32 (float32-level)
    for tighter ones, the float32 family without the tensor-core lane."""
    if os.environ.get("CLGEMM_APPROX_TC", "1") == "0":
        return None
    if not tensorcore_available(rt):
        return None
    return "tf32" if budget >= LOWRANK_TF32_MIN_BUDGET else "3xtf32"


EXPLORE_EVERY = 32  # calls between re-tries of low rank where it was measured slower


@dataclass
class MethodCosts:
    """Measured wall of a low-rank attempt (a success, or a give-up with its exact fallback)
    and of the exact product, per device, shape and lane. Where low rank lost, the planner
    goes exact and tries low rank again every EXPLORE_EVERY calls: the data (its rank) and
    the host's speed decide, neither known before the first attempt."""

    lowrank_s: float | None = None
    exact_s: float | None = None
    skipped: int = 0


COSTS_MEMO = "approx method costs"


class _Costs:
    """The measured costs of one runtime, per shape, lane and decade of budget."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict = {}


def method_costs(rt: Runtime, m: int, n: int, k: int, lane: str | None,
                 budget: float) -> MethodCosts:
    # per decade of budget: a looser budget may keep a sketch a tighter one turns away
    key = (m, n, k, lane, int(np.floor(np.log10(budget))))
    costs = rt.cached(COSTS_MEMO, _Costs)
    with costs.lock:
        c = costs.items.get(key)
        if c is None:
            if len(costs.items) >= 256:
                costs.items.clear()
            c = costs.items[key] = MethodCosts()
        return c


def lowrank_turn(c: MethodCosts) -> str | None:
    """None: this call tries low rank; otherwise why it goes exact."""
    if c.lowrank_s is None:
        return None
    if c.exact_s is None:
        return (f"timing the exact product once at this shape, to compare with low rank "
                f"({c.lowrank_s * 1e3:.3g} ms)")
    if c.lowrank_s <= c.exact_s:
        return None
    c.skipped += 1
    if c.skipped >= EXPLORE_EVERY:
        c.skipped = 0
        return None
    return (f"low rank measured slower than exact at this shape ({c.lowrank_s * 1e3:.3g} vs "
            f"{c.exact_s * 1e3:.3g} ms); tried again every {EXPLORE_EVERY} calls")


def block_size(m: int, n: int, k: int) -> int:
    return 32 if min(m, n, k) >= 1024 else 16


def rank_cap(m: int, n: int, k: int, block: int) -> int:
    """Largest rank of Q the sketches may reach: sketching p columns costs about
    2 p (m k + k n) flops, i.e. p (1/m + 1/n) of the exact 2 m n k."""
    cap = int(WASTE_FRAC / (1.0 / m + 1.0 / n))
    return max(0, min(cap, int(MAX_RANK_FRAC * min(m, n, k))))


def plan(rt: Runtime, m: int, n: int, k: int, budget: float) -> tuple[list[str], dict]:
    """Methods to try in order, and why the others were skipped."""
    skipped = {}
    methods = []
    if tensor_cores_serve(rt, budget):
        methods.append("tensor_core")
    elif budget is None or not budget >= TC_MIN_BUDGET:
        skipped["tensor_core"] = f"budget {budget:g} < {TC_MIN_BUDGET:g} (TF32)"
    else:
        skipped["tensor_core"] = "no tensor-core lane on this device"
    b = block_size(m, n, k)
    if min(m, n, k) < MIN_DIM:
        skipped["lowrank"] = f"min(m, n, k) = {min(m, n, k)} < {MIN_DIM}"
    elif rank_cap(m, n, k, b) < b:
        skipped["lowrank"] = "the affordable rank is too small for this shape"
    else:
        methods.append("lowrank")
    methods.append("exact")
    return methods, skipped


def _to_device(rt: Runtime, x):
    if x is None or isinstance(x, cla.Array):
        return x
    return cla.to_device(rt.queue, np.ascontiguousarray(x))


def _tensor_core(rt: Runtime, A, B, C, alpha, beta, trans_a, trans_b, budget, info, extra,
                 fallback: Fp32Lane, seed: int | None):
    """TF32 on the tensor cores, judged on the device (approx/judged.py): its estimate
    (PROBES Gaussian probes, times the safety factor of lowrank.confidence) kept where it
    meets the budget, else the exact float32 product computed there in its place. One wait:
    the verdict's read, this reported call's."""
    t0 = time.perf_counter()
    judge = judged.judge_for(rt, rt.queue)
    probe_info = Info(method="", schedule="", device="", shape=info.shape)
    box: dict = {}

    def compute(a: Operand, b: Operand, c: Operand, m: int, n: int) -> None:
        with judge.lock:
            done = judge.enqueue(m, n, info.shape[2], alpha, beta, a, b, c, budget, fallback,
                                 seed, info=probe_info)
            box["verdict"] = judge.read()
        box["product_s"] = rt.seconds(done.product)
        box["fallback_s"] = rt.seconds(done.last)
        a2, b2, _, m2, n2 = transposed_c(a, b, c, m, n)
        box["schedule"] = tf32_schedule(rt, a2, b2, m2, n2, info.shape[2]).key()

    result = run_product(rt, A, B, C, beta, trans_a, trans_b, info, compute)
    verdict: judged.Judgement = box["verdict"]
    safety = judge.safety
    extra["tensor_core"] = {"mode": "tf32", "estimate": verdict.estimate,
                            "estimate_raw": verdict.estimate / safety, "safety": safety,
                            "kernel_s": box["product_s"], "schedule": box["schedule"],
                            "judged_on_device": True,
                            "device_s": sum(rt.seconds(e) for e in probe_info.events),
                            "seconds": time.perf_counter() - t0}
    if verdict.fell_back:  # the exact product was returned: no estimate to report for it
        extra["tensor_core"]["rejected"] = f"estimate {verdict.estimate:.3g} > budget {budget:.3g}"
        extra["exact_reason"] = "the TF32 estimate missed the budget: exact computed on the device"
        info.method = "exact"
        info.fell_back = True
        info.schedule = fallback.schedule.key()
        info.kernel_s = box["fallback_s"]
        return result
    info.method = "tf32"
    info.error_estimate = verdict.estimate
    info.schedule = box["schedule"]
    info.kernel_s = box["product_s"]
    info.fell_back = False
    extra["confidence"] = lowrank.confidence(judged.PROBES, safety)
    return result


def approximate_matmul(rt: Runtime, A, B, *, C=None, alpha: float = 1.0, beta: float = 0.0,
                       trans_a: bool = False, trans_b: bool = False, rel_tol: float,
                       exact, fallback: Fp32Lane, info, seed: int | None = None):
    """The product within `rel_tol` by the cheapest method that holds it; `exact(A, B, C,
    alpha, beta, info)` is the exact product the call falls back to (the plan's), `fallback`
    the float32 family's lane that replaces a rejected TF32 product on the device."""
    m, n, k = info.shape
    on_device = isinstance(A, cla.Array)
    methods, skipped = plan(rt, m, n, k, rel_tol)
    extra = {"budget": rel_tol, "plan": methods, "skipped": skipped}
    info.extra["approx"] = extra
    t0 = time.perf_counter()

    def exact_fallback(reason: str):
        extra["exact_reason"] = reason
        info.method = "exact"
        return exact(A, B, C, alpha, beta, info)

    if "tensor_core" in methods and m and n and k:
        return _tensor_core(rt, A, B, C, alpha, beta, trans_a, trans_b, rel_tol, info, extra,
                            fallback, seed), info

    if "lowrank" not in methods or m == 0 or n == 0:
        return exact_fallback("planner: " + "; ".join(f"{k}: {v}" for k, v in skipped.items())), info

    lane = lowrank_lane(rt, rel_tol)
    costs = method_costs(rt, m, n, k, lane, rel_tol)
    turn = lowrank_turn(costs)
    if turn is not None:
        t1 = time.perf_counter()
        got = exact_fallback(f"planner: {turn}")  # waits for its kernel: a measured wall
        costs.exact_s = time.perf_counter() - t1
        extra["costs"] = dict(costs.__dict__)
        return got, info

    P = lowrank.Products.of(rt)
    dA, dB = _to_device(rt, A), _to_device(rt, B)
    rng = np.random.default_rng(seed)
    b = block_size(m, n, k)
    cap = rank_cap(m, n, k, b)
    l = lowrank.sketch_cols(m, n, k, cap)
    extra["lane"] = lane or "float32"
    if on_device:  # a new output goes to the user: the user queue's
        out = C if C is not None else cla.empty(rt.user_queue, (m, n), np.float32,
                                                allocator=rt.pool)
    elif C is not None and beta != 0.0:
        out = _to_device(rt, C)
    else:
        out = cla.empty(rt.queue, (m, n), np.float32)
    dC = out if (C is not None and beta != 0.0) else None
    with P.lock:
        sk = lowrank.sketch_product(P, dA, dB, trans_a, trans_b, m, n, k, rel_tol, l, rng,
                                    alpha, beta, dC, out, lane=lane)
    extra.update(rank=sk.rank, sketch_cols=sk.l + sk.q, basis_cols=sk.l, rank_cap=cap,
                 block=b, rho=sk.rho, stop=sk.reason, phases=sk.times,
                 range_s=sk.times.get("sketch_s"))
    if sk.rank > 0 and sk.estimate != float("inf"):
        info.error_estimate = sk.estimate
        extra.update(estimate_raw=sk.raw, safety=sk.safety, probes=sk.q,
                     confidence=lowrank.confidence(sk.q, sk.safety))
    else:
        info.error_estimate = None
    if not sk.ok:  # turned away (full rank) or the estimate said no: C is untouched
        info.fell_back = True
        t1 = time.perf_counter()
        extra["wasted_s"] = t1 - t0
        got = exact_fallback(f"low rank gave up: {sk.reason}")
        t2 = time.perf_counter()
        costs.exact_s, costs.lowrank_s = t2 - t1, t2 - t0
        extra["costs"] = dict(costs.__dict__)
        return got, info

    info.method = "lowrank"
    info.schedule = "lowrank"
    rt.queue.finish()  # the last product too: the wall the planner compares with exact
    costs.lowrank_s = extra["approx_s"] = time.perf_counter() - t0
    extra["costs"] = dict(costs.__dict__)
    if on_device:
        return out, info
    host = out.get(queue=rt.queue)
    if C is not None:
        C[...] = host
        return C, info
    return host, info
