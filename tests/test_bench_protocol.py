"""The protocol's arithmetic on known numbers."""

import math

import pytest

from clgemm.bench.protocol import cv, gflops, kendall_tau, median, reproducibility, summarize_times
from clgemm.bench.suites import cases, is_kpi, parse_shape


def test_gflops_known():
    assert gflops(1000, 1000, 1000, 1.0) == pytest.approx(2.0)
    assert gflops(2048, 2048, 2048, 2 * 2048**3 / 1e12) == pytest.approx(1000.0)
    assert gflops(10, 10, 10, 0.0) == 0.0


def test_median_and_cv():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        median([])
    assert cv([5.0]) == 0.0
    assert cv([2.0, 2.0, 2.0]) == 0.0
    # sample std of (1, 2, 3) is 1, mean 2
    assert cv([1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert cv([10.0, 12.0]) == pytest.approx(math.sqrt(2) / 11)


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swapped pair of 6: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    # tau-b with a tie in y: C=5 D=0 ties_y=1 -> 5 / sqrt(6 * 5)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 3]) == pytest.approx(5 / math.sqrt(30))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])


def test_reproducibility_score():
    a = {"s1": 10.0, "s2": 20.0, "s3": 30.0}
    b = {"s1": 11.0, "s2": 19.0, "s3": 31.0}
    c = {"s1": 30.0, "s2": 20.0, "s3": 10.0}
    r = reproducibility([a, b, c])
    assert r["pairs"] == 3
    assert r["kendall_tau"] == pytest.approx([1.0, -1.0, -1.0])
    assert r["score"] == pytest.approx(-1 / 3)
    assert reproducibility([a])["score"] is None


def test_summarize_times():
    s = summarize_times([0.002, 0.001, 0.004], 100, 100, 100, "opencl-event")
    assert s["min_s"] == 0.001 and s["median_s"] == 0.002
    assert s["gflops_peak"] == pytest.approx(2.0)
    assert s["gflops_median"] == pytest.approx(1.0)
    assert s["repeats"] == 3


def test_suites_and_shapes():
    kpi = cases("kpi")
    assert [c.shape for c in kpi] == [(1400,) * 3, (2048,) * 3, (3072,) * 3]
    assert all(is_kpi(c.shape) for c in kpi)
    assert parse_shape("1024x512x256") == (1024, 512, 256)
    assert parse_shape("77") == (77, 77, 77)
    for bad in ("1x2", "0x4x4", "ax2x3"):
        with pytest.raises(ValueError):
            parse_shape(bad)
    small = cases("shapes", "100x50x25,64", scale=1 / 16)
    tags = {c.tag for c in small}
    assert {"rectangular", "tall-skinny", "small", "odd", "user"} <= tags
    odd = [c for c in small if c.tag == "odd"]
    assert all(d % 2 for c in odd for d in c.shape)  # odd stays odd when scaled
    assert len({c.shape for c in small}) == len(small)
    with pytest.raises(ValueError):
        cases("nope")


def test_accuracy_block_detects_unwritten_and_measures_error():
    import numpy as np

    from clgemm.bench.inputs import InputSets

    inputs = InputSets(32, 24, 16, 2, np.random.default_rng(1))
    a, b = inputs.sets[0]
    assert (a != 0).all() and a.dtype == np.float32 and len(inputs) == 2
    exact = inputs.reference.astype(np.float32)
    good = inputs.accuracy(exact)
    assert good["all_written"] and good["unwritten"] == 0
    assert good["rel_frobenius_error"] < 1e-7  # float64 rounded once to float32
    off = exact.copy()
    off[3, 4] += 0.5
    worse = inputs.accuracy(off)
    assert worse["max_abs_error"] == pytest.approx(0.5 + abs(float(exact[3, 4]) - inputs.reference[3, 4]), abs=1e-6)
    assert worse["ratio_to_numpy"] > 10
    poisoned = exact.copy()
    poisoned[-1, -1] = np.nan  # one element left as the poison
    bad = inputs.accuracy(poisoned)
    assert bad["all_written"] is False and bad["unwritten"] == 1
    assert bad["rel_frobenius_error"] is None and bad["ratio_to_numpy"] is None
