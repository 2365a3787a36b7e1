"""What the soak watches besides the products: host RSS, clgemm's device memory pools, and
on an NVIDIA card the clocks, temperature, power, throttle reasons and memory that NVML
reports (pynvml when importable, else `nvidia-smi` polled in a thread, else nothing, with
the reason written down)."""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

# (artifact name, nvidia-smi field) of what is polled; the throttle field was renamed
# clocks_event_reasons in newer drivers, which still accept the old name (tried first).
SMI_FIELDS = (("sm_mhz", "clocks.sm"), ("mem_mhz", "clocks.mem"), ("temp_c", "temperature.gpu"),
              ("power_w", "power.draw"), ("throttle", "clocks_throttle_reasons.active"),
              ("mem_used_mib", "memory.used"))
_SMI_THROTTLE_NEW = "clocks_event_reasons.active"


def settle_host_heap() -> bool:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc's
    malloc_trim), so that VmRSS counts live memory rather than what the allocator keeps for
    reuse: after numpy's temporaries of tens of MiB are freed, glibc keeps some and not
    others, and single samples of VmRSS taken between calls moved by +-2% with no trend
    (an H100 soak, 2026-12-06). False where there is no glibc."""
    import gc

    gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        import ctypes

        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def host_rss_bytes() -> int:
    """Resident set size now (VmRSS of /proc/self/status; the peak from getrusage where
    /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def host_load() -> dict:
    """The host's load average (1 min) and mean CPU clock (/proc/cpuinfo), None where absent:
    on a shared host these are the clocks to read a CPU device's drift against."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    mhz = []
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except (OSError, ValueError, IndexError):
        pass
    return {"loadavg_1m": load, "cpu_mhz_mean": sum(mhz) / len(mhz) if mhz else None}


POOL_FIELDS = ("managed_bytes", "active_bytes", "held_blocks", "active_blocks")


def _pool_figures(pool) -> dict:
    out = {}
    for name in POOL_FIELDS:
        value = getattr(pool, name, None)
        out[name] = int(value) if isinstance(value, (int, float)) else None
    return out


def pool_bytes(rt) -> dict:
    """The device memory clgemm's pools hold: the runtime's two (the user queue's: outputs
    and the hot path's scratch; the stations' queue's: staging, reported calls' scratch) and
    the guard's (C_old copies), summed: bytes held from the device (managed), in use
    (active), blocks held for reuse and in use; each pool's own figures under "pools". None
    where this pyopencl does not say."""
    from ..guard.device import guard_device

    pools = {"runtime": _pool_figures(getattr(rt, "pool", None)),
             "station": _pool_figures(getattr(rt, "station_pool", None)),
             "guard": _pool_figures(guard_device(rt).pool)}
    out: dict = {}
    for name in POOL_FIELDS:
        values = [p[name] for p in pools.values()]
        out[name] = None if any(v is None for v in values) else sum(values)
    out["pools"] = pools
    return out


@dataclass(frozen=True)
class GpuSample:
    t: float  # time.monotonic()
    sm_mhz: float | None
    mem_mhz: float | None
    temp_c: float | None
    power_w: float | None
    throttle: int | None  # bitmask of NVML clock throttle (event) reasons
    mem_used_mib: float | None


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(int(text, 16)) if text.startswith("0x") else float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


class GpuPoller:
    """Samples the NVIDIA card every `period_s` in a daemon thread; `source` is None (and
    `reason` says why) when there is nothing to read. `index` is NVML's card index."""

    def __init__(self, device, period_s: float = 1.0, index: int = 0) -> None:
        self.source: str | None = None
        self.reason: str | None = None
        self.period_s = period_s
        self.index = index
        self._samples: list[GpuSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        if not getattr(device, "is_nvidia", False):
            self.reason = f"no NVML for a non-NVIDIA device ({device.name})"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.source = "pynvml"
            return
        except Exception as exc:  # noqa: BLE001 - any failure: try nvidia-smi
            why = f"pynvml unavailable ({type(exc).__name__}: {exc})"
        smi = shutil.which("nvidia-smi")
        if smi is None:
            self.reason = f"{why}; no nvidia-smi on PATH"
            return
        self._smi_cmd = self._smi_query(smi)
        if self._smi_cmd is None:
            self.reason = f"{why}; nvidia-smi refused the query"
            return
        self.source = "nvidia-smi"

    def _smi_query(self, smi: str) -> list[str] | None:
        """The nvidia-smi command line whose fields this driver accepts (one trial call)."""
        for throttle in (SMI_FIELDS[4][1], _SMI_THROTTLE_NEW):
            fields = ",".join(throttle if name == "throttle" else f for name, f in SMI_FIELDS)
            cmd = [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                   "-i", str(self.index)]
            try:
                ok = subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                                    check=False).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            if ok:
                return cmd
        return None

    def _add(self, sample: GpuSample) -> None:
        with self._lock:
            self._samples.append(sample)

    def _nvml_read(self) -> GpuSample:
        nv, h = self._nv, self._handle
        reads = (lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
                 lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
                 lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
                 lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
                 lambda: nv.nvmlDeviceGetCurrentClocksThrottleReasons(h),
                 lambda: nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)
        values = []
        for read in reads:
            try:
                values.append(float(read()))
            except Exception:  # noqa: BLE001 - a refused sensor stays None
                values.append(None)
        throttle = None if values[4] is None else int(values[4])
        return GpuSample(time.monotonic(), values[0], values[1], values[2], values[3], throttle,
                         values[5])

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.source == "pynvml":
                self._add(self._nvml_read())
            else:
                self._smi_once()
            self._stop.wait(self.period_s)

    def _smi_once(self) -> None:
        # One query per period (not nvidia-smi's own loop): a hung or killed nvidia-smi costs
        # one sample, and nothing outlives the soak.
        try:
            out = subprocess.run(self._smi_cmd, capture_output=True, text=True, timeout=10,
                                 check=False)
        except (OSError, subprocess.SubprocessError):
            return
        parts = out.stdout.strip().splitlines()[0].split(",") if out.stdout.strip() else []
        if len(parts) != len(SMI_FIELDS):
            return
        v = [_number(p) for p in parts]
        self._add(GpuSample(time.monotonic(), v[0], v[1], v[2], v[3],
                            None if v[4] is None else int(v[4]), v[5]))

    def start(self) -> None:
        if self.source and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="clgemm-soak-gpu", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=15)
            self._thread = None

    def window(self, t0: float, t1: float) -> dict | None:
        """Mean, min and max of each reading over [t0, t1]; the throttle reasons OR-ed
        (hex); None when nothing is read."""
        if not self.source:
            return None
        with self._lock:
            got = [s for s in self._samples if t0 <= s.t <= t1]
            # keep memory flat: older samples are summarised into windows already
            self._samples = [s for s in self._samples if s.t > t1]
        out: dict = {"samples": len(got)}
        for name in ("sm_mhz", "mem_mhz", "temp_c", "power_w", "mem_used_mib"):
            vals = [getattr(s, name) for s in got if getattr(s, name) is not None]
            out[name] = ({"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
                         if vals else None)
        masks = [s.throttle for s in got if s.throttle is not None]
        mask = 0
        for m in masks:
            mask |= m
        out["throttle_reasons"] = hex(mask) if masks else None
        return out
