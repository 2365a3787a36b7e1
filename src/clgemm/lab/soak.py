"""`clgemm soak`: a mixed workload for a given time, every result verified against float64,
faults injected at a known rate into check=True calls, telemetry per window, and an artifact
(schema clgemm.soak/1) rewritten atomically at every window, so that Ctrl-C, SIGTERM or a
kill -9 leave a valid partial one (`complete: false`, `status` interrupted or, after a kill,
still running).

Each call draws its product from a shuffled cycle over all products (soak_workload), then a
contract (exact, check=True, rel_tol), numpy or device arrays, clgemm.matmul or a plan, and
alpha, beta (beta != 0: a C_old is given). A check=True call is injected with a fault with
probability fault_rate: one of the guard campaign's fault models in turn, its size measured
on a host replica of the clean product; the guard's stated floor is a change of more than
FLOOR_REL max|C| (or a non-finite entry), and on the products it judges cell by cell (tiny
ones, guard/elementwise.py) also more than the cell's float32 error bound (K + 4) u S_ij, a
change a correct float32 product may make (this soak's verification accepts it): a fault
above the floor that the guard lets through is a miss; below it, it is counted apart (faults
over FLOOR_REL max|C| but within their cell's bound are counted as within_cell_bound). Each
checked call also states its own floor (Info.extra["abft"]["floor_abs"]: twice its largest
block-column tolerance, a change a check is sure to find): where a big product of large K
states it above FLOOR_REL max|C| (its blocks sum more roundoff than such a fault), a miss
within it counts as below the floor and, apart, as missed_under_stated_floor.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ClgemmError, FaultError, UsageError
from . import soak_telemetry as tel
from . import soak_workload as wl
from ..guard import elementwise as EW
from .guard_campaign import FAULT_MODELS, fault_delta, make_fault

SCHEMA = "clgemm.soak/1"
FLOOR_REL = 1e-5  # the guard's stated floor: faults of 1e-5 max|C| (guard/abft.py, README)
CONTRACTS = (("exact", 0.4), ("check", 0.35), ("rel_tol", 0.25))
REL_TOLS = (1e-2, 1e-3)
PLAN_SHARE = 0.25  # calls made through clgemm.plan(...) rather than clgemm.matmul
DEVICE_SHARE = 0.5  # calls on device arrays (clgemm.to_device) rather than numpy
WARMUP_SHARE = 0.2  # windows of warm-up (kernel builds, pools filling) before memory is judged
MEMORY_BAR_PCT = 1.0
CALIBRATE_MAX_K = 8192  # the largest K octave calibrated at setup (13: K 8192-16383)
CASES_KEPT = 20  # examples kept per kind of failure (the counts are complete)


def size_class(rel: float) -> str:
    """A fault's size over max|C| by decade: "1e-05" holds [1e-5, 1e-4); "whole-row-or-inf"
    the row model and non-finite entries."""
    if not math.isfinite(rel):
        return "whole-row-or-inf"
    return f"{10.0 ** math.floor(math.log10(rel)):.0e}" if rel > 0 else "0"


@dataclass(frozen=True)
class SoakOptions:
    minutes: float
    out: str
    device: object = None
    fault_rate: float = 0.2
    window_s: float = 30.0
    seed: int = 0
    traces: tuple[str, ...] = ()  # none: the checkout's model traces for the device's kind
    fault_models: tuple[str, ...] = FAULT_MODELS
    smi_period_s: float = 1.0
    quiet: bool = False
    # calibrate the guard's floors at setup where the device has none stored: the floor
    # FLOOR_REL is stated for a calibrated device (guard/abft.py); uncalibrated, T is
    # DEFAULT_C, up to 4x the calibrated one from K = 512 up (an uncalibrated H100 soak let
    # 35 faults of 1.01e-5 max|C| through at K 1403-4096, 2026-12-06)
    calibrate: bool = True


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the soak can write its partial artifact."""


@dataclass
class Tally:
    """Counts of one window (and, summed, of the run)."""
    calls: int = 0
    flops: float = 0.0
    call_s: float = 0.0
    by_contract: dict = field(default_factory=dict)
    device_arrays: int = 0
    plans: int = 0
    probe_checks: int = 0
    row_checks: int = 0
    wrong_results: int = 0
    errors: int = 0
    clean_checked: int = 0
    false_positives: int = 0
    injected: int = 0
    found: int = 0
    missed_above_floor: int = 0
    missed_below_floor: int = 0
    # of those below: over FLOOR_REL max|C| but within the call's own stated floor (twice its
    # largest block-column tolerance, Info.extra["abft"]["floor_abs"]), which a big product
    # of large K states above FLOOR_REL
    missed_under_stated_floor: int = 0
    not_applied: int = 0

    def add(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            if name == "by_contract":
                for k, v in value.items():
                    self.by_contract[k] = self.by_contract.get(k, 0) + v
            else:
                setattr(self, name, getattr(self, name) + value)


class Log:
    """Everything counted beyond the tallies: errors by type, faults by model, and a few
    examples of each failure."""

    def __init__(self) -> None:
        self.errors_by_type: dict[str, int] = {}
        self.faults_by_model: dict[str, dict[str, int]] = {}
        self.cases: dict[str, list] = {"errors": [], "wrong_results": [], "false_positives": [],
                                       "missed_faults": [], "below_floor_escapes": [],
                                       "under_stated_floor": [],
                                       "unrepaired": []}
        self.worst_ratio: dict[str, float] = {}  # verification: worst error / bound per contract
        self.missed_by_size: dict[str, int] = {}  # misses above the floor, by decade of size
        self.missed_by_product: dict[str, int] = {}  # ... and by product
        self.unrepaired_by_product: dict[str, int] = {}
        self.below_floor_escapes = 0
        self.within_cell_bound = 0  # faults over FLOOR_REL max|C| within their cell's bound
        self.unrepaired = 0  # faults found but left above the floor in the returned result
        self.fault_errors = 0

    def case(self, kind: str, item: dict) -> None:
        if len(self.cases[kind]) < CASES_KEPT:
            self.cases[kind].append(item)

    def ratio(self, contract: str, how: str, value: float) -> None:
        key = f"{contract}:{how}"
        self.worst_ratio[key] = max(self.worst_ratio.get(key, 0.0), value)


@dataclass(frozen=True)
class Draw:
    """One call's choices."""
    product: wl.Product
    contract: str
    rel_tol: float | None
    on_device: bool
    via_plan: bool
    alpha: float
    beta: float
    inject: bool
    rows_check: bool

    @property
    def key(self) -> tuple:
        return (self.product.name, self.contract, self.on_device, self.via_plan)

    def describe(self) -> dict:
        p = self.product
        return {"product": p.name, "shape": [p.m, p.n, p.k], "batch": p.batch,
                "trans": [p.trans_a, p.trans_b],
                "contract": self.contract, "rel_tol": self.rel_tol, "device_arrays": self.on_device,
                "plan": self.via_plan, "alpha": self.alpha, "beta": self.beta}


class Soak:
    def __init__(self, opts: SoakOptions, argv: list[str]) -> None:
        import clgemm

        from ..runtime import get_runtime

        self.clgemm = clgemm
        self.opts = opts
        self.argv = list(argv)
        self.rt = get_runtime(opts.device)
        self.dev = self.rt.device
        traces = [str(t) for t in (opts.traces or wl.default_traces(self.dev))]
        if not traces:
            raise UsageError("no model trace found beside the package: give --trace FILE")
        self.traces = traces
        self.products = wl.products(self.dev, traces, opts.seed)
        self.rng = np.random.default_rng(opts.seed)
        self.source = wl.OperandSource(opts.seed + 1)
        self.total, self.window = Tally(), Tally()
        self.log = Log()
        self.windows: list[dict] = []
        self.cycle: list[wl.Product] = []
        self.cover: list[tuple] | None = None  # (product, contract, device arrays) to cover
        self.seen: set[wl.Product] = set()
        self.calls_of: dict[wl.Product, int] = {}
        self.fault_count = 0
        # mix-adjusted speed: seconds per call of each (product, contract, arrays, api) as first
        # timed after warm-up; a window's index is sum(count x ref) / its seconds (1 = as then)
        self.ref_s: dict[tuple, float] = {}
        self.key_stats: dict[tuple, list] = {}
        self.gpu = tel.GpuPoller(self.dev, opts.smi_period_s)
        self.planned = max(1, math.ceil(60.0 * opts.minutes / opts.window_s))
        self.data: dict = {}

    # ---- the calls ---------------------------------------------------------------------
    def draw(self) -> Draw:
        """The next call: first the cover (every product under every contract and rel_tol,
        on numpy and on device arrays, with and without a C_old: every allocation the
        workload will ever make, during the warm-up, so that memory growth after it means a
        leak, not a late first use; the first CPU soak-2 run allocated a 384^2 block in its
        5th window: kpi:384 under rel_tol on device arrays with beta = 0, whose exact
        fallback allocates its output, a case the cover without beta = 0 had not met),
        then products in shuffled cycles with contract, arrays, API, alpha, beta at random."""
        names, weights = zip(*CONTRACTS)
        if self.cover is None:
            self.cover = [(p, c, tol, dev, with_old) for p in self.products for c in names
                          for tol in (REL_TOLS if c == "rel_tol" else (None,))
                          for dev in (False, True) for with_old in (True, False)]
            self.cover.reverse()
        rel_tol = None
        if self.cover:
            p, contract, rel_tol, on_device, with_old = self.cover.pop()
            beta = float(self.rng.choice([1.0, -0.75, self.rng.uniform(0.1, 2)])
                         if with_old else 0.0)
        else:
            if not self.cycle:
                order = self.rng.permutation(len(self.products))
                self.cycle = [self.products[i] for i in order]
            p = self.cycle.pop()
            contract = names[int(self.rng.choice(len(names), p=np.array(weights) / sum(weights)))]
            on_device = bool(self.rng.random() < DEVICE_SHARE)
            beta = float(self.rng.choice([0.0, 0.0, 1.0, -0.75, self.rng.uniform(-2, 2)]))
            rel_tol = float(self.rng.choice(REL_TOLS)) if contract == "rel_tol" else None
        alpha = float(self.rng.choice([1.0, -1.0, 0.5, 3.0, self.rng.uniform(-2, 2)]))
        n = self.calls_of.get(p, 0)
        self.calls_of[p] = n + 1
        return Draw(p, contract, rel_tol, on_device, bool(self.rng.random() < PLAN_SHARE),
                    alpha, beta,
                    contract == "check" and bool(self.rng.random() < self.opts.fault_rate),
                    n % wl.FULL_EVERY == 0)

    def _operands(self, d: Draw, ops: wl.Operands) -> tuple:
        """(A, B, C) as the call takes them: numpy, or device arrays (A, B kept on the device
        with reused operands; C_old copied every call, since the call writes into it)."""
        C = ops.C0.copy() if d.beta != 0.0 else None
        if not d.on_device:
            return ops.A, ops.B, C
        to_dev = self.clgemm.to_device
        A, B = ops.device or (to_dev(ops.A, self.dev), to_dev(ops.B, self.dev))
        return A, B, (None if C is None else to_dev(C, self.dev))

    def upload_reused(self) -> None:
        """Device copies of the reused operands, one per matrix (shared like the host ones),
        made before the clock starts."""
        copies: dict[int, object] = {}
        for ops in self.source.kept():
            for x in (ops.A, ops.B):
                if id(x) not in copies:
                    copies[id(x)] = self.clgemm.to_device(x, self.dev)
            ops.device = (copies[id(ops.A)], copies[id(ops.B)])

    def _call(self, d: Draw, A, B, C):
        """The product through the public API; returns (host result, Info or None, seconds
        until the result was ready on its side)."""
        p = d.product
        check = d.contract == "check"
        want_info = check
        t0 = time.perf_counter()
        if d.via_plan:
            plan = self.clgemm.plan(p.m, p.n, p.k, trans_a=p.trans_a, trans_b=p.trans_b,
                                    rel_tol=d.rel_tol, check=check, device=self.dev,
                                    batch=p.batch if p.batch > 1 else None)
            got = plan(A, B, C, alpha=d.alpha, beta=d.beta, return_info=want_info)
        else:
            got = self.clgemm.matmul(A, B, C=C, alpha=d.alpha, beta=d.beta, trans_a=p.trans_a,
                                     trans_b=p.trans_b, rel_tol=d.rel_tol, check=check,
                                     device=self.dev, return_info=want_info)
        out, info = got if want_info else (got, None)
        if d.on_device:
            out.finish()  # an exact call on device arrays returns once enqueued
        seconds = time.perf_counter() - t0
        return (out.get() if d.on_device else out), info, seconds

    def _clean_product(self, d: Draw, ops: "wl.Operands | wl.Batch") -> np.ndarray:
        p = d.product
        return self.clgemm.matmul(ops.A, ops.B, C=ops.C0.copy() if d.beta != 0.0 else None,
                                  alpha=d.alpha, beta=d.beta, trans_a=p.trans_a,
                                  trans_b=p.trans_b, device=self.dev)

    def step(self) -> None:
        d = self.draw()
        ops = self.source.get(d.product)
        w, log = self.window, self.log
        injected = None  # the fault of each product of the call (a batch: each has it)
        try:
            if d.inject:
                injected = self._fault(d, ops)
            A, B, C = self._operands(d, ops)
            if injected is None:
                out, info, seconds = self._call(d, A, B, C)
            else:
                from ..guard import faults

                with faults.inject(**injected[0]["hook"]) as hooks:
                    try:
                        out, info, seconds = self._call(d, A, B, C)
                    except FaultError:
                        # the guard refused to return a result it could not repair: found
                        log.fault_errors += 1
                        for fault in injected:
                            self._fault_outcome(d, fault, detected=True, applied=True)
                        return
                # the products of a batch are checked in turn, each corrupted once
                for fault in injected:
                    fault["applied"] = hooks.applied - fault["index"]
        except (KeyboardInterrupt, Terminated):
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is counted, the soak goes on
            name = type(exc).__name__
            log.errors_by_type[name] = log.errors_by_type.get(name, 0) + 1
            w.errors += 1
            log.case("errors", {**d.describe(), "type": name, "message": str(exc)[:300],
                                "clgemm_error": isinstance(exc, ClgemmError)})
            return
        found = self._detected(info, d.product.batch)
        outs = list(out) if d.product.batch > 1 else [out]
        per = self._verify(d, ops, outs)
        checks = [c for each in per for c in each]
        # the call and its verification are counted together, after it: an interrupt during
        # the verification leaves neither counted (the artifact's counts stay consistent)
        self._count(d, seconds, len(checks))
        ok = all(c.ok for c in checks)
        if injected is not None:
            for fault, o, each, detected in zip(injected, outs, per, found):
                self._fault_outcome(d, fault, detected, self._applied(fault, o, detected),
                                    info)
                if not all(c.ok for c in each):
                    self._fault_left(d, fault, o, info, detected)
            return
        detected = any(found)
        if d.contract == "check":
            w.clean_checked += 1
            if detected:
                w.false_positives += 1
                v = info.extra["abft"]
                log.case("false_positives", {**d.describe(), "max_ratio": v.get("max_ratio"),
                                             "attempts": v.get("attempts")})
        if not ok:
            self._wrong(d, checks, "")

    def _count(self, d: Draw, seconds: float, checks: int) -> None:
        w = self.window
        w.calls += 1
        w.probe_checks += 1
        w.row_checks += checks - 1
        w.flops += d.product.flops
        w.call_s += seconds
        w.by_contract[d.contract] = w.by_contract.get(d.contract, 0) + 1
        w.device_arrays += d.on_device
        w.plans += d.via_plan
        stat = self.key_stats.setdefault(d.key, [0, 0.0])
        stat[0] += 1
        stat[1] += seconds

    def _fault_left(self, d: Draw, fault: dict, out: np.ndarray, info, detected: bool) -> None:
        """A faulty call whose result is off the exact bound: what is left of the fault, over
        max|C| (against the clean product: the two differ by the roundoff of two correct
        lanes at most, below the bound that `out` failed). Found but left above the floor:
        repaired in part; a miss above the floor is counted as a miss already."""
        log = self.log
        clean = fault["clean"]
        left = float(np.max(np.abs(out.astype(np.float64) - clean)))
        left = left / (float(np.abs(clean).max()) or 1.0) if math.isfinite(left) else math.inf
        case = {**d.describe(), "model": fault["model"], "rel_size": fault["rel_size"],
                "cell": list(fault["cell"]), "left_rel": left,
                "abft": {k: (info.extra.get("abft") or {}).get(k) for k in
                         ("corrected", "recomputed", "attempts")} if info else None}
        if detected and left > FLOOR_REL:
            log.unrepaired += 1
            log.case("unrepaired", case)
            name = d.product.name
            log.unrepaired_by_product[name] = log.unrepaired_by_product.get(name, 0) + 1
        elif left <= FLOOR_REL or not fault["significant"]:
            log.below_floor_escapes += 1  # what is left is below the guard's floor
            log.case("below_floor_escapes", case)

    @staticmethod
    def _detected(info, batch: int) -> list[bool]:
        """Whether the guard saw a fault, per product of the call (a batch's products are
        checked one by one: plan records each one's verdict)."""
        abft = (info.extra.get("abft") or {}) if info is not None else {}
        each = info.extra.get("abft_each") if info is not None else None
        if batch > 1 and each is not None:
            return [bool(x) for x in each]
        return [bool(abft.get("detected"))] * batch

    def _verify(self, d: Draw, ops: "wl.Operands | wl.Batch",
                outs: list[np.ndarray]) -> list[list[wl.Check]]:
        """The checks of each product of the call (a batch's one by one, each against its
        own float64 reference)."""
        items = ops.items if isinstance(ops, wl.Batch) else [ops]
        per = []
        for item, out in zip(items, outs):
            checks = [wl.verify_probe(item, out, d.alpha, d.beta, d.rel_tol)]
            if d.rows_check:
                checks.append(wl.verify_rows(item, out, d.alpha, d.beta, d.rel_tol, self.rng))
            for c in checks:
                if math.isfinite(c.ratio) and not d.inject:  # the bounds' use by clean results
                    self.log.ratio(d.contract, c.how, c.ratio)
            per.append(checks)
        return per

    def _wrong(self, d: Draw, checks: list[wl.Check], when: str) -> None:
        self.window.wrong_results += 1
        self.log.case("wrong_results", {**d.describe(), "when": when,
                                        "checks": [c.detail for c in checks if not c.ok]})

    # ---- faults ------------------------------------------------------------------------
    def _fault(self, d: Draw, ops: "wl.Operands | wl.Batch") -> list[dict]:
        """The fault for this call: model in turn, cell at random, its size on the clean
        product (computed first, unchecked, from numpy operands). One per product: the hook
        corrupts the same cell of every product of a batch, each judged on its own."""
        p = d.product
        model = self.opts.fault_models[self.fault_count % len(self.opts.fault_models)]
        self.fault_count += 1
        clean = self._clean_product(d, ops)
        hook, (fi, fj) = make_fault(self.rng, model, clean, p.m, p.n)
        # a row fault adds max|C| 1e-3 (1 + noise) to each cell of its row: nothing at all
        # where the call's clean product is all zeros (sparse data and a short K), which the
        # first soak-2 windows counted as whole-row misses above the floor
        void = model == "row" and not np.abs(clean).max()
        items = ops.items if isinstance(ops, wl.Batch) else [ops]
        out = []
        for t, (item, one) in enumerate(zip(items, list(clean) if p.batch > 1 else [clean])):
            acc = None
            if "cells" not in hook:  # the accumulator holds op(A) op(B) before alpha and beta
                c0 = float(item.C0[fi, fj]) if d.beta != 0.0 else 0.0
                acc = (float(one[fi, fj]) - d.beta * c0) / d.alpha
            delta = 0.0 if void else fault_delta(model, hook, one, fi, fj, d.alpha, acc)
            big = float(np.abs(one).max()) or 1.0
            rel = delta / big if math.isfinite(delta) else math.inf
            within = rel > FLOOR_REL and delta <= self._cell_bound(d, item, fi, fj)
            self.log.within_cell_bound += within
            out.append({"model": model, "hook": hook, "cell": (fi, fj), "clean": one,
                        "delta": delta, "rel_size": rel,
                        "significant": bool(rel > FLOOR_REL and not within), "applied": 0,
                        "index": t})
        return out

    @staticmethod
    def _cell_bound(d: Draw, ops: wl.Operands, i: int, j: int) -> float:
        """The float32 error bound the guard judges cell (i, j) of a tiny product by, (K + 4)
        u S_ij (guard/elementwise.py); 0 where the product is not judged cell by cell."""
        p = d.product
        if not EW.applies(p.m, p.n, p.k):
            return 0.0
        opa, opb = ops.op()
        mag = abs(d.alpha) * float(np.abs(opa[i].astype(np.float64)) @ np.abs(opb[:, j]))
        if d.beta != 0.0:
            mag += abs(d.beta) * abs(float(ops.C0[i, j]))
        return EW.gamma(p.k, True) * mag

    @staticmethod
    def _applied(fault: dict, out: np.ndarray, detected: bool) -> bool:
        """Whether the fault reached the product. The result hooks count their corruptions;
        the accumulator flag exists only in the float32 family's kernels, so there it is
        inferred: found, or the cell moved by half the fault or more."""
        if "cells" in fault["hook"]:
            return fault["applied"] > 0
        if detected:
            return True
        fi, fj = fault["cell"]
        moved = abs(float(out[fi, fj]) - float(fault["clean"][fi, fj]))
        return not math.isfinite(moved) or moved >= 0.5 * fault["delta"]

    @staticmethod
    def _stated_floor(info) -> float:
        """The call's stated floor (absolute): 0 where the call reports none (every fault
        over FLOOR_REL max|C| then counts)."""
        if info is None:
            return 0.0
        floor = (info.extra.get("abft") or {}).get("floor_abs")
        return float(floor) if floor is not None and math.isfinite(floor) else 0.0

    @staticmethod
    def _guard_view(info) -> dict:
        """What the guard judged a call by (kept with a missed fault: its T against the
        device's floor, the block rows, the lane), so that a miss can be read without a rerun."""
        if info is None:
            return {}
        v = info.extra.get("abft") or {}
        keep = ("threshold", "threshold_centred", "calibration", "block", "max_ratio",
                "max_rigorous_ratio", "lifted", "attempts", "floor_abs")
        return {"guard": {**{k: v.get(k) for k in keep}, "lane": info.extra.get("lane", "fp32"),
                          "schedule": info.schedule}}

    def _miss_case(self, d: Draw, fault: dict, info) -> dict:
        """A missed fault as kept in the artifact: the call, the fault, what the guard saw."""
        return {**d.describe(), "model": fault["model"], "cell": list(fault["cell"]),
                "rel_size": fault["rel_size"], **self._guard_view(info)}

    def _fault_outcome(self, d: Draw, fault: dict, detected: bool, applied: bool,
                       info=None) -> None:
        w = self.window
        m = self.log.faults_by_model.setdefault(fault["model"], {
            "injected": 0, "found": 0, "missed_above_floor": 0, "missed_below_floor": 0,
            "not_applied": 0})
        if not applied:
            w.not_applied += 1
            m["not_applied"] += 1
            return
        w.injected += 1
        m["injected"] += 1
        if detected:
            w.found += 1
            m["found"] += 1
        elif fault["significant"] and fault["delta"] <= self._stated_floor(info):
            w.missed_below_floor += 1
            w.missed_under_stated_floor += 1
            m["missed_below_floor"] += 1
            m["missed_under_stated_floor"] = m.get("missed_under_stated_floor", 0) + 1
            self.log.case("under_stated_floor", self._miss_case(d, fault, info))
        elif fault["significant"]:
            w.missed_above_floor += 1
            m["missed_above_floor"] += 1
            size = size_class(fault["rel_size"])
            self.log.missed_by_size[size] = self.log.missed_by_size.get(size, 0) + 1
            name = d.product.name
            self.log.missed_by_product[name] = self.log.missed_by_product.get(name, 0) + 1
            self.log.case("missed_faults", self._miss_case(d, fault, info))
        else:
            w.missed_below_floor += 1
            m["missed_below_floor"] += 1

    # ---- windows and the artifact ------------------------------------------------------
    def close_window(self, t0: float, t1: float, start: float) -> None:
        w = self.window
        warm = len(self.windows) < warmup_windows(self.planned) or bool(self.cover)
        index_num, index_s = 0.0, 0.0
        for key, (count, secs) in self.key_stats.items():
            if key not in self.ref_s and not warm:
                self.ref_s[key] = secs / count
            if key in self.ref_s:
                index_num += count * self.ref_s[key]
                index_s += secs
        self.key_stats.clear()
        wall = t1 - t0
        rss_raw = tel.host_rss_bytes()
        settled = tel.settle_host_heap()
        record = {
            "index": len(self.windows), "t_start_s": t0 - start, "t_end_s": t1 - start,
            **asdict(w),
            "gflops": w.flops / w.call_s / 1e9 if w.call_s > 0 else None,
            "products_per_s": w.calls / wall if wall > 0 else None,
            "mix_index": index_num / index_s if index_s > 0 else None,
            "rss_raw_bytes": rss_raw,
            "rss_bytes": tel.host_rss_bytes() if settled else rss_raw,
            "pool": tel.pool_bytes(self.rt),
            "host": tel.host_load(),
            "gpu": self.gpu.window(t0, t1),
            "cover_done": not self.cover,  # every allocation of the workload made by now
        }
        self.windows.append(record)
        self.total.add(w)
        self.window = Tally()
        if not self.opts.quiet:
            g = record["gflops"]
            print(f"soak window {record['index']}: {w.calls} products, "
                  f"{'-' if g is None else f'{g:.2f}'} GFLOPS, rss "
                  f"{record['rss_bytes'] / 2**20:.1f} MiB, faults {w.found}/{w.injected} found, "
                  f"{w.false_positives} false positives, {w.wrong_results} wrong, "
                  f"{w.errors} errors", file=sys.stderr, flush=True)

    def artifact(self, status: str, interrupted: str | None) -> dict:
        from ..bench.env import utc_now

        t, log = self.total, self.log
        self.data.update({
            "status": status, "complete": status == "complete", "interrupted": interrupted,
            "updated_utc": utc_now(),
            "windows": self.windows,
            "totals": {**asdict(t), "gflops": t.flops / t.call_s / 1e9 if t.call_s else None},
            "faults": {"injected": t.injected, "found": t.found,
                       "missed": t.missed_above_floor + t.missed_below_floor,
                       "missed_above_floor": t.missed_above_floor,
                       "missed_below_floor": t.missed_below_floor, "not_applied": t.not_applied,
                       "missed_under_stated_floor": t.missed_under_stated_floor,
                       "under_stated_floor_cases": log.cases["under_stated_floor"],
                       "missed_above_floor_by_size": log.missed_by_size,
                       "missed_above_floor_by_product": log.missed_by_product,
                       "fault_errors": log.fault_errors,
                       "below_floor_escapes": log.below_floor_escapes,
                       "within_cell_bound": log.within_cell_bound,
                       "unrepaired_above_floor": log.unrepaired,
                       "unrepaired_by_product": log.unrepaired_by_product,
                       "unrepaired_cases": log.cases["unrepaired"],
                       "by_model": log.faults_by_model, "missed_cases": log.cases["missed_faults"],
                       "below_floor_cases": log.cases["below_floor_escapes"]},
            "false_positives": {"count": t.false_positives, "clean_checked": t.clean_checked,
                                "cases": log.cases["false_positives"]},
            "wrong_results": {"count": t.wrong_results, "cases": log.cases["wrong_results"],
                              "worst_ratio": log.worst_ratio},
            "errors": {"count": t.errors, "by_type": log.errors_by_type,
                       "cases": log.cases["errors"]},
        })
        self.data["summary"] = summarize(self.windows)
        self.data["verdict"] = verdict(self.data)
        if status != "running":
            self.data["finished_utc"] = utc_now()
        return self.data

    def write(self, status: str = "running", interrupted: str | None = None) -> None:
        from ..bench.metrics import write_json

        write_json(self.opts.out, self.artifact(status, interrupted))

    def header(self, setup_s: float | None, reused: int | None) -> None:
        from ..bench.env import fingerprint, utc_now

        o = self.opts
        self.data = {
            "schema": SCHEMA, "status": "running", "complete": False, "interrupted": None,
            "created_utc": utc_now(), "updated_utc": utc_now(), "finished_utc": None,
            "command": self.argv, "env": fingerprint(self.dev, self.argv),
            "options": {"minutes": o.minutes, "window_s": o.window_s, "fault_rate": o.fault_rate,
                        "seed": o.seed, "traces": self.traces,
                        "fault_models": list(o.fault_models)},
            "workload": {
                "products": [asdict(p) for p in self.products], "reused_operands": reused,
                "contracts": dict(CONTRACTS), "rel_tols": list(REL_TOLS),
                "plan_share": PLAN_SHARE, "device_share": DEVICE_SHARE, "kinds": list(wl.KINDS),
                "floor_rel": FLOOR_REL,
                "floor": (f"{FLOOR_REL:g} max|C| or the call's stated floor (Info abft "
                          "floor_abs: twice its largest block-column tolerance), the larger; on "
                          f"products judged cell by cell (m n k <= {EW.TINY_WORK} or m n <= "
                          f"{EW.TINY_CELLS}) also the cell's float32 error bound (K + 4) 2^-24 "
                          "S_ij; misses over FLOOR_REL but within the stated floor are "
                          "counted apart (missed_under_stated_floor)"),
                "verification": {"probes": wl.PROBES, "sample_rows": wl.SAMPLE_ROWS,
                                 "rows_every": wl.FULL_EVERY, "fresh_limit": wl.FRESH_LIMIT,
                                 "exact_gamma": f"{wl.EXACT_GAMMA_FACTOR} (K + 16) 2^-24",
                                 "rel_tol_margin": wl.REL_TOL_MARGIN}},
            "setup_s": setup_s,
            "telemetry": {"host_rss": "VmRSS of /proc/self/status after gc and glibc's "
                                      "malloc_trim(0) (rss_bytes; rss_raw_bytes before)",
                          "device_memory": "clgemm's pools, the runtime's two and the guard's "
                                           "(managed_bytes, summed); NVML memory.used "
                                           "on NVIDIA",
                          "gpu_source": self.gpu.source, "gpu_reason": self.gpu.reason,
                          "gpu_period_s": o.smi_period_s},
            "warmup_share": WARMUP_SHARE, "memory_bar_pct": MEMORY_BAR_PCT,
        }

    def calibration(self) -> dict:
        """The guard's calibration this soak is judged under: the device's stored one, or one
        measured now (abft-calibrate's defaults, K octaves up to the workload's largest K)
        where none is stored and opts.calibrate is on; else the uncalibrated default, said."""
        from ..guard import abft
        from . import guard_campaign

        stored = abft.calibration_entry(self.rt)
        if stored:
            return {"source": "stored", "path": str(abft.calibration_path()), "c": stored.get("c"),
                    "floors": stored.get("floors")}
        if not self.opts.calibrate:
            return {"source": "none", "c": abft.DEFAULT_C, "floors": None}
        max_k = min(CALIBRATE_MAX_K, max(p.k for p in self.products))
        if not self.opts.quiet:
            print(f"soak: no guard calibration stored for {self.dev.name}: calibrating "
                  f"(K up to {max_k}; clgemm abft-calibrate)", file=sys.stderr, flush=True)
        t = time.perf_counter()
        r = guard_campaign.calibrate(device=self.opts.device, max_dim=256,
                                     max_k=max_k)
        return {"source": "calibrated at setup", "path": str(abft.calibration_path()),
                "seconds": time.perf_counter() - t, "c": r["c"], "floors": r["floors"],
                "max_k": r["max_k"]}

    def run(self) -> dict:
        o = self.opts
        status, why = "interrupted", None
        previous = signal.getsignal(signal.SIGTERM)
        previous_int = signal.getsignal(signal.SIGINT)
        received: list[int] = []

        def on_signal(signum, frame):
            # Raised where the main thread is, and also noted: an exception raised while it
            # runs a finalizer (a pooled buffer's __del__, a weakref callback) is printed and
            # dropped by Python, and the soak would go on to its end; the loop below stops at
            # its next step on the note.
            received.append(signum)
            raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()

        def stop_if_signalled() -> None:
            if received:
                raise KeyboardInterrupt() if received[0] == signal.SIGINT else Terminated()

        signal.signal(signal.SIGTERM, on_signal)
        if previous_int is signal.default_int_handler:  # not where SIGINT is ignored
            signal.signal(signal.SIGINT, on_signal)
        self.header(None, None)
        self.write()  # a valid artifact from the start, also if setup is cut off
        start = t0 = time.monotonic()
        try:
            t_setup = time.perf_counter()
            self.data["guard_calibration"] = self.calibration()
            self.write()
            self.data["workload"]["reused_operands"] = self.source.prepare(self.products)
            self.upload_reused()
            self.data["setup_s"] = time.perf_counter() - t_setup
            self.gpu.start()
            start = t0 = time.monotonic()
            end = start + 60.0 * o.minutes
            while True:
                stop_if_signalled()
                now = time.monotonic()
                if now >= min(t0 + o.window_s, end):
                    self.close_window(t0, now, start)
                    self.write()
                    t0 = now
                    if now >= end:
                        break
                self.step()
            status = "complete"
        except KeyboardInterrupt:
            why = "SIGINT"
        except Terminated:
            why = "SIGTERM"
        finally:
            # no second signal may tear the last write (the file on disk stays valid anyway)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.gpu.stop()
                if status != "complete":
                    now = time.monotonic()
                    if self.window.calls or self.window.errors:
                        self.close_window(t0, now, start)  # the partial window counts too
                self.write(status, why)
            finally:
                signal.signal(signal.SIGINT, previous_int)
                signal.signal(signal.SIGTERM, previous)
        return self.data


def validation_errors(data: dict) -> list[str] | None:
    """Violations of data/soak.schema.json (empty when valid); None without jsonschema."""
    import json
    from importlib import resources

    try:
        import jsonschema
    except ImportError:
        return None
    schema = json.loads((resources.files("clgemm") / "data" / "soak.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(data)]


# ---- the summary and the verdict (also of a partial artifact) --------------------------
def _slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    x, y = np.array(xs), np.array(ys)
    dx = x - x.mean()
    den = float((dx * dx).sum())
    return float((dx * (y - y.mean())).sum() / den) if den > 0 else None


GROWTH_SPAN = 3  # windows whose median is the baseline (the first) and the end (the last)


def _growth(values: list, warm: int) -> dict | None:
    """Growth after warm-up in percent: the median of the last GROWTH_SPAN windows against
    the median of the first GROWTH_SPAN from the end of the warm-up on (a leak shows as a
    trend across the run; one window's sample is noise of the moment it was taken), with
    the slope of a line through them all and the peak beside it."""
    vals = list(values)
    if len(vals) <= warm or any(v is None for v in vals[warm - 1:]):
        return None
    judged = [float(v) for v in vals[warm - 1:]]
    span = max(1, min(GROWTH_SPAN, len(judged) // 2))
    base = float(np.median(judged[:span]))
    if base <= 0:
        return None
    end = float(np.median(judged[-span:]))
    slope = _slope(list(range(len(judged))), judged)
    return {"baseline": base, "last": end, "peak": max(judged[1:]), "span_windows": span,
            "first_sample": judged[0], "last_sample": judged[-1],
            "growth_pct": 100.0 * (end - base) / base,
            "trend_pct": None if slope is None else 100.0 * slope * (len(judged) - 1) / base,
            "peak_growth_pct": 100.0 * (max(judged[1:]) - base) / base}


def _gpu_mean(window: dict, name: str):
    g = window.get("gpu") or {}
    v = g.get(name)
    return v["mean"] if v else None


def warmup_windows(n: int) -> int:
    """The first WARMUP_SHARE of n windows (at least one)."""
    return max(1, math.ceil(WARMUP_SHARE * n)) if n else 0


def summarize(windows: list[dict]) -> dict:
    """Throughput per window after warm-up (drift first to last, slope, CV), memory growth,
    the clocks beside the drift. The warm-up lasts WARMUP_SHARE of the windows, and at least
    until the window in which the cover (every allocation of the workload) was done."""
    n = len(windows)
    covered = next((i + 1 for i, w in enumerate(windows) if w.get("cover_done", True)), n)
    warm = max(warmup_windows(n), covered) if n else 0
    post = [w for w in windows[warm:] if w.get("gflops")]
    out: dict = {"windows": n, "warmup_windows": warm, "judged_windows": len(post)}
    if len(post) >= 2:
        g = [w["gflops"] for w in post]
        mins = [(w["t_start_s"] + w["t_end_s"]) / 120.0 for w in post]
        slope = _slope(mins, g)
        mean = float(np.mean(g))
        mix = [w["mix_index"] for w in post if w.get("mix_index")]
        out["throughput"] = {
            "gflops_first": g[0], "gflops_last": g[-1], "gflops_mean": mean,
            "drift_pct": 100.0 * (g[-1] / g[0] - 1.0) if g[0] else None,
            "slope_pct_per_hour": None if slope is None or not mean else 6000.0 * slope / mean,
            "cv": float(np.std(g) / mean) if mean else None,
            "products_per_s_mean": float(np.mean([w["products_per_s"] for w in post])),
            "mix_index_first": mix[0] if mix else None, "mix_index_last": mix[-1] if mix else None,
            "mix_index_cv": float(np.std(mix) / np.mean(mix)) if len(mix) >= 2 else None,
        }
        first, last = post[0], post[-1]
        out["clocks"] = {name: {"first": _gpu_mean(first, name), "last": _gpu_mean(last, name)}
                         for name in ("sm_mhz", "mem_mhz", "temp_c", "power_w")}
        for name in ("loadavg_1m", "cpu_mhz_mean"):
            out["clocks"][f"host_{name}"] = {"first": (first.get("host") or {}).get(name),
                                             "last": (last.get("host") or {}).get(name)}
        reasons = sorted({(w.get("gpu") or {}).get("throttle_reasons") for w in post} - {None})
        out["clocks"]["throttle_reasons_seen"] = reasons
    out["memory"] = {
        "rss": _growth([w["rss_bytes"] for w in windows], warm) if n else None,
        "pool_managed": _growth([w["pool"]["managed_bytes"] for w in windows], warm) if n else None,
        "gpu_used": _growth([_gpu_mean(w, "mem_used_mib") for w in windows], warm) if n else None,
    }
    return out


def verdict(data: dict) -> dict:
    """The issue's bars: 0 missed faults above the floor, 0 false positives, 0 crashes (no
    exception, no wrong result), memory growth under 1% after warm-up; drift reported."""
    s, f = data["summary"], data["faults"]
    mem = s["memory"]
    bars = {
        "missed_above_floor": f["missed_above_floor"] == 0,
        "unrepaired_above_floor": f["unrepaired_above_floor"] == 0,
        "false_positives": data["false_positives"]["count"] == 0,
        "errors": data["errors"]["count"] == 0,
        "wrong_results": data["wrong_results"]["count"] == 0,
        "faults_exercised": f["injected"] > 0 or data["options"]["fault_rate"] == 0,
    }
    for name in ("rss", "pool_managed", "gpu_used"):
        g = mem.get(name)
        if g is not None:
            bars[f"{name}_growth_under_{MEMORY_BAR_PCT:g}pct"] = g["growth_pct"] < MEMORY_BAR_PCT
    memory_judged = mem.get("rss") is not None
    return {"bars": bars, "memory_judged": memory_judged,
            "drift_reported": "throughput" in s,
            "pass": all(bars.values()) and memory_judged}
