"""Schedule, SearchSpace and the constraint language."""

from __future__ import annotations

import pytest

from clgemm import Schedule, ScheduleError, SearchSpace
from clgemm.schedule import CONSTRAINTS, DOMAINS, DeviceLimits

LIMITS = DeviceLimits(max_work_group_size=256, local_mem_bytes=48 * 1024)
CPU_LIMITS = DeviceLimits(max_work_group_size=4096, local_mem_bytes=4 * 1024 * 1024,
                          cpu_device=1)
DIRECT = Schedule(wg_m=16, wg_n=4, out_m=6, out_n=16, vec_a=1, vec_b=1, vec_c=1, stage_a=0,
                  stage_b=0, direct=1)


def test_key_round_trip():
    s = Schedule(wg_m=8, wg_n=16, out_m=2, out_n=8, tile_k=32, vec_c=2)
    assert Schedule.from_key(s.key()) == s
    assert Schedule.from_dict(s.as_dict()) == s
    assert (s.tile_m, s.tile_n, s.threads) == (16, 128, 128)


def test_bad_keys_and_names():
    with pytest.raises(ScheduleError):
        Schedule.from_key("zz3-wm8")
    with pytest.raises(ScheduleError):
        Schedule.from_dict({"tile_q": 3})


def test_each_rule_can_reject():
    space = SearchSpace(LIMITS)
    cases = {
        "work-group size": Schedule(wg_m=32, wg_n=16, out_m=1, out_n=1),
        "local memory": Schedule(wg_m=16, wg_n=16, out_m=8, out_n=8, tile_k=32, double_buffer=1),
        "registers": Schedule(out_m=16, out_n=16),
        "unroll divides the K step": Schedule(tile_k=4, unroll_k=8),
        "C vectors need contiguous outputs": Schedule(vec_c=4, strided=1),
        "unstaged A loads scalar": Schedule(stage_a=0, vec_a=4),
        "double buffering needs staging": Schedule(stage_a=0, stage_b=0, vec_a=1, vec_b=1,
                                                   double_buffer=1),
        "blocked summation (exact contract)": Schedule(acc_chunk=0),
        "chunks are whole K steps": Schedule(tile_k=32, acc_chunk=64 + 16),
    }
    for rule, schedule in cases.items():
        assert rule in space.violations(schedule), (rule, space.violations(schedule))
    assert space.is_valid(Schedule())


def test_local_bytes_matches_rule():
    s = Schedule(wg_m=16, wg_n=16, out_m=8, out_n=8, tile_k=16, double_buffer=1, local_pad=4)
    assert s.local_bytes() == 4 * 2 * (16 * 132 + 16 * 132)


def test_enumeration_on_a_small_space():
    small = dict(DOMAINS)
    small.update(wg_m=(4, 8), wg_n=(8,), out_m=(1, 2), out_n=(4,), tile_k=(8,), vec_a=(1, 4),
                 vec_b=(1,), vec_c=(1, 4), stage_a=(0, 1), stage_b=(1,), unroll_k=(1, 8),
                 double_buffer=(0, 1), strided=(0, 1), local_pad=(0,), acc_chunk=(64, 256))
    space = SearchSpace(LIMITS, domains=small)
    valid = list(space.iter_valid())
    assert 0 < len(valid) < space.size()
    assert all(space.is_valid(s) for s in valid)


def test_engine_spec_carries_the_rules():
    spec = SearchSpace(LIMITS).engine_spec()
    assert [p[0] for p in spec["params"]] == list(DOMAINS)
    assert spec["constraints"] == [expr for _, expr in CONSTRAINTS]
    assert spec["limits"]["max_work_group_size"] == 256


def test_constraint_language_refuses_code():
    with pytest.raises(ScheduleError):
        SearchSpace(LIMITS, constraints=(("evil", "__import__('os')"),))


def test_direct_form_key_and_rules():
    # Keys name `direct` only when set: keys recorded before it existed parse as before.
    old = "wm16-wn16-om4-on4-tk16-va2-vb4-vc1-sa1-sb1-uk2-db0-st0-lp0-ac512"
    assert Schedule.from_key(old).direct == 0 and Schedule.from_key(old).key() == old
    assert DIRECT.key().endswith("-ac256-dr1") and Schedule.from_key(DIRECT.key()) == DIRECT
    assert Schedule.from_dict({k: v for k, v in DIRECT.as_dict().items() if k != "direct"}).direct == 0
    cpu, gpu = SearchSpace(CPU_LIMITS), SearchSpace(LIMITS)
    assert cpu.is_valid(DIRECT)
    assert "direct form only on CPU devices" in gpu.violations(DIRECT)
    assert "work-group form tiles are powers of two" in cpu.violations(
        Schedule(out_m=6, out_n=4))
    for bad, rule in [
        (dict(stage_b=1), "direct form has no local memory"),
        (dict(vec_c=4), "direct form stores whole rows"),
        (dict(out_m=16, out_n=16), "direct form registers"),
    ]:
        s = Schedule(**{**DIRECT.as_dict(), **bad})
        assert rule in cpu.violations(s), (rule, cpu.violations(s))


def test_work_group_space_unchanged_by_direct_form():
    """On a GPU, the valid schedules are those of before the direct form (all direct=0)."""
    small = dict(DOMAINS)
    small.update(wg_m=(8,), wg_n=(8, 16), out_m=(4, 6), out_n=(4, 16), tile_k=(16,), vec_a=(1,),
                 vec_b=(1,), vec_c=(1,), stage_a=(0, 1), stage_b=(0, 1), unroll_k=(4,),
                 double_buffer=(0,), strided=(0,), local_pad=(0,), acc_chunk=(256,))
    gpu = list(SearchSpace(LIMITS, domains=small).iter_valid())
    assert gpu and all(s.direct == 0 and s.out_m != 6 for s in gpu)
    cpu = list(SearchSpace(CPU_LIMITS, domains=small).iter_valid())
    assert {s for s in cpu if s.direct == 0} == set(gpu)  # small tiles: both limits allow all
    assert all(s.stage_a + s.stage_b == 0 for s in cpu if s.direct)
    assert any(s.direct == 1 and s.out_m == 6 for s in cpu)
