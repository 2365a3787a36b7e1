"""Campaigns of the guard: clean products (false positives, calibration) and fault injection
(detection, localisation, correction). Used by the CLI, the H100 script and the tests."""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np

from ..approx import contract
from ..guard import abft, faults
from ..guard.device import guard_device
from ..lanes.fp32 import choose_schedule
from ..lanes.probe import tensorcore_available
from ..lanes.tc import tc_matmul
from ..route import exact_schedule
from ..runtime import get_runtime

KINDS = ("normal", "uniform", "const", "rowscaled", "colscaled", "int", "sparse", "lowrank",
         "mixedsign", "heavy", "tiny", "huge")


def gen(rng, kind: str, shape) -> np.ndarray:
    r, c = shape
    if kind == "normal":
        x = rng.standard_normal(shape)
    elif kind == "uniform":
        x = rng.random(shape)
    elif kind == "const":
        x = np.full(shape, rng.uniform(0.01, 1.0))
    elif kind == "rowscaled":
        x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, (r, 1))
    elif kind == "colscaled":
        x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, (1, c))
    elif kind == "int":
        x = rng.integers(-3, 4, shape).astype(np.float64)
    elif kind == "sparse":
        x = rng.standard_normal(shape) * (rng.random(shape) < 0.05)
    elif kind == "lowrank":
        x = rng.standard_normal((r, 3)) @ rng.standard_normal((3, c))
    elif kind == "mixedsign":
        x = rng.random(shape) + 0.3 * rng.standard_normal(shape)
    elif kind == "heavy":
        x = np.clip(rng.standard_cauchy(shape), -1e6, 1e6)
    elif kind == "tiny":
        x = rng.standard_normal(shape) * 1e-15
    elif kind == "huge":
        x = rng.standard_normal(shape) * 1e15
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def random_case(rng, max_dim: int = 256, kinds=KINDS):
    """(A, B, C_old, alpha, beta, trans_a, trans_b, kind) of a random clean product."""
    m, n, k = (int(x) for x in np.exp(rng.uniform(0, math.log(max_dim), 3)).round().clip(1))
    return _case_of_shape(rng, m, n, k, kinds)


def _case_of_shape(rng, m: int, n: int, k: int, kinds):
    """A random kind, transposes, operands, alpha, beta (and C_old) for an m x n x k product."""
    kind = kinds[rng.integers(len(kinds))]
    ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
    A = gen(rng, kind, (k, m) if ta else (m, k))
    B = gen(rng, kind, (n, k) if tb else (k, n))
    alpha = float(rng.choice([1.0, -1.0, 0.5, 3.0, rng.uniform(-2, 2)]))
    beta = float(rng.choice([0.0, 0.0, 1.0, -0.75, rng.uniform(-2, 2)]))
    C0 = gen(rng, kind, (m, n)) if beta != 0.0 else None
    return A, B, C0, alpha, beta, ta, tb, kind


def clean_campaign(count: int, seed: int = 0, max_dim: int = 256, device=None,
                   kinds=KINDS, on_device: bool = False) -> dict:
    """check=True on `count` clean products: every flagged one is a false positive."""
    import clgemm

    rng = np.random.default_rng(seed)
    false_pos, ratios, worst = [], [], None
    per_kind: dict[str, int] = {}
    served: Counter[str] = Counter()  # products per kernel family that computed them
    t0 = time.perf_counter()
    for t in range(count):
        A, B, C0, alpha, beta, ta, tb, kind = random_case(rng, max_dim, kinds)
        per_kind[kind] = per_kind.get(kind, 0) + 1
        args = (A, B, None if C0 is None else C0.copy())
        if on_device:
            args = tuple(None if x is None else clgemm.to_device(x, device) for x in args)
        _, info = clgemm.matmul(args[0], args[1], C=args[2], alpha=alpha, beta=beta,
                                trans_a=ta, trans_b=tb, check=True, device=device,
                                return_info=True)
        v = info.extra["abft"]
        served[_served_by(info)] += 1
        ratios.append(v["max_ratio"])
        if v["detected"]:
            false_pos.append({"case": t, "kind": kind, "shape": v["shape"],
                              "max_ratio": v["max_ratio"], "attempts": v["attempts"]})
        if worst is None or v["max_ratio"] > worst["max_ratio"]:
            worst = {"case": t, "kind": kind, "shape": v["shape"], "max_ratio": v["max_ratio"],
                     "alpha": alpha, "beta": beta, "trans": [ta, tb]}
    r = np.array(ratios)
    return {
        "products": count, "false_positives": len(false_pos), "false_positive_cases": false_pos[:20],
        "max_ratio": float(r.max()) if r.size else 0.0,
        "p99_ratio": float(np.percentile(r, 99)) if r.size else 0.0,
        "worst": worst, "kinds": per_kind, "served_by": dict(served),
        "seconds": time.perf_counter() - t0,
    }


def _served_by(info) -> str:
    """The kernel family a checked product ran on, from its schedule's key: "tc" (the
    tensor-core exact lane), "wg" (warpgroup MMA) or "fp32" (the float32 family)."""
    head = info.schedule.split("-", 1)[0]
    return head if head in ("tc", "wg") else "fp32"


DEEP_FROM = abft.DEEP_FROM  # K octaves from here up are calibrated with their own products


def _lanes(rt) -> list[str]:
    return ["fp32"] + (["3xtf32"] if tensorcore_available(rt) else [])


def _lane_product(rt, lane: str, A, B, C0, alpha, beta, ta, tb):
    """The product as `lane` computes it: the float32 family's table schedule, or the
    tensor-core 3xTF32 kernel (the exact lane of a promoted device)."""
    import clgemm

    if lane == "fp32":
        m = A.shape[1] if ta else A.shape[0]
        k = A.shape[0] if ta else A.shape[1]
        n = B.shape[0] if tb else B.shape[1]
        return clgemm.matmul(A, B, C=None if C0 is None else C0.copy(), alpha=alpha, beta=beta,
                             trans_a=ta, trans_b=tb, device=rt.device,
                             schedule=choose_schedule(rt, m, n, k))
    out, _ = tc_matmul(A, B, C=C0, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb,
                       mode=lane, rt=rt)
    return out


def _clean_z(rt, A, B, C, C0, alpha, beta, ta, tb) -> tuple[float, float, float] | None:
    """(the largest |r| / scale of a clean product that the robust level (KAPPA x the 75th
    percentile) leaves uncovered, 0 when it covers all; the largest |r| / scale; that over
    the 99th percentile, which KAPPA99 must exceed); None: too few checkable sums."""
    keep: list = []
    a = abft._as_view(rt, "A", A, ta, keep)
    b = abft._as_view(rt, "B", B, tb, keep)
    c = abft._as_view(rt, "C", C, False, keep)
    o = abft._as_view(rt, "C_old", C0, False, keep) if beta != 0.0 else None
    # c_dev = 0: the threshold is the robust level alone; what it leaves uncovered is what
    # c_dev must cover.
    _, s = abft.check_views(rt, a, b, c, alpha, beta, o, 0.0, locate_cells=False)
    if s is None or s["checkable"] < abft.MIN_SIDE:
        return None
    level = abft.KAPPA * abft.summary_level(s)
    return ((s["max_z"] if s["max_z"] > level else 0.0), s["max_z"],
            s["max_z"] / max(abft.summary_level(s, 0.99), abft.TINY))


def calibrate(count: int = 300, seed: int = 12345, max_dim: int = 200, device=None,
              store: bool = True, margin: float = abft.FLOOR_MARGIN, max_k: int = 4096,
              deep: int = 16, deep_dim: int = 256) -> dict:
    """Measure the floors c_dev of T on clean products of this device, per lane (the float32
    family; 3xTF32 where the device has tensor cores) and per octave of K.

    `count` products of every kind with dimensions up to max_dim, then `deep` products per
    octave of K from 512 up to max_k (m, n up to deep_dim). A floor is `margin` times the
    largest |r|/scale that the robust level (KAPPA x 75th percentile) did not cover in its
    octave; below K = 512 it is at least abft.DEFAULT_C (a fault of 1e-5 max|C| stands far
    above it there, so the floor costs no detection; the tail of |r|/scale of small products
    is wide, up to 3 at K = 256-511 on an H200, which the robust level covers: a floor from
    the tail there cost detection of small faults). From K = 512 up, where the roundoff of
    a block's sum is what hides a small fault, the floor is `margin` times the largest
    |r|/scale of any clean product of its octave, covered or not: a sample of a few dozen
    products shows the tail of |r|/scale, not how often the robust level leaves it
    uncovered (a first H200 run whose floors followed the uncovered part alone, near 0 at
    K = 512, flagged a clean 5x98x865 product). The floor follows the roundoff the kernel
    makes, so a lane that accumulates in blocks can keep a lower one."""
    rt = get_runtime(device)
    rng = np.random.default_rng(seed)
    lanes = _lanes(rt)
    need: dict[tuple[str, int], float] = {}
    tail: dict[tuple[str, int], float] = {}
    over99: dict[tuple[str, int], float] = {}
    seen: dict[tuple[str, int], int] = {}
    # which data kind set each octave's largest |r| / scale (and the product's shape): the
    # deep floors follow one product's tail, so a floor far above its neighbours' reads here
    setter: dict[tuple[str, int], dict] = {}

    def record(case) -> None:
        A, B, C0, alpha, beta, ta, tb, kind = case
        k = A.shape[0] if ta else A.shape[1]
        o = abft.k_octave(k)
        for lane in lanes:
            C = _lane_product(rt, lane, A, B, C0, alpha, beta, ta, tb)
            got = _clean_z(rt, A, B, C, C0, alpha, beta, ta, tb)
            if got is None:
                continue
            need[(lane, o)] = max(need.get((lane, o), 0.0), got[0])
            if got[1] > tail.get((lane, o), 0.0):
                setter[(lane, o)] = {"kind": kind, "mnk": [C.shape[0], C.shape[1], k],
                                  "trans": [ta, tb], "beta": beta, "covered": got[0] == 0.0}
            tail[(lane, o)] = max(tail.get((lane, o), 0.0), got[1])
            over99[(lane, o)] = max(over99.get((lane, o), 0.0), got[2])
            seen[(lane, o)] = seen.get((lane, o), 0) + 1

    for _ in range(count):
        record(random_case(rng, max_dim))
    for o in range(DEEP_FROM, abft.k_octave(max_k) + 1):
        for _ in range(deep):
            record(deep_case(rng, o, deep_dim))
    floors: dict[str, dict[str, float]] = {}
    for (lane, o), z in sorted(need.items()):
        floor = max(abft.DEFAULT_C, margin * z) if o < DEEP_FROM else margin * tail[(lane, o)]
        floors.setdefault(lane, {})[str(o)] = floor
    top = max(need.values()) if need else 0.0
    c = max(abft.DEFAULT_C, margin * top)
    result = {"c": c, "floors": floors, "max_uncovered_z": top,
              "uncovered_z": {f"{lane}:{o}": z for (lane, o), z in sorted(need.items())},
              "max_z": {f"{lane}:{o}": z for (lane, o), z in sorted(tail.items())},
              "max_z_product": {f"{lane}:{o}": p for (lane, o), p in sorted(setter.items())},
              # must stay below KAPPA99 (with room): the tail over the 99th percentile
              "max_over_p99": {f"{lane}:{o}": z for (lane, o), z in sorted(over99.items())},
              "kappa99": abft.KAPPA99,
              "products": {f"{lane}:{o}": n for (lane, o), n in sorted(seen.items())},
              "count": count, "deep": deep, "max_k": max_k, "margin": margin,
              "kappa": abft.KAPPA, "seed": seed, "max_dim": max_dim, "lanes": lanes}
    if store:
        evidence = {k: v for k, v in result.items() if k not in ("c", "floors")}
        result["path"] = str(abft.store_calibration(rt, c, evidence, floors))
    return result


def deep_case(rng, octave: int, max_dim: int = 256, kinds=KINDS):
    """A clean product of inner dimension K in [2^octave, 2^(octave+1)): the kinds of
    random_case, m and n log-uniform up to max_dim."""
    m, n = (int(x) for x in np.exp(rng.uniform(math.log(2), math.log(max_dim), 2)).round())
    k = int(rng.integers(1 << octave, 1 << (octave + 1)))
    return _case_of_shape(rng, m, n, k, kinds)


def sized_case(rng, lo: int, hi: int, kinds=KINDS):
    """A clean product with m and n log-uniform in [lo, hi] and K in [512, 4096] (where the
    judge's Gaussian-tail branch may engage): the kinds of random_case."""
    m, n = (int(x) for x in np.exp(rng.uniform(math.log(lo), math.log(hi), 2)))
    k = int(np.exp(rng.uniform(math.log(512), math.log(4096))))
    return _case_of_shape(rng, m, n, k, kinds)


# ---- fault injection ----------------------------------------------------------------------
FAULT_MODELS = ("bit_mantissa", "bit_exponent", "multi_bit", "scaled", "rel_1e-5",
                "rel_1e-4", "rel_1e-3", "nan", "inf", "row", "accumulator")


def make_fault(rng, model: str, C: np.ndarray, m: int, n: int):
    """(hook kwargs, description, expected-detectable) for one injected fault."""
    i, j = int(rng.integers(m)), int(rng.integers(n))
    big = float(np.abs(C).max()) if C.size else 0.0
    if model == "bit_mantissa":
        bit = int(rng.integers(0, 23))
        fn = faults.bit_flip([bit])
    elif model == "bit_exponent":
        bit = int(rng.integers(23, 31))
        fn = faults.bit_flip([bit])
    elif model == "multi_bit":
        bits = rng.choice(32, size=int(rng.integers(2, 5)), replace=False)
        fn = faults.bit_flip(list(bits))
    elif model == "scaled":
        fn = faults.add(float(rng.choice([-1, 1]) * big * 10.0 ** rng.uniform(-5, 0)))
    elif model.startswith("rel_"):
        fn = faults.add(float(rng.choice([-1, 1]) * big * float(model[4:]) * 1.01))
    elif model == "nan":
        fn = faults.set_value(np.nan)
    elif model == "inf":
        fn = faults.set_value(float(rng.choice([np.inf, -np.inf])))
    elif model == "row":
        fn = faults.add(float(big * 1e-3))
        return {"result": lambda v: fn(v) * 1 + rng.standard_normal(v.shape).astype(np.float32) * big * 1e-3,
                "cells": [(i, jj) for jj in range(n)]}, (i, -1)
    elif model == "accumulator":
        return {"accumulator_at": i * n + j}, (i, j)
    else:
        raise ValueError(model)
    return {"result": fn, "cells": [(i, j)]}, (i, j)


def fault_delta(model: str, hook: dict, clean: np.ndarray, fi: int, fj: int,
                alpha: float = 1.0, acc: float | None = None) -> float:
    """What the fault of `make_fault` does to entry (fi, fj) of the clean result, measured on
    a host replica (inf: a non-finite entry, or a whole row). An accumulator fault turns the
    accumulator acc (op(A) op(B) at the cell; the clean entry when alpha = 1, beta = 0) into
    -acc + 1, which alpha scales."""
    if "cells" in hook:
        if model == "row":
            return math.inf
        rep = faults.corrupt_host(clean, hook["cells"], hook["result"])
        if not np.isfinite(rep[fi, fj]):
            return math.inf
        return float(abs(rep[fi, fj].astype(np.float64) - clean[fi, fj]))
    acc = float(clean[fi, fj]) if acc is None else acc
    return abs(alpha) * abs(-2.0 * acc + 1.0)


def fault_campaign(count: int, seed: int = 1, max_dim: int = 192, device=None,
                   models=FAULT_MODELS, kinds=("normal", "uniform", "rowscaled", "lowrank"),
                   min_dim: int = 8) -> dict:
    """Inject one fault per product (check=True) and count detection, localisation and
    correction. A fault is 'significant' when it changes the entry by more than 1e-5 of
    the largest |entry|, or makes it non-finite; only those must be detected."""
    import clgemm
    from ..errors import FaultError

    rng = np.random.default_rng(seed)
    stats: dict[str, dict] = {}
    t0 = time.perf_counter()
    for t in range(count):
        model = models[t % len(models)]
        m, n, k = (int(x) for x in rng.integers(min_dim, max(max_dim, min_dim + 1), 3))
        kind = kinds[rng.integers(len(kinds))]
        A, B = gen(rng, kind, (m, k)), gen(rng, kind, (k, n))
        clean = clgemm.matmul(A, B)
        hook, (fi, fj) = make_fault(rng, model, clean, m, n)
        delta = fault_delta(model, hook, clean, fi, fj)
        big = float(np.abs(clean).max()) or 1.0
        significant = bool(delta > 1e-5 * big)
        s = stats.setdefault(model, {"injected": 0, "significant": 0, "detected": 0,
                                     "detected_significant": 0, "localised": 0,
                                     "corrected": 0, "recomputed": 0, "fault_error": 0,
                                     "wrong_result": 0, "rel_sizes_missed": [],
                                     "served_by": Counter()})
        s["injected"] += 1
        s["significant"] += significant
        with faults.inject(**hook):
            try:
                out, info = clgemm.matmul(A, B, check=True, device=device, return_info=True)
            except FaultError:
                s["fault_error"] += 1
                s["detected"] += 1
                s["detected_significant"] += significant
                continue
        v = info.extra["abft"]
        s["served_by"][_served_by(info)] += 1
        if v["detected"]:
            s["detected"] += 1
            s["detected_significant"] += significant
            first = v.get("first", {})
            if fi in first.get("rows", []) and (fj < 0 or fj in first.get("cols", [])
                                               or not first.get("cols")):
                s["localised"] += 1
            s["corrected"] += bool(v["corrected"])
            s["recomputed"] += bool(v["recomputed"])
        elif significant:
            s["rel_sizes_missed"].append(float(delta / big))
        # Whatever came back must be right (repaired) or the fault insignificant.
        err = np.abs(out.astype(np.float64) - clean)
        tol = 1e-5 * big
        if not np.isfinite(out).all() or err.max() > tol and v["detected"]:
            s["wrong_result"] += 1
    summary = {}
    for model, s in stats.items():
        sig = max(s["significant"], 1)
        det = max(s["detected"], 1)
        summary[model] = {
            **{k: v for k, v in s.items() if k not in ("rel_sizes_missed", "served_by")},
            "served_by": dict(s["served_by"]),
            "detection_rate_significant": s["detected_significant"] / sig,
            "localisation_rate": s["localised"] / det,
            "correction_rate": (s["corrected"] + s["recomputed"]) / det,
            "missed_significant_rel_sizes": sorted(s["rel_sizes_missed"])[-10:],
        }
    tot_sig = sum(s["significant"] for s in stats.values())
    tot_det = sum(s["detected_significant"] for s in stats.values())
    return {"products": count, "models": summary,
            "detection_rate_significant": tot_det / max(tot_sig, 1),
            "seconds": time.perf_counter() - t0}


# ---- timings --------------------------------------------------------------------------------
def _interleaved_walls(fns, reps: int, rt) -> list[float]:
    """Median wall of each function, the functions timed in turn within every repetition:
    the host's drift (this machine's Python runs 2-5x slower at times) hits all alike. Each
    is waited for on both of the runtime's queues (a call on device arrays without
    return_info runs on the user queue and returns before its product has run)."""
    for fn in fns:
        fn()
    rt.finish()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, got in zip(fns, times):
            rt.finish()
            t = time.perf_counter()
            fn()
            rt.finish()
            got.append(time.perf_counter() - t)
    return [float(np.median(t)) for t in times]


def abft_overhead(n: int = 3072, reps: int = 10, device=None, seed: int = 0) -> dict:
    """Median wall time of matmul on device arrays with and without check=True."""
    import clgemm

    rt = get_runtime(device)
    rng = np.random.default_rng(seed)
    A = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    B = clgemm.to_device(rng.standard_normal((n, n)).astype(np.float32), rt.device)
    C = clgemm.to_device(np.zeros((n, n), np.float32), rt.device)
    kernel, checks, ck_kernel = [], [], []
    # Both calls take the device's default exact product (the tensor-core 3xTF32 lane where
    # the gate promoted it, else the float32 family's table schedule): the overhead is the
    # guard's alone, and against what the caller would run without check=True.

    lane = exact_schedule(rt, n, n, n)
    same = lane or choose_schedule(rt, n, n, n)

    def plain():
        _, info = clgemm.matmul(A, B, C=C, device=rt.device, return_info=True)
        kernel.append(info.kernel_s)
        assert info.schedule == same.key(), (info.schedule, same.key())

    def checked():
        _, info = clgemm.matmul(A, B, C=C, check=True, device=rt.device, return_info=True)
        checks.append(info.extra["abft"]["check_s"])
        ck_kernel.append(info.kernel_s)
        assert info.extra["abft"]["ok"]
        assert info.schedule == same.key(), (info.schedule, same.key())

    # beta != 0 against the same call unchecked: the product itself then reads C, and
    # check=True adds the copy of C_old (for repairs) and its block sums. (Until 2026-12-02
    # the checked beta call was set against the beta = 0 plain call, which counted the
    # product's own reading of C as the guard's.)
    def plain_beta():
        clgemm.matmul(A, B, C=C, beta=0.5, device=rt.device)

    def checked_beta():
        clgemm.matmul(A, B, C=C, beta=0.5, check=True, device=rt.device)

    t_plain, t_check, t_plain_beta, t_check_beta = _interleaved_walls(
        (plain, checked, plain_beta, checked_beta), reps, rt)
    # Device time of the guard's own commands (OpenCL events), per checked call.
    ck = abft.block_check(guard_device(rt), n, n, n)
    ck.events = []
    guard_dev, guard_busy = [], []
    for _ in range(reps):
        ck.events.clear()
        checked()
        guard_dev.append(ck.span_extra_seconds(ck.product_events))
        guard_busy.append(ck.device_seconds())
    n_commands = len(ck.events)
    ck.events = None
    k_s = float(np.median(kernel))
    g_s = float(np.median(guard_dev))
    return {
        "n": n, "reps": reps, "device": rt.device.name, "block_rows": ck.bs,
        "gemm_schedule": same.key(),
        # device time the guard adds to the product's span (the expected sums run beside the
        # product on a second queue), and its commands' busy time, overlapped or not
        "guard_device_s": g_s, "guard_busy_s": float(np.median(guard_busy)),
        "guard_commands": n_commands,
        "overhead_events_vs_gemm_kernel": g_s / k_s if k_s > 0 else None,
        "plain_wall_s": t_plain, "checked_wall_s": t_check,
        "plain_beta_wall_s": t_plain_beta, "checked_beta_wall_s": t_check_beta,
        "gemm_kernel_s": k_s, "checked_gemm_kernel_s": float(np.median(ck_kernel)),
        "check_s_median": float(np.median(checks)),
        "overhead_vs_plain_wall": (t_check - t_plain) / t_plain,
        "overhead_vs_gemm_kernel": (t_check - t_plain) / k_s if k_s > 0 else None,
        "overhead_beta_vs_plain_beta_wall": (t_check_beta - t_plain_beta) / t_plain_beta,
    }


# ---- approximate products -------------------------------------------------------------------
def lowrank_operands(rng, n: int, rank: int, noise: float = 0.0):
    """A = X Y / sqrt(rank) (+ noise N(0, noise^2)), B Gaussian: op(A) op(B) has rank <= rank
    (plus noise)."""
    X = rng.standard_normal((n, rank)).astype(np.float32)
    Y = rng.standard_normal((rank, n)).astype(np.float32)
    A = (X @ Y) / np.float32(math.sqrt(rank))
    if noise:
        A += rng.standard_normal((n, n)).astype(np.float32) * np.float32(noise)
    B = rng.standard_normal((n, n)).astype(np.float32)
    return A.astype(np.float32), B


def clean_large(n: int = 3072, count: int = 12, seed: int = 21, device=None,
                kinds=KINDS) -> dict:
    """check=True on clean n x n x n products (device arrays), kinds cycled, random
    transposes, alpha and beta: every flagged one is a false positive."""
    import clgemm

    rt = get_runtime(device)
    rng = np.random.default_rng(seed)
    fps, ratios, per = [], [], []
    served: Counter[str] = Counter()  # products per kernel family that computed them
    for t in range(count):
        kind = kinds[t % len(kinds)]
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        A = clgemm.to_device(gen(rng, kind, (n, n)), rt.device)
        B = clgemm.to_device(gen(rng, kind, (n, n)), rt.device)
        alpha = float(rng.choice([1.0, -0.5, rng.uniform(-2, 2)]))
        beta = float(rng.choice([0.0, 1.0, rng.uniform(-2, 2)]))
        C = clgemm.to_device(gen(rng, kind, (n, n)), rt.device)
        _, info = clgemm.matmul(A, B, C=C, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb,
                                check=True, device=rt.device, return_info=True)
        v = info.extra["abft"]
        served[_served_by(info)] += 1
        ratios.append(v["max_ratio"])
        per.append({"kind": kind, "max_ratio": v["max_ratio"], "threshold": v["threshold"],
                    "block": v["block"]})
        if v["detected"]:
            fps.append({"case": t, "kind": kind, "max_ratio": v["max_ratio"],
                        "attempts": v["attempts"]})
    return {"n": n, "products": count, "false_positives": len(fps), "false_positive_cases": fps,
            "max_ratio": float(max(ratios)) if ratios else 0.0, "cases": per,
            "served_by": dict(served)}


def approx_campaign(sizes=(384, 512), budgets=(1e-1, 1e-2, 1e-3, 1e-4), reps: int = 3,
                    seed: int = 2, device=None) -> dict:
    """True error vs budget over low-rank, low-rank + noise and full-rank inputs."""
    import clgemm

    rt = get_runtime(device)
    rng = np.random.default_rng(seed)
    cases = []
    within = total = 0
    for n in sizes:
        kinds = [("lowrank", max(2, n // 32), 0.0), ("lowrank+noise1e-3", max(2, n // 32), 1e-3),
                 ("lowrank+noise1e-2", max(2, n // 32), 1e-2), ("fullrank", n, 0.0)]
        for kind, rank, noise in kinds:
            for _ in range(reps):
                if kind == "fullrank":
                    A = rng.standard_normal((n, n)).astype(np.float32)
                    B = rng.standard_normal((n, n)).astype(np.float32)
                else:
                    A, B = lowrank_operands(rng, n, rank, noise)
                ref = A.astype(np.float64) @ B.astype(np.float64)
                for budget in budgets:
                    rt.forget(contract.COSTS_MEMO)  # each call runs its method (no memory)
                    C, info = clgemm.matmul(A, B, rel_tol=budget, device=device,
                                            return_info=True)
                    err = float(np.linalg.norm(C - ref) / np.linalg.norm(ref))
                    ok = err <= budget
                    within += ok
                    total += 1
                    x = info.extra.get("approx", {})
                    cases.append({"n": n, "kind": kind, "budget": budget, "err": err,
                                  "within": ok, "method": info.method,
                                  "fell_back": info.fell_back,
                                  "estimate": info.error_estimate, "rank": x.get("rank"),
                                  "stop": x.get("stop") or x.get("exact_reason")})
    by_kind: dict = {}
    for c in cases:
        key = f"{c['kind']}@{c['budget']:g}"
        d = by_kind.setdefault(key, {"calls": 0, "within": 0, "lowrank": 0, "fell_back": 0,
                                     "max_err_over_budget": 0.0})
        d["calls"] += 1
        d["within"] += c["within"]
        d["lowrank"] += c["method"] == "lowrank"
        d["fell_back"] += c["fell_back"]
        d["max_err_over_budget"] = max(d["max_err_over_budget"], c["err"] / c["budget"])
    return {"calls": total, "within_budget": within, "within_rate": within / max(total, 1),
            "by_kind_budget": by_kind, "cases": cases}


def approx_timing(n: int = 3072, budget: float = 1e-2, reps: int = 5, device=None,
                  seed: int = 3, remember: bool = True) -> dict:
    """Wall time (device arrays, queue.finish) of exact vs rel_tol on rank n/32 and full rank.
    remember=False clears the planner's measured costs before every call: each call is a
    first encounter (it tries low rank); True: the planner's steady state, where low rank
    measured slower than exact is tried once every contract.EXPLORE_EVERY calls."""
    import clgemm

    rt = get_runtime(device)
    rng = np.random.default_rng(seed)
    out = {"n": n, "budget": budget, "reps": reps, "device": rt.device.name}
    A_lr, B_lr = lowrank_operands(rng, n, max(2, n // 32))
    A_fr = rng.standard_normal((n, n)).astype(np.float32)
    for name, A, B in (("rank_n_over_32", A_lr, B_lr), ("fullrank", A_fr, B_lr)):
        dA, dB = clgemm.to_device(A, rt.device), clgemm.to_device(B, rt.device)
        dC = clgemm.to_device(np.zeros((n, n), np.float32), rt.device)
        infos = []

        def exact():
            clgemm.matmul(dA, dB, C=dC, device=rt.device)

        def approx():
            if not remember:
                rt.forget(contract.COSTS_MEMO)
            _, info = clgemm.matmul(dA, dB, C=dC, rel_tol=budget, device=rt.device,
                                    return_info=True)
            infos.append(info)

        t_exact, t_approx = _interleaved_walls((exact, approx), reps, rt)
        ref = A.astype(np.float64) @ B.astype(np.float64)
        err = float(np.linalg.norm(dC.get() - ref) / np.linalg.norm(ref))
        last = infos[-1]
        x = last.extra.get("approx", {})
        out[name] = {"exact_s": t_exact, "approx_s": t_approx, "speedup": t_exact / t_approx,
                     "method": last.method, "fell_back": last.fell_back, "rank": x.get("rank"),
                     "estimate": last.error_estimate, "true_err": err,
                     "wasted_s": x.get("wasted_s"), "stop": x.get("stop"),
                     "wasted_over_exact": (t_approx - t_exact) / t_exact}
    return out
