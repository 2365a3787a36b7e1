"""Shared test helpers: fresh random inputs, float64 references, poisoned outputs."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pyopencl as cl
import pytest

# Tests run on PoCL (the CPU OpenCL device) unless told otherwise.
os.environ.setdefault("CLGEMM_DEVICE", "Portable Computing Language")


@pytest.fixture
def rng(request):
    """A fresh generator per test; its seed is shown when the test fails."""
    seed = secrets.randbits(32)
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ.setdefault("CLGEMM_CACHE_DIR", str(tmp_path_factory.mktemp("kernel-cache")))
    os.environ.setdefault("CLGEMM_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True, scope="session")
def _emulated_kernels_unoptimised():
    """Kernels of the emulated dialects (tensor-core and Ozaki PTX spelled in plain OpenCL C,
    test-only stand-ins that check the generators' indexing, edges and rounding) are built
    with -cl-opt-disable. Optimised, LLVM unrolls every emulated mma (a local-memory exchange
    with its barriers) and PoCL took 5-65 s CPU per kernel; unoptimised, under 1.5 s, with
    the same errors to the last digit. The emulated Ozaki program carries the lane's split and
    scale kernels too (one program); every other kernel keeps its module's options."""
    from clgemm.kernels import ozaki, tensorcore
    from clgemm.runtime import Runtime

    preludes = (tensorcore._PRELUDE_EMULATED, ozaki._PRELUDE_EMULATED)
    build = Runtime.build

    def build_emulated_unoptimised(self, source, options="", use_disk_cache=True):
        if any(p in source for p in preludes):
            options = f"{options} -cl-opt-disable".strip()
        return build(self, source, options, use_disk_cache)

    mp = pytest.MonkeyPatch()
    mp.setattr(Runtime, "build", build_emulated_unoptimised)
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _no_binary_store(_isolated_cache):
    """Kernels are not written to the session's disk cache. On PoCL, reading a program's
    binary compiles a generic work-group function for every kernel in it: about 2 s CPU of the
    ~4.5 s a new fp32 kernel cost, for an entry no later test reads (each run starts with an
    empty cache). Writes anywhere else go through: the cache's own tests point
    CLGEMM_CACHE_DIR (or `_store`) at their own folder, and processes that tests start (the
    tuner's compile workers, `clgemm tune`, bench sessions) store as usual."""
    from clgemm.runtime import Runtime

    session_cache = Path(os.environ["CLGEMM_CACHE_DIR"]).resolve()
    store = Runtime._store

    def store_outside_the_session_cache(self, path, program):
        if Path(path).parent.resolve() != session_cache:
            store(self, path, program)

    mp = pytest.MonkeyPatch()
    mp.setattr(Runtime, "_store", store_outside_the_session_cache)
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_method_costs():
    """Each test starts with no measured costs in the approximate planner (it remembers, per
    shape, whether low rank beat exact)."""
    from clgemm.approx import contract
    from clgemm.runtime import get_runtime

    get_runtime().forget(contract.COSTS_MEMO)


def fresh_routes(monkeypatch, rt) -> None:
    """Plans and tensor-core schedules decided anew for this test (and the runtime's own
    restored after it): a test that changes the routing must not meet plans decided before."""
    from clgemm.runtime import LruMemo

    monkeypatch.setattr(rt, "plans", LruMemo(64))
    monkeypatch.setitem(rt._memo, "tc schedules", LruMemo(64))


def emulate_tensor_cores(monkeypatch, rt) -> None:
    """Tensor cores claimed present on `rt`, their PTX emulated in plain OpenCL C (runs on the
    CPU devices), for this test only; routes decided anew."""
    from clgemm.lanes.probe import TcSupport

    monkeypatch.setitem(rt._memo, "tc support", TcSupport(True, "emulated", async_copy=True))
    monkeypatch.setenv("CLGEMM_TC_EMULATE", "1")
    fresh_routes(monkeypatch, rt)


def small_tc_tiles(monkeypatch) -> dict:
    """Small tensor-core schedules for every mode, for this test only: PoCL compiles the
    emulated 128 x 128 kernels for minutes, and Rusticl on llvmpipe has too little local
    memory for them."""
    from dataclasses import replace

    from clgemm.lanes.mma import DEFAULT_SCHEDULES

    small = {mode: replace(s, block_m=32, block_n=16, block_k=16, warps_m=2, warps_n=1)
             for mode, s in DEFAULT_SCHEDULES.items()}
    for mode, s in small.items():  # the one dict every module reads
        monkeypatch.setitem(DEFAULT_SCHEDULES, mode, s)
    return small


def require_valid(schedule) -> None:
    """Skip, with the reason, where the device's search space rejects the schedule (the
    direct form exists on CPU devices only): the suite also runs on the GPU machine."""
    from clgemm.lanes.fp32 import search_space
    from clgemm.runtime import get_runtime

    space = search_space(get_runtime())
    if schedule is not None and not space.is_valid(schedule):
        pytest.skip(f"{schedule.key()} is not valid on this device: "
                    + ", ".join(space.violations(schedule)))


def run_in_threads(work, count: int) -> None:
    """`work(i)` for i in range(count), each in a thread of its own, all started before any
    is joined; the first exception a thread raised is raised here (left alone, a failure in
    a thread only prints)."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - raised again by the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def op(x, trans):
    return x.T if trans else x


class Reference(np.ndarray):
    """A float64 result that remembers its roundoff scale |alpha| |op(A)| |op(B)| (+ |beta C|)."""

    magnitude: np.ndarray
    k: int


def reference(A, B, C=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """float64 result and numpy float32's own relative error on the same inputs."""
    a64, b64 = op(A, trans_a).astype(np.float64), op(B, trans_b).astype(np.float64)
    magnitude = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        magnitude = magnitude + abs(beta) * np.abs(C.astype(np.float64))
    ref = alpha * (a64 @ b64)
    f32 = np.float32(alpha) * (op(A, trans_a) @ op(B, trans_b))
    if beta != 0.0:
        ref = ref + beta * C.astype(np.float64)
        f32 = f32 + np.float32(beta) * C
    error = rel_error(f32, ref)
    ref = ref.view(Reference)
    ref.magnitude, ref.k = magnitude, a64.shape[1]
    return ref, error


def rel_error(x, ref):
    denom = np.linalg.norm(ref)
    diff = np.linalg.norm(np.asarray(x, np.float64) - ref)
    return diff / denom if denom > 0 else diff


# Below this many outputs the Frobenius error of a random product is too noisy a statistic to
# compare two summation orders by (2 x 3 outputs at K=4097 differ by 2.4x by chance); there the
# rigorous worst-case bound |C - ref| <= (K + 2) u |alpha||A||B| (+ |beta C|) is checked instead.
_MIN_OUTPUTS_FOR_RATIO = 256
_U = 2.0**-24


def assert_close_to_reference(result, ref, numpy_error, context=""):
    assert np.isfinite(result).all(), f"unwritten or non-finite outputs {context}"
    ref64 = np.asarray(ref, np.float64)
    if result.size >= _MIN_OUTPUTS_FOR_RATIO:
        err = rel_error(result, ref64)
        # The exact contract: within twice numpy float32's error on the same inputs.
        bound = 2.0 * numpy_error
        assert err <= bound, f"relative error {err:.3e} > {bound:.3e} {context}"
    else:
        bound = (ref.k + 2) * _U * ref.magnitude * 1.0001 + 1e-300
        excess = np.abs(np.asarray(result, np.float64) - ref64) / bound
        assert excess.max() <= 1.0, f"worst-case roundoff bound exceeded x{excess.max():.2f} {context}"


class QueueGate:
    """A marker on the user queue that waits for a user event: every command enqueued after
    it waits until open() (or the deadline, should a call wait for the queue, which would
    otherwise never return)."""

    def __init__(self, rt, deadline_s: float) -> None:
        self._event = cl.UserEvent(rt.context)
        self._lock = threading.Lock()
        self._opened = False
        cl.enqueue_marker(rt.user_queue, wait_for=[self._event])
        rt.user_queue.flush()
        self._timer = threading.Timer(deadline_s, self.open)
        self._timer.daemon = True
        self._timer.start()

    def open(self) -> bool:
        """Let the queue go; False where it had been let go already (by the deadline)."""
        with self._lock:
            if self._opened:
                return False
            self._opened = True
        self._timer.cancel()
        self._event.set_status(cl.command_execution_status.COMPLETE)
        return True


@contextlib.contextmanager
def side_queue_held(deadline_s: float = 20.0):
    """The guard's second queue holds every command enqueued on it inside the block; the
    block's calls must not wait for the device (a wait would last until the deadline, and
    fail)."""
    from clgemm.guard.device import guard_device
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    held = cl.UserEvent(rt.context)
    side = guard_device(rt).side_queue
    cl.enqueue_marker(side, wait_for=[held])
    side.flush()
    release = threading.Timer(deadline_s, held.set_status,
                              (cl.command_execution_status.COMPLETE,))
    release.start()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        waited = time.perf_counter() - t0
        if release.is_alive():
            release.cancel()
            held.set_status(cl.command_execution_status.COMPLETE)
    assert waited < deadline_s * 0.75, f"a call waited for the device ({waited:.1f} s)"


def load_script(relative: str, name: str):
    """A benchmark script of the repository (not a package) as a module named `name`,
    registered in sys.modules (its dataclasses look their module up)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def nvidia_tc_runtime():
    """The runtime of an NVIDIA device whose tensor-core lane probed available; skips the
    test where there is none."""
    from clgemm.device import devices
    from clgemm.lanes.probe import tensorcore_available
    from clgemm.runtime import get_runtime

    for d in devices():
        if d.is_nvidia:
            rt = get_runtime(d)
            if tensorcore_available(rt):
                return rt
    pytest.skip("no NVIDIA device with the tensor-core lane")
