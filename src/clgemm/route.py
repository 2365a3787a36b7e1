"""Where a product goes: the one module that chooses its lane.

`plan()` decides once per (shape, layout, contract, device) and returns a `Plan`, kept by the
runtime: the exact contract's lane (3xTF32 over K slices for few rows against a large
operand where the device table's tensorcore.rows serves the shape; the small-rows lane for
products with m or n up to MAX_ROWS, or to the table's stack_rows where the large operand is
stored along K; 3xTF32 on the tensor cores where the device table promoted it, the float32
family split over K where its grid would leave most compute units idle (CLGEMM_SPLITK=0
switches it off; 3xTF32 split over K from K = TC_SPLITK_MIN_K where one launch of the
promoted 3xTF32 lane would leave them idle, CLGEMM_TC_SPLITK=0 switches it off), else the
float32 family), the station the call passes (ABFT for check=True, the approximate methods
under rel_tol, TF32 judged on the device first where it serves the budget, the online
selector), and why.
"""

from __future__ import annotations

import os

from .approx.contract import tensor_cores_serve
from .kernels import wgmma
from .kernels.gemv import MAX_ROWS
from .kernels.tensorcore import TcSchedule
from .lanes.fp32 import Fp32Lane, alternative_schedule, choose_schedule, lane_for
from .lanes.gemv import GemvLane, device_schedule, fits, large_along_k
from .lanes.probe import tensorcore_available, wgmma_support
from .lanes.splitk import SplitKLane, TcSplitKLane, splitk_plan, tc_slices
from .lanes.tc import schedule_for, wgmma_3x_schedule
from .lanes.tc_batched import TcBatchedLane
from .lanes.tc_exact import TcExactLane
from .plan import Contract, Plan, PlanKey
from .runtime import Runtime
from .select import table as tables


# ---- the plan of a product --------------------------------------------------------------
def plan(rt: Runtime, key: PlanKey) -> Plan:
    """The plan for `key` on this runtime, decided on first use and then looked up."""
    found = rt.plans.get(key)
    if found is None:
        found = rt.plans.put(key, _decide(rt, key))
    return found


def _decide(rt: Runtime, key: PlanKey) -> Plan:
    if key.batch is not None:
        return _decide_batch(rt, key)
    m, n, k = key.m, key.n, key.k
    contract = key.contract
    table_note = _table_note(rt)
    if key.schedule is not None:
        chosen, why = choose_schedule(rt, m, n, k, key.schedule), "schedule= given by the caller"
    else:
        chosen, why = choose_schedule(rt, m, n, k), f"float32 family from {table_note}"
    fp32 = lane_for(rt, chosen)
    exact = fp32
    # (a checked product keeps the float32 family: the guard recomputes with its kernels)
    rows = device_schedule(rt)
    static = key.schedule is None and key.selector == "static"
    small = (static and not contract.check
             and 0 < min(m, n) <= max(MAX_ROWS, _stackable(rows, m, n, key)))
    tc_rows = tc_rows_lane(rt, m, n, k, key.trans_a) if static and not contract.check else None
    if tc_rows is not None:
        exact = tc_rows
        why = (f"{exact.name}: {m} rows against a {n}x{k} operand on 3xTF32 with tiles of "
               f"{exact.schedule.block_m} rows ({table_note}: tensorcore.rows); "
               f"{exact.note(m, n, k, key.trans_a, key.trans_b)}; the float32 family "
               f"({chosen.key()}) backs the stations (CLGEMM_TC_ROWS=0 switches it off)")
    elif small and fits(rt, rows):
        exact = rt.cached("gemv lane", lambda: GemvLane(rt))
        stacked = (f" in blocks of {MAX_ROWS} (one launch, the large operand shared)"
                   if min(m, n) > MAX_ROWS else "")
        why = (f"gemv: {min(m, n)} row(s) or column(s){stacked}, the large operand streamed once"
               f"{exact.kernel_note(m, n, key.trans_a, key.trans_b)}; the "
               f"float32 family ({chosen.key()}) backs the stations")
    elif key.schedule is None and key.selector == "static":
        tc = exact_lane(rt, m, n, k, fp32)
        tc_split = tc_splitk_lane(rt, m, n, k) if tc is None else None
        split = splitk_plan(rt, chosen, m, n, k) if tc is None and tc_split is None else None
        if tc_split is not None:
            exact = tc_split
            why = (f"{exact.name}: the exact lane {table_note} promoted (3xTF32) would leave "
                   f"most compute units idle on {m}x{n}; "
                   f"{exact.note(m, n, k, key.trans_a, key.trans_b)}; the float32 family "
                   f"({chosen.key()}) backs the stations (CLGEMM_TC_SPLITK=0 switches it off)")
        elif tc is not None:
            exact = tc
            promoted = tables.load_table(rt.device).tensorcore
            since = f", from {promoted.min_flops:.3g} flops" if promoted is not None else ""
            why = (f"{tc.name}: the exact lane {table_note} promoted through the gate{since}; "
                   f"the float32 family ({chosen.key()}) recomputes a non-finite output")
        elif split is not None:
            exact = rt.cached(("splitk lane", split), lambda: SplitKLane(rt, split))
            why = (f"{exact.name}: the float32 family ({chosen.key()}, {table_note}) would "
                   f"leave most compute units idle on {m}x{n}; "
                   f"{exact.note(m, n, k, key.trans_a, key.trans_b)}")
    note = fp32.note(m, n, k, key.trans_a, key.trans_b) if exact is fp32 else ""
    if note:
        why += "; " + note
    judged = False
    if contract.check:
        station = "abft"
        why += "; checked by ABFT checksums (check=True)"
    elif contract.rel_tol is not None:
        station = "approx"
        why += f"; approximate methods under rel_tol={contract.rel_tol:g}, exact as fallback"
        judged = tensor_cores_serve(rt, contract.rel_tol) and fits(rt, rows)
        if judged:
            why += ("; TF32 first, judged on the device (16 Gaussian probes): where its "
                    "estimate misses the budget the float32 family's product replaces it there")
    elif key.selector == "online":
        station = "online"
        why = "the online selector picks among the table's schedules on each call"
    else:
        station = "exact"
    return Plan(key=key, device=rt.device.name, station=station, lane=exact, fallback=fp32,
                alternative=alternative_schedule(rt, chosen), why=why, rt=rt, judged=judged)


def _stackable(rows, m: int, n: int, key: PlanKey) -> int:
    """The most rows the small-rows lane takes as blocks of MAX_ROWS (GemvSchedule.stack_rows,
    0 unless the device's table sets it): only where the large operand is stored along K
    (the dot kernels). Stored K x N (the axpy kernel) the blocks lost on an H200: 32 x 4096 x
    4096 NN in 214 us against 115 on 3xTF32 split over K, where stored N x K they won 1.09-
    4.67x (records/nvidia-h200/2026-12-07-stacked-rows)."""
    return rows.stack_rows if large_along_k(m, n, key.trans_a, key.trans_b) else 0


def _decide_batch(rt: Runtime, key: PlanKey) -> Plan:
    """A batch: the exact contract runs one launch for every product (the small-rows lane's
    kernel, 3xTF32's batched kernel where tc_batched_lane says so, else the float32
    family's); a station (check=True, rel_tol, the online selector) takes the products one
    at a time through the plan of one of them."""
    one = plan(rt, key._replace(batch=None))
    # the small-rows lane batches as it is (but see BATCH_ROWS_FP32); 3xTF32 has a batched
    # kernel (where tc_batched_lane takes the batch); the other tensor-core lanes have none, so
    # a batch of products they would serve runs the float32 family's
    lane = (one.lane if isinstance(one.lane, GemvLane) and min(key.m, key.n) <= MAX_ROWS
            and not _rows_batch_to_fp32(one.lane, key.m, key.n, key.trans_a, key.trans_b)
            else one.fallback)  # (a stacked product of more rows is a batch of its own)
    if key.contract == Contract() and key.selector == "static":
        station, matrix_plan = "exact", None
        tc = (tc_batched_lane(rt, key.batch, key.m, key.n, key.k)
              if lane is one.fallback and key.schedule is None else None)
        lane = tc or lane
        what = ("the small-rows lane" if lane is one.lane and lane is not one.fallback
                else "3xTF32's batched kernel" if tc is not None
                else "the float32 family's batched kernel")
        why = (f"a batch of {key.batch}: one launch of {what} ({lane.schedule.key()}, "
               f"as one product of the batch from {_table_note(rt)})")
        note = (lane.note(key.m, key.n, key.k, key.trans_a, key.trans_b)
                if lane is one.fallback else "")
        if note:
            why += "; " + note
    else:
        station, matrix_plan = "each", one
        why = (f"a batch of {key.batch} under the {one.station} station: product by product "
               f"through the plan of one ({one.lane.name})")
    return Plan(key=key, device=rt.device.name, station=station, lane=lane,
                fallback=one.fallback, alternative=one.alternative, why=why, rt=rt,
                matrix_plan=matrix_plan)


# A batch of products with this many rows (or columns) runs the float32 family's batched
# kernel, not the small-rows lane's dot kernels (the GPU form; a CPU's small-rows lane runs the
# float32 family's direct kernel from 2 rows anyway), where the large operand is stored along
# K (the dot kernels' layout: attention's scores, Q K^T). The plan campaign's `batched_lanes`
# (records/nvidia-h200/2026-12-07-plan-traces, records/nvidia-h100/2026-12-07-plan-traces-2
# and the H100's later run): decode attention, 32 heads of 16 x 1024 x 128 / 64 and
# 16 x 128 / 64 x 1024, ran 11.1-17.0 us on the float32 family's batched kernel against
# 29.2-32.1 on the small-rows lane, and 39.6-39.9 against 58.0-58.8; single rows stay (the
# small-rows lane 22.7-30.5 us against 40.4-41.3 where B is stored K x N). Since then the
# dot kernels caught up on the scores (16.7 against 18.0 us at 16 x 1024 x 128, 12.1 against
# 13.4 at 16 x 1024 x 64: the rule still holds there), and with the axpy kernel's measured
# launch shapes (the H100 table's gemv fields) the context, P V with V stored K x N, runs
# 33.2-34.7 us on the small-rows lane against 40.0-40.4 on the float32 family's
# (records/nvidia-h100/2026-12-07-plan-traces-6): that layout keeps the small-rows lane. Rows
# from 2 to 15 were not measured: they keep the small-rows lane.
BATCH_ROWS_FP32 = 16


def _rows_batch_to_fp32(lane: GemvLane, m: int, n: int, trans_a: bool, trans_b: bool) -> bool:
    return (not lane.schedule.direct_rows and min(m, n) >= BATCH_ROWS_FP32
            and large_along_k(m, n, trans_a, trans_b))


def _table_note(rt: Runtime) -> str:
    table = tables.load_table(rt.device)
    return f"the table {table.source!r}"


# ---- the tensor-core lanes --------------------------------------------------------------
def _promoted_3x(rt: Runtime):
    """The device table's tensor-core lane where 3xTF32 serves the exact contract there and
    may here (promoted by the gate, not switched off by CLGEMM_EXACT_LANE=fp32, the probe
    passed), else None."""
    if os.environ.get("CLGEMM_EXACT_LANE", "").lower() == "fp32":
        return None
    lane = tables.load_table(rt.device).tensorcore
    if lane is None or lane.exact != "3xtf32" or not tensorcore_available(rt):
        return None
    return lane


def exact_schedule(rt: Runtime, m: int, n: int, k: int) -> "TcSchedule | wgmma.WgSchedule | None":
    """The 3xTF32 schedule that serves the exact contract (rel_tol=None) on this device, or
    None: the float32 family serves. 3xTF32 serves only where the device table says the gate
    promoted it (`tensorcore.exact`), for products of at least the table's `min_flops`, where
    the capability probe passes and CLGEMM_EXACT_LANE is not "fp32" (the switch back to the
    float32 family). The wgmma 3xTF32 kernel serves instead where the table names it
    (`exact_kernel`, set where the gate promoted it over mma.sync) and its own probe passes."""
    if min(m, n, k) == 0 or 2.0 * m * n * k < _min_flops(rt):
        return None
    lane = _promoted_3x(rt)
    if lane is None:
        return None
    wg = wgmma_exact_schedule(rt, m, n) if lane.exact_kernel == "wgmma" else None
    s = wg or schedule_for(rt, "3xtf32", m, n, k)
    return s if one_launch_fits(m, n, k, s.block_m, s.block_n, rt.device.compute_units) else None


def one_launch_fits(m: int, n: int, k: int, block_m: int, block_n: int,
                    compute_units: int) -> bool:
    """The tile rules of 3xTF32's one launch with block_m x block_n tiles (the three rules
    below): tiles for at least MIN_TILES_PER_UNIT of the units, mostly output, and a K of at
    least TC_MIN_K. The campaigns' verdicts (benchmarks/plan) judge with this same test."""
    tiles = (-(-m // block_m)) * (-(-n // block_n))
    return (tiles >= MIN_TILES_PER_UNIT * compute_units
            and m * n >= MIN_TILE_FILL * tiles * block_m * block_n and k >= TC_MIN_K)


# The 3xTF32 lane takes a product only where its output tiles number at least half the
# compute units: with fewer, its large tiles leave most units idle while the float32 family's
# smaller ones spread over them. On the H100 (132 units, 128 x 128 tiles; records/nvidia-h100/
# 2026-12-06-model-suite/lane-change.json): 512x2048x5632 (64 tiles) 477 us against the float32
# family's 384, 1568x512x4608 (52) 388 against 286; 6272x256x2304 (98) 206 against 252,
# 512x5632x2048 (176) 309 against 385. Per-class tables (the tuner's shape classes) are to
# replace this rule.
MIN_TILES_PER_UNIT = 0.5

# ... and only where its tiles are mostly output, not padding: an output 64 wide fills half of
# each 128-wide tile, and there the float32 family's narrower tiles won on the H200
# (records/nvidia-h200/2026-12-07-plan-traces, trace_lanes: ResNet-50's 401408 x 64 x 147
# at 0.72x and 100352 x 64 x 576 at 0.87x the float32 family's speed, while every product the
# tiles filled ran 1.19-1.60x); on the H100 the same two products ran 3xTF32 at 1.91x and
# 1.58x torch's time (records/nvidia-h100/2026-12-07-plan-traces).
MIN_TILE_FILL = 0.75


# ... and only from this K on: the lane's K pipeline (16 deep, two stages) barely starts on a
# shorter one. On the H100 (records/nvidia-h100/2026-12-07-plan-traces-4, trace_lanes, chained
# wall) 100352 x 256 x 64 ran 3xTF32 at 0.90x the float32 family's speed, 25088 x 512 x 128 at
# 1.19x; between 3.3 and 4.8 GFLOP every product the tile rules admit with K from 128 won
# 1.08-1.47x (benchmarks/plan/lane_verdict.py, `tc_one_launch`).
TC_MIN_K = 128


def _min_flops(rt: Runtime) -> float:
    lane = tables.load_table(rt.device).tensorcore
    return lane.min_flops if lane is not None else float("inf")


# Split over K, 3xTF32 serves products from here on where its one launch would leave most
# units idle (the tile rule above), below the table's min_flops too: that floor was set on
# squares, whose one launch filled the device.
TC_SPLITK_MIN_FLOPS = 1e9

# ... and only from this K on. The H200's lane verdict (records/nvidia-h200/2026-12-07-plan-
# traces, verdict.txt: 3xTF32 split over K against the faster one-launch lane, chained wall)
# rejected the lane as a whole for BERT's 1024 x 768 x 768 (0.75x and 0.85x) and 768 x 768 x
# 1024 (0.99x), where K holds two slices at most; every product with K from 2048 up gained,
# 1.16x (1024 x 768 x 2304) to 6.25x (256 x 256 x 11008), on 10 of 10. On by default from
# that split (CLGEMM_TC_SPLITK=0 switches it off); the plan campaign's verdict re-judges the
# rule on every card it runs on (benchmarks/plan/lane_verdict.py reads this constant).
TC_SPLITK_MIN_K = 2048


def tc_splitk_lane(rt: Runtime, m: int, n: int, k: int) -> "TcSplitKLane | None":
    """3xTF32 over K slices for a product the one-launch lane would leave underfilled, where
    the device promoted 3xTF32, the product has at least TC_SPLITK_MIN_FLOPS and K at least
    TC_SPLITK_MIN_K, and CLGEMM_TC_SPLITK is not 0; None otherwise."""
    if os.environ.get("CLGEMM_TC_SPLITK", "") == "0" or min(m, n) == 0 or k < TC_SPLITK_MIN_K:
        return None
    if 2.0 * m * n * k < TC_SPLITK_MIN_FLOPS or _promoted_3x(rt) is None:
        return None
    s = schedule_for(rt, "3xtf32", m, n, k)
    tiles = (-(-m // s.block_m)) * (-(-n // s.block_n))
    if tiles >= MIN_TILES_PER_UNIT * rt.device.compute_units:
        return None
    slices = tc_slices(rt, s, m, n, k)
    if slices <= 1:
        return None
    return rt.cached(("3xtf32 splitk lane", s, slices), lambda: TcSplitKLane(rt, s, slices))


def tc_rows_lane(rt: Runtime, m: int, n: int, k: int, trans_a: bool) -> "TcSplitKLane | None":
    """3xTF32 over K slices for a product of few rows against a large operand, where the
    device promoted 3xTF32 and its table's tensorcore.rows serves the shape (TcRows: on an
    H100, 16 x 11008 x 4096 ran 1.52x the small-rows lane's speed and 1.22x torch's,
    records/nvidia-h100/2026-12-07-tc-rows) and CLGEMM_TC_ROWS is not 0; None otherwise."""
    lane = _promoted_3x(rt) if os.environ.get("CLGEMM_TC_ROWS", "") != "0" else None
    rule = lane.rows if lane is not None else None
    if rule is None or not rule.serves(m, n, k, trans_a):
        return None
    s = rule.schedule
    slices = tc_slices(rt, s, m, n, k)
    return rt.cached(("3xtf32 rows lane", s, slices), lambda: TcSplitKLane(rt, s, slices))


# A batch from here on (its products' flops together) may take 3xTF32's batched kernel,
TC_BATCH_MIN_FLOPS = 1e9

# ... where every dimension of its products is at least this: the lane verdicts of two cards
# (records/nvidia-h200/2026-12-07-plan-traces and records/nvidia-h100/2026-12-07-plan-traces-2,
# `batched_lanes`: 3xTF32's batched kernel against the route's lane, attention batches of 32)
# timed it 1.38-1.48x on 512 x 512 x 128 and 512 x 128 x 512, 1.00-1.06x on 512 x 512 x 64 and
# 0.84x on 512 x 64 x 512: a dimension of 64 half fills its 128-wide tiles (or its K pipeline).
# On by default from that split (CLGEMM_TC_BATCH=0 switches it off); the verdict re-judges it.
TC_BATCH_MIN_DIM = 128


def tc_batched_lane(rt: Runtime, batch: int, m: int, n: int, k: int) -> "TcBatchedLane | None":
    """3xTF32's batched lane for a batch of products where the device promoted 3xTF32, the
    batch has at least TC_BATCH_MIN_FLOPS, every dimension is at least TC_BATCH_MIN_DIM and
    CLGEMM_TC_BATCH is not 0; None otherwise (the small-rows lane, or the float32 family's
    batched kernel, serves)."""
    if os.environ.get("CLGEMM_TC_BATCH", "") == "0" or batch == 0:
        return None
    if min(m, n, k) < TC_BATCH_MIN_DIM:
        return None
    if 2.0 * batch * m * n * k < TC_BATCH_MIN_FLOPS or _promoted_3x(rt) is None:
        return None
    s = schedule_for(rt, "3xtf32", m, n, k)
    return rt.cached(("3xtf32 batched lane", s), lambda: TcBatchedLane(rt, s))


def exact_lane(rt: Runtime, m: int, n: int, k: int, fallback: Fp32Lane) -> TcExactLane | None:
    """The tensor-core lane that serves the exact contract for this shape, or None."""
    s = exact_schedule(rt, m, n, k)
    if s is None:
        return None
    return rt.cached(("3xtf32 lane", s, fallback.schedule), lambda: TcExactLane(rt, s, fallback))


def wgmma_exact_schedule(rt: Runtime, m: int, n: int) -> "wgmma.WgSchedule | None":
    """The 3xTF32 wgmma schedule for the exact lane on this device, or None (the mma.sync
    3xTF32 kernel serves): its probe passed. Any layout goes: both operands are split into
    K-major scratch anyway."""
    return wgmma_3x_schedule(rt, m, n) if wgmma_support(rt, 3).available else None
