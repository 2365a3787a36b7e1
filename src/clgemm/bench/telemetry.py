"""Device clock, temperature and power during a run: the engine's sampler
(`clgemm.engine.Telemetry`) when importable, else NVML through pynvml, else a streaming
`nvidia-smi` query, else absent (with the reasons)."""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time


class ClockSampler:
    """start() / stop() / rows(): (t_monotonic, sm_mhz, temp_c, power_w); `source` is None
    (and `reason` says why) when no sensor can be read."""

    def __init__(self, device=None, rate_hz: float = 20.0) -> None:
        self.source: str | None = None
        self.reason: str | None = None
        self._impl = None
        self._rows: list[tuple] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if device is not None and device.type != "GPU":
            self.reason = f"no clock sensor for a {device.type} device"
            return
        reasons = []
        try:
            from ..engine import Telemetry  # noqa: PLC0415 - the Rust sampler, optional

            impl = Telemetry(source="auto", rate_hz=max(rate_hz, 1.0))
            if getattr(impl, "source", None):
                self._impl = impl
                self.source = f"engine:{impl.source}"
                return
            reasons.append("engine telemetry found no sensor")
        except Exception as exc:  # noqa: BLE001 - any failure means: try the next source
            reasons.append(f"clgemm.engine.Telemetry unavailable ({type(exc).__name__}: {exc})")
        if device is not None and not getattr(device, "is_nvidia", False):
            reasons.append("NVML only reads NVIDIA devices")
            self.reason = "; ".join(reasons)
            return
        try:
            import pynvml  # noqa: PLC0415 - nvidia-ml-py, optional

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._period = 1.0 / rate_hz
            self.source = "pynvml"
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"pynvml unavailable ({type(exc).__name__}: {exc})")
            self._smi = shutil.which("nvidia-smi")
            if self._smi:
                self.source = "nvidia-smi"
                self._period_ms = max(100, int(1000 / rate_hz))
            else:
                reasons.append("no nvidia-smi on PATH")
                self.reason = "; ".join(reasons)

    def _nvml_loop(self) -> None:
        nv = self._nvml
        while not self._stop.is_set():
            row = [time.monotonic(), None, None, None]
            for i, read in enumerate((
                lambda: nv.nvmlDeviceGetClockInfo(self._handle, nv.NVML_CLOCK_SM),
                lambda: nv.nvmlDeviceGetTemperature(self._handle, nv.NVML_TEMPERATURE_GPU),
                lambda: nv.nvmlDeviceGetPowerUsage(self._handle) / 1000.0,
            )):
                try:
                    row[i + 1] = float(read())
                except Exception:  # noqa: BLE001 - a refused sensor stays None
                    pass
            self._rows.append(tuple(row))
            self._stop.wait(self._period)

    def _smi_loop(self) -> None:
        cmd = [self._smi, "--query-gpu=clocks.sm,temperature.gpu,power.draw",
               "--format=csv,noheader,nounits", f"-lms={self._period_ms}", "-i", "0"]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)
        except OSError as exc:
            self.reason = f"nvidia-smi failed: {exc}"
            return
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            row = [time.monotonic()]
            for p in parts[:3]:
                try:
                    row.append(float(p))
                except ValueError:
                    row.append(None)
            self._rows.append(tuple(row + [None] * (4 - len(row))))

    def start(self) -> None:
        if self._impl is not None:
            self._impl.start()
        elif self.source == "nvidia-smi":
            self._proc = None
            self._thread = threading.Thread(target=self._smi_loop, daemon=True)
            self._thread.start()
        elif self.source == "pynvml":
            self._stop.clear()
            self._thread = threading.Thread(target=self._nvml_loop, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._impl is not None:
            self._impl.stop()
            got = self._impl.samples()
            if hasattr(got, "t") and hasattr(got, "sm_mhz"):  # columns (TelemetrySamples)
                rows = zip(got.t, got.sm_mhz, got.temp_c, got.power_w)
            else:  # rows, tuples or objects
                rows = (tuple(s) if isinstance(s, (tuple, list)) else
                        (s.t, s.sm_mhz, s.temp_c, s.power_w) for s in got)
            for row in rows:
                row = tuple(float(v) for v in row)
                self._rows.append(tuple(None if math.isnan(v) else v for v in row))
        elif self.source == "nvidia-smi" and self._thread is not None:
            if getattr(self, "_proc", None) is not None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._thread.join(timeout=5)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)

    def rows(self) -> list[tuple]:
        return list(self._rows)


def window_means(rows: list[tuple], t0: float, t1: float) -> dict:
    """Mean sm_mhz, temp_c, power_w of the samples taken in [t0, t1] (None where none)."""
    picked = [r for r in rows if t0 <= r[0] <= t1]
    out = {}
    for i, name in ((1, "sm_mhz"), (2, "temp_c"), (3, "power_w")):
        vals = [r[i] for r in picked if r[i] is not None]
        out[name] = sum(vals) / len(vals) if vals else None
    return out
