"""3xTF32 for decode's few-row products (select.table.TcRows, route.tc_rows_lane): tiles of 16
rows over K slices. The rule as the table states it, the route's choice, and the kernel's
results on the CPU device (its PTX emulated) against float64 through the lane and through
the plan, at odd shapes, both layouts of B, alpha and beta; on an NVIDIA card the shipped
table's rule through matmul."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from types import SimpleNamespace

import numpy as np
import pyopencl as cl
import pytest

import clgemm
from clgemm.errors import ScheduleError
from clgemm.kernels.tensorcore import TcSchedule
from clgemm.lanes.splitk import TcSplitKLane
from clgemm.operands import Operand
from clgemm.runtime import get_runtime
from clgemm.select import table as tables
from conftest import (assert_close_to_reference, emulate_tensor_cores, nvidia_tc_runtime,
                      rand, reference)

# small tiles of 16 rows: PoCL compiles the emulated kernel in seconds
SMALL = TcSchedule.from_key("tc-3xtf32-b16x16x16-w1x2-s2-f3-a1-r1")
RULE = tables.TcRows(SMALL, min_rows=9, max_rows=32, min_weights=1 << 14)


def _skip_on_gpus(rt) -> None:
    if rt.device.type == "GPU":  # the emulation's stand-ins race between a GPU's warps
        pytest.skip("the emulated tensor-core kernels are for CPU devices")


def test_the_rule_round_trips_and_refuses_what_it_cannot_serve():
    data = RULE.to_json()
    assert tables.TcRows.from_json(data, "test") == RULE
    assert RULE.serves(16, 4096, 4096, False) and RULE.serves(9, 128, 128, False)
    assert not RULE.serves(8, 4096, 4096, False) and not RULE.serves(33, 4096, 4096, False)
    assert not RULE.serves(16, 4096, 4096, True)  # op(A) stored along M: not measured
    assert not RULE.serves(16, 100, 100, False)  # under min_weights
    for broken in ({**data, "min_rows": 0}, {**data, "max_rows": 4, "min_rows": 8},
                   {k: v for k, v in data.items() if k != "schedule"}):
        with pytest.raises(ScheduleError):
            tables.TcRows.from_json(broken, "test")


def test_the_h100_table_ships_its_campaigns_rule():
    """The H100 table's rule names its campaign and covers what it measured winning (16 x
    11008 x 4096 against a weight stored N x K) and not what it measured losing (16 x 2048
    x 2048, one row)."""
    text = resources.files("clgemm").joinpath("data/tables/nvidia-h100-80gb-hbm3.json")
    lane = tables.TcLane.from_json(json.loads(text.read_text())["tensorcore"], "h100")
    rule = lane.rows
    assert rule is not None and rule.evidence["artifact"].startswith("records/nvidia-h100/")
    assert rule.schedule.block_m == 16 and rule.serves(16, 11008, 4096, False)
    assert not rule.serves(16, 2048, 2048, False) and not rule.serves(1, 11008, 4096, False)
    assert lane.to_json()["rows"] == rule.to_json()


def test_the_route_takes_the_rows_lane_only_where_the_rule_serves(monkeypatch):
    from clgemm import route

    rt = SimpleNamespace(device=SimpleNamespace(compute_units=132),
                         cached=lambda key, build: build())
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: SimpleNamespace(rows=RULE))
    monkeypatch.delenv("CLGEMM_TC_ROWS", raising=False)
    lane = route.tc_rows_lane(rt, 16, 11008, 4096, False)
    assert isinstance(lane, TcSplitKLane) and lane.schedule == SMALL and lane.slices >= 1
    assert route.tc_rows_lane(rt, 8, 11008, 4096, False) is None
    assert route.tc_rows_lane(rt, 16, 11008, 4096, True) is None
    assert route.tc_rows_lane(rt, 16, 64, 64, False) is None
    monkeypatch.setenv("CLGEMM_TC_ROWS", "0")
    assert route.tc_rows_lane(rt, 16, 11008, 4096, False) is None
    monkeypatch.delenv("CLGEMM_TC_ROWS")
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: SimpleNamespace(rows=None))
    assert route.tc_rows_lane(rt, 16, 11008, 4096, False) is None
    monkeypatch.setattr(route, "_promoted_3x", lambda rt: None)
    assert route.tc_rows_lane(rt, 16, 11008, 4096, False) is None


@pytest.mark.parametrize("m,n,k,tb,alpha,beta", [(16, 200, 700, True, 1.0, 0.0),
                                                  (13, 77, 301, False, 1.5, 0.5),
                                                  (32, 90, 515, True, -0.75, 0.0),
                                                  (1, 130, 257, True, 1.0, -1.0)])
def test_the_rows_kernel_against_float64(rng, monkeypatch, m, n, k, tb, alpha, beta):
    """Tiles of 16 rows over three K slices: C poisoned where beta = 0, a C wider than its
    rows (ldc > n), within twice numpy float32's error."""
    rt = get_runtime()
    _skip_on_gpus(rt)
    emulate_tensor_cores(monkeypatch, rt)
    A, B = rand(rng, (m, k)), rand(rng, (n, k) if tb else (k, n))
    ldc = n + 3
    C0 = rand(rng, (m, ldc))
    if beta == 0.0:
        C0[:, :n] = np.nan
    bufs = [cl.Buffer(rt.context, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR,
                      hostbuf=x) for x in (A, B, C0)]
    ops = (Operand(bufs[0], 0, k, False), Operand(bufs[1], 0, k if tb else n, tb),
           Operand(bufs[2], 0, ldc, False))
    TcSplitKLane(rt, SMALL, 3).enqueue(m, n, k, alpha, beta, *ops, rt.queue).wait()
    out = np.empty_like(C0)
    cl.enqueue_copy(rt.queue, out, bufs[2], is_blocking=True)
    ref, np_err = reference(A, B, np.ascontiguousarray(C0[:, :n]), alpha, beta, trans_b=tb)
    assert_close_to_reference(out[:, :n], ref, np_err)
    assert np.array_equal(out[:, n:], C0[:, n:])  # past n: untouched


def test_matmul_takes_the_rows_lane_where_the_table_rule_serves(rng, monkeypatch):
    """A device whose table promoted 3xTF32 with a rows rule: matmul of 16 rows against a
    weight stored N x K runs the rows lane (the plan says why), on numpy and on device arrays
    (the hot path, replayed on the second call), right against float64; 8 rows keep the
    small-rows lane."""
    rt = get_runtime()
    _skip_on_gpus(rt)
    emulate_tensor_cores(monkeypatch, rt)
    own = tables.load_table(rt.device)
    lane = tables.TcLane(modes={}, defaults={}, exact="3xtf32", rows=RULE)
    promoted = dataclasses.replace(own, tensorcore=lane)
    monkeypatch.setattr(tables, "load_table", lambda device, path=None: promoted)
    m, n, k = 16, 150, 333
    p = clgemm.plan(m, n, k, trans_b=True)
    assert isinstance(p.lane, TcSplitKLane) and p.lane.schedule == SMALL, p.why
    assert "tensorcore.rows" in p.why
    assert not isinstance(clgemm.plan(8, n, k, trans_b=True).lane, TcSplitKLane)
    A, B = rand(rng, (m, k)), rand(rng, (n, k))
    ref, np_err = reference(A, B, trans_b=True)
    assert_close_to_reference(clgemm.matmul(A, B, trans_b=True), ref, np_err, "numpy")
    a, b = clgemm.to_device(A), clgemm.to_device(B)
    for call in range(2):
        c = clgemm.to_device(np.full((m, n), np.nan, np.float32))
        clgemm.matmul(a, b, C=c, trans_b=True)
        assert_close_to_reference(c.get(), ref, np_err, f"device arrays, call {call}")


def test_nvidia_rows_lane_through_matmul(rng):
    """On an NVIDIA card whose table has the rows rule: a decode product it serves, through
    matmul on device arrays, within twice numpy float32's error; an Inf in A propagates as
    numpy's float32 does."""
    rt = nvidia_tc_runtime()
    rule = getattr(tables.load_table(rt.device).tensorcore, "rows", None)
    if rule is None:
        pytest.skip("this card's table has no rows rule")
    m, n, k = rule.min_rows, 11008, 4096
    p = clgemm.plan(m, n, k, trans_b=True, device=rt.device)
    assert isinstance(p.lane, TcSplitKLane), p.why
    A, B = rand(rng, (m, k)), rand(rng, (n, k))
    ref, np_err = reference(A, B, trans_b=True)
    a, b = (clgemm.to_device(x, device=rt.device) for x in (A, B))
    assert_close_to_reference(clgemm.matmul(a, b, trans_b=True).get(), ref, np_err)
    A[3, k - 5] = np.inf
    got = clgemm.matmul(clgemm.to_device(A, device=rt.device), b, trans_b=True).get()
    with np.errstate(invalid="ignore", over="ignore"):
        want = A @ B.T
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))
