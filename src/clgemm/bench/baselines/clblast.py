"""CLBlast, the reference OpenCL BLAS, through its C API (ctypes) on clgemm's own context and
queue: with its shipped parameters, and with parameters its own tuner found on this device
(`CLBlastOverrideParameters`, read from the tuner's JSON files `clblast_xgemm_*_32.json`).

Timed as a user calls it: `CLBlastSgemm` wall time per call with the queue drained (the routine
may launch helper kernels and allocate temporaries around its GEMM kernel)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import time
from pathlib import Path

import numpy as np

from ..protocol import summarize_times

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
PRECISION_SINGLE = 32


def library_path() -> str | None:
    return os.environ.get("CLGEMM_CLBLAST_LIB") or ctypes.util.find_library("clblast")


_lib = None


def load():
    global _lib
    if _lib is None:
        path = library_path()
        if not path:
            raise OSError("no CLBlast library: set CLGEMM_CLBLAST_LIB or install libclblast")
        lib = ctypes.CDLL(path)
        lib.CLBlastSgemm.restype = ctypes.c_int
        lib.CLBlastSgemm.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_float,
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_float,
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p),
        ]
        lib.CLBlastOverrideParameters.restype = ctypes.c_int
        lib.CLBlastOverrideParameters.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.CLBlastClearCache.restype = ctypes.c_int
        _lib = lib
    return _lib


def presence() -> tuple[str, str | None]:
    try:
        load()
    except (OSError, AttributeError) as exc:
        return "absent", str(exc)
    return "present", library_path()


def override_kernel_name(tuned_kernel: str) -> str:
    """The database kernel a tuned result overrides: XgemmDirect* -> XgemmDirect, Xgemm*."""
    return "XgemmDirect" if tuned_kernel.startswith("XgemmDirect") else "Xgemm"


def read_tuned(paths: list[str | Path]) -> dict[str, dict]:
    """Best (lowest time) tuned parameters per database kernel from CLBlast tuner JSON files
    (files or folders holding `clblast_xgemm*_32.json`): {kernel: {parameters, time_ms, file}}."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(p.glob("clblast_xgemm*_32.json")) if p.is_dir() else [p])
    best: dict[str, dict] = {}
    for f in files:
        data = json.loads(f.read_text())
        if str(data.get("precision", "32")) != "32":
            continue
        for result in data.get("results", []):
            kernel = override_kernel_name(result.get("kernel", "Xgemm"))
            t = float(result.get("time", float("inf")))
            if t > 0 and (kernel not in best or t < best[kernel]["time_ms"]):
                best[kernel] = {"parameters": {k: int(v) for k, v in result["parameters"].items()},
                                "time_ms": t, "file": str(f),
                                "family": data.get("kernel_family"),
                                "tuned_at": [data.get("arg_m"), data.get("arg_n"), data.get("arg_k")]}
    return best


def override(rt, kernel: str, parameters: dict[str, int]) -> int:
    lib = load()
    names = (ctypes.c_char_p * len(parameters))(*[k.encode() for k in parameters])
    values = (ctypes.c_size_t * len(parameters))(*parameters.values())
    return lib.CLBlastOverrideParameters(ctypes.c_void_p(rt.cl_device.int_ptr), kernel.encode(),
                                         PRECISION_SINGLE, len(parameters), names, values)


class Sgemm:
    """CLBlastSgemm on device buffers of a clgemm Runtime."""

    def __init__(self, rt) -> None:
        import pyopencl as cl

        self.cl = cl
        self.rt = rt
        self.lib = load()
        self._queue = ctypes.c_void_p(rt.queue.int_ptr)

    def __call__(self, m, n, k, a_buf, b_buf, c_buf) -> int:
        event = ctypes.c_void_p()
        status = self.lib.CLBlastSgemm(
            ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0,
            a_buf.int_ptr, 0, k, b_buf.int_ptr, 0, n, 0.0, c_buf.int_ptr, 0, n,
            ctypes.byref(self._queue), ctypes.byref(event))
        if status == 0 and event.value:
            # Take ownership so that the event is released.
            self.cl.Event.from_int_ptr(event.value, retain=False)
        return status


def measure(rt, case, inputs, protocol, variants: list[tuple[str, dict | None]]) -> list[dict]:
    """One entry per variant: ("clblast", None) shipped, ("clblast_tuned", tuned) etc.

    Tuned variants run in a child process: CLBlastOverrideParameters stays in CLBlast's
    database cache for the life of a process (CLBlastClearCache does not reset it), so a
    shipped measurement taken after an override in the same process would be a tuned one.
    """
    entries = []
    for method, tuned in variants:
        if tuned is None:
            entries.append(_measure_variant(rt, case, inputs, protocol, method, None))
        else:
            entries.append(_measure_in_child(rt, case, inputs, protocol, method, tuned))
    return entries


def _measure_in_child(rt, case, inputs, protocol, method, tuned) -> dict:
    import concurrent.futures as cf
    import multiprocessing
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (a, b) in enumerate(inputs.sets):
            pa, pb = f"{tmp}/a{i}.npy", f"{tmp}/b{i}.npy"
            np.save(pa, a)
            np.save(pb, b)
            paths.append((pa, pb))
        ctx = multiprocessing.get_context("spawn")
        try:
            with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                return pool.submit(_child, rt.device.index, case, paths, protocol, method,
                                   tuned).result()
        except Exception as exc:  # noqa: BLE001 - a failing peer is recorded, not fatal
            return {"method": method, "family": "clblast", "shape": list(case.shape),
                    "tag": case.tag, "schedule": None, "status": "error",
                    "reason": f"child process: {type(exc).__name__}: {exc}"}


def _child(device_index, case, paths, protocol, method, tuned) -> dict:
    from ...runtime import get_runtime
    from ..inputs import InputSets

    rt = get_runtime(device_index)
    inputs = InputSets.__new__(InputSets)
    inputs.shape = tuple(case.shape)
    inputs.sets = [(np.load(pa), np.load(pb)) for pa, pb in paths]
    inputs._ref = None
    inputs._numpy_err = None
    return _measure_variant(rt, case, inputs, protocol, method, tuned)


def _measure_variant(rt, case, inputs, protocol, method, tuned) -> dict:
    import pyopencl as cl

    m, n, k = case.shape
    sgemm = Sgemm(rt)
    bufs = [(rt.buffer(a.nbytes, "A", hostbuf=a), rt.buffer(b.nbytes, "B", hostbuf=b))
            for a, b in inputs.sets]
    c_buf = rt.buffer(4 * m * n, "C")
    poison = np.full((m, n), np.nan, np.float32)
    entry = {"method": method, "family": "clblast", "shape": list(case.shape), "tag": case.tag,
             "schedule": None}
    try:
        if tuned is not None:
            applied = {}
            for kernel, best in tuned.items():
                status = override(rt, kernel, best["parameters"])
                applied[kernel] = {"status": status, **best}
                if status != 0:
                    raise RuntimeError(f"CLBlastOverrideParameters({kernel}) returned {status}")
            entry["tuned_parameters"] = applied
            sgemm.lib.CLBlastClearCache()  # drop any program built with other parameters
        for i in range(protocol.warmup):
            a, b = bufs[i % len(bufs)]
            status = sgemm(m, n, k, a, b, c_buf)
            if status != 0:
                raise RuntimeError(f"CLBlastSgemm returned status {status}")
        rt.queue.finish()
        times, start = [], time.perf_counter()
        for r in range(protocol.repeats):
            a, b = bufs[r % len(bufs)]
            t0 = time.perf_counter()
            sgemm(m, n, k, a, b, c_buf)
            rt.queue.finish()
            times.append(time.perf_counter() - t0)
            if r >= 2 and time.perf_counter() - start > protocol.max_measure_s:
                break
        cl.enqueue_copy(rt.queue, c_buf, poison, is_blocking=True)
        status = sgemm(m, n, k, bufs[0][0], bufs[0][1], c_buf)
        result = np.empty((m, n), np.float32)
        cl.enqueue_copy(rt.queue, result, c_buf, is_blocking=True)
        entry.update({
            "status": "ok", "reason": None,
            "timing": summarize_times(times, m, n, k, "wall-drained"),
            "accuracy": inputs.accuracy(result),
            "note": ("CLBlastSgemm as a user calls it: wall time per call, queue drained; "
                     "beta=0 into a NaN-poisoned C" + ("; tuned parameters applied in a "
                                                      "separate process" if tuned else "")),
        })
    except Exception as exc:  # noqa: BLE001 - a failing peer is recorded, not fatal
        entry.update({"status": "error", "reason": f"{type(exc).__name__}: {exc}"})
    return entry
