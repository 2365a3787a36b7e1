"""Devices, fingerprints, the build cache and the static tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import clgemm
from clgemm.runtime import get_runtime
from clgemm.select.table import Table, default_table, load_table, shape_class
from clgemm import Schedule


def test_devices_have_stable_fingerprints():
    found = clgemm.devices()
    assert found, "the test machine has PoCL"
    again = clgemm.devices()
    assert [d.fingerprint for d in found] == [d.fingerprint for d in again]
    d = clgemm.get_device()
    assert d.type in ("CPU", "GPU", "ACCELERATOR", "OTHER")
    assert d.capabilities.local_mem_bytes == d.local_mem_bytes > 0
    assert clgemm.get_device(d.fingerprint) == d
    if not d.is_nvidia:  # inline PTX is offered only where NVIDIA's compiler runs it
        assert get_runtime(d).probe_inline_ptx() is False


def test_second_process_pays_no_compile(tmp_path):
    """Cold build in one process, disk-cache load in the next."""
    script = textwrap.dedent("""
        import json, numpy as np, clgemm
        from clgemm import Schedule
        s = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=4, tile_k=8, vec_a=2, vec_b=4, vec_c=2,
                     stage_a=1, stage_b=1, unroll_k=2, double_buffer=0, strided=0, local_pad=0)
        a = np.random.default_rng().standard_normal((9, 10)).astype(np.float32)
        _, info = clgemm.matmul(a, a.T.copy(), schedule=s, return_info=True)
        print(json.dumps({"from_cache": info.build_from_cache, "build_s": info.build_s}))
    """)
    env = {**os.environ, "CLGEMM_CACHE_DIR": str(tmp_path / "cache")}
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True,
                                      capture_output=True, text=True).stdout)
            for _ in range(2)]
    assert runs[0]["from_cache"] is False
    assert runs[1]["from_cache"] is True
    assert list((tmp_path / "cache").glob("*.bin"))


def test_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CLGEMM_CACHE_DIR", str(tmp_path))
    rt = clgemm.runtime.Runtime(clgemm.get_device())
    src = "__kernel void k(__global float* x) { x[get_global_id(0)] *= 2.0f; }"
    first = rt.build(src)
    (tmp_path / f"{first.info.key}.bin").write_bytes(b"garbage")
    fresh = clgemm.runtime.Runtime(clgemm.get_device())
    again = fresh.build(src)
    assert again.info.from_cache is False


def test_shape_classes_and_lookup():
    assert shape_class(2048, 2048, 2048) == shape_class(2000, 1500, 2500)
    assert shape_class(1, 2048, 2048) != shape_class(2048, 2048, 2048)
    big = Schedule(wg_m=16, wg_n=16, out_m=8, out_n=8)
    small = Schedule(wg_m=8, wg_n=8, out_m=2, out_n=2)
    table = Table("dev", {shape_class(2048, 2048, 2048): big, shape_class(16, 16, 16): small},
                  Schedule(), "test")
    assert table.lookup(3000, 3000, 3000) is big  # nearest class
    assert table.lookup(10, 12, 9) is small
    assert set(table.candidates()) == {big, small, Schedule()}
    round_trip = Table.from_json(table.to_json(), "mem")
    assert round_trip.entries == table.entries


def test_shipped_table_or_default_is_valid_here():
    from clgemm.lanes.fp32 import search_space

    d = clgemm.get_device()
    rt = get_runtime(d)
    table = load_table(d)
    space = search_space(rt)
    for s in table.candidates():
        assert space.is_valid(s), s.key()
    assert default_table(d).default in (clgemm.select.table.DEFAULT_CPU, clgemm.select.table.DEFAULT_GPU)


def test_fingerprint_ignores_free_memory():
    """PoCL reports free host memory as global memory; the identity must not move with it."""
    import dataclasses

    d = clgemm.get_device()
    moved = dataclasses.replace(d, global_mem_bytes=d.global_mem_bytes // 2)
    assert moved.fingerprint == d.fingerprint
    other_driver = dataclasses.replace(d, driver_version=d.driver_version + "-other")
    assert other_driver.fingerprint != d.fingerprint


def test_kernel_timer_falls_back_to_wall_time_where_the_clock_is_implausible(monkeypatch):
    """Rusticl on llvmpipe reports ~1 ns for any kernel: the harness and the tuner time with
    the host's wall clock there, never with figures off by a factor of a million."""
    import time

    import numpy as np
    import pyopencl as cl

    from clgemm.runtime import _SPIN

    rt = clgemm.runtime.Runtime(clgemm.get_device())
    assert isinstance(rt.profiling_ok, bool)
    kern = rt.build(_SPIN).kernel("clgemm_spin")
    buf = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 4 * 256)
    cl.enqueue_fill_buffer(rt.queue, buf, np.float32(1.0), 0, 4 * 256).wait()
    kern.set_args(buf, np.int32(1 << 16))

    def launch():
        return cl.enqueue_nd_range_kernel(rt.queue, kern, (256,), None)

    monkeypatch.setattr(rt, "_profiling_ok", False)
    t0 = time.perf_counter()
    got = rt.timed(launch)
    outer = time.perf_counter() - t0
    assert 0 < got <= outer
    monkeypatch.setattr(rt, "_profiling_ok", True)
    ev_time = rt.timed(launch)
    assert ev_time > 0


def test_build_patched_rewrites_the_binary_and_caches_it(tmp_path, monkeypatch):
    """The program built from the patched binary is what runs; the second build of the same
    (source, tag) comes from memory without patching again; a patch that raises is a
    CompileError (the wgmma kernels are built this way on NVIDIA)."""
    import numpy as np
    import pyopencl as cl
    import pytest

    from clgemm.errors import CompileError

    monkeypatch.setenv("CLGEMM_CACHE_DIR", str(tmp_path))
    rt = get_runtime()
    src = "__kernel void k(__global float* x) { x[get_global_id(0)] = 2.0f; }"
    calls = []

    def identity(binary: bytes) -> bytes:
        calls.append(len(binary))
        return binary

    built = rt.build_patched(src, "", identity, tag="test/1")
    buf = rt.buffer(16, hostbuf=np.zeros(4, np.float32))
    built.kernel("k")(rt.queue, (4,), None, buf)
    out = np.empty(4, np.float32)
    cl.enqueue_copy(rt.queue, out, buf)
    assert (out == 2.0).all() and len(calls) == 1
    assert rt.build_patched(src, "", identity, tag="test/1") is built and len(calls) == 1

    def broken(binary: bytes) -> bytes:
        raise ValueError("no marker")

    with pytest.raises(CompileError, match="test/2"):
        rt.build_patched(src, "", broken, tag="test/2")
    # (a binary the driver refuses is not tried here: Rusticl aborts the process on one;
    # NVIDIA's driver refused sm_90 PTX with wgmma as a build error, benchmarks/tc/probe_sm90a.py)


def test_the_default_device_passes_over_a_compiler_that_fails(monkeypatch, capsys):
    """A first run never ends in a compile error while another device works: the default
    choice skips a device whose compiler refuses a trivial kernel, and says so once."""
    from dataclasses import replace

    import pytest

    from clgemm import device as dev
    from clgemm.errors import NoDeviceError

    real = dev.devices()[0]
    broken = replace(real, index=98, name="broken-gpu", type="GPU")
    working = replace(real, index=99, name="working-cpu", type="CPU")
    reasons = {broken: "unknown target CPU 'generic'"}
    monkeypatch.setattr(dev, "compile_blocker", lambda d: reasons.get(d))
    assert dev._default_device([broken, working]) is working
    err = capsys.readouterr().err
    assert "broken-gpu" in err and "unknown target CPU" in err and "working-cpu" in err
    reasons[working] = "no compiler"
    with pytest.raises(NoDeviceError, match="no OpenCL device here compiles"):
        dev._default_device([broken, working])


def test_devices_probe_runs_a_product_on_each_device(capsys):
    import json

    from clgemm.cli import main

    assert main(["devices", "--probe", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["product"] for r in rows)
    assert any(r["product"] == "works" for r in rows)


def test_the_default_cpu_device_is_the_one_whose_table_measured_most(monkeypatch, capsys):
    """Among devices other than GPUs, the default prefers the one whose own shipped table
    confirmed most GFLOPS (Rusticl may be listed before PoCL and run 20x slower); a device
    without an exact table keeps its discovery order after them; a GPU still comes first."""
    from dataclasses import replace

    from clgemm import device as dev

    real = dev.devices()[0]
    slow = replace(real, index=91, name="slow-cpu", type="CPU")
    fast = replace(real, index=92, name="fast-cpu", type="CPU")
    plain = replace(real, index=93, name="untabled-cpu", type="CPU")
    gpu = replace(real, index=94, name="a-gpu", type="GPU")
    rates = {slow: 2.1, fast: 37.2}
    monkeypatch.setattr(dev, "_tuned_gflops", lambda d: rates.get(d, 0.0))
    monkeypatch.setattr(dev, "compile_blocker", lambda d: None)
    assert dev._default_device([plain, slow, fast]) is fast
    assert dev._default_device([plain, slow, fast, gpu]) is gpu
    # the fast one's compiler fails: the next by its table, with the one-line notice
    monkeypatch.setattr(dev, "compile_blocker",
                        lambda d: "Invalid build option: -mcpu=x" if d is fast else None)
    assert dev._default_device([plain, slow, fast]) is slow
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "slow-cpu" in err[0] and "fast-cpu" in err[0], err


def test_a_build_failure_is_said_in_one_line():
    from clgemm.device import _build_failure

    invalid = ("clBuildProgram failed: INVALID_BUILD_OPTIONS - clBuildProgram failed: "
               "INVALID_BUILD_OPTIONS\n\nBuild on <pyopencl.Device 'pthread-AMD EPYC'>:\n\n"
               "Invalid build option: -mcpu=nosuchcpu\n\n(options: -I /x/pyopencl/cl)")
    assert _build_failure(invalid) == "Invalid build option: -mcpu=nosuchcpu"
    unknown = ("clBuildProgram failed: BUILD_PROGRAM_FAILURE\n\nBuild on <dev>:\n\n"
               "error: unknown target CPU 'generic'\nnote: valid target CPU values are: ...\n")
    assert _build_failure(unknown) == "error: unknown target CPU 'generic'"
    assert "\n" not in _build_failure("a\nb\n  c  d")
