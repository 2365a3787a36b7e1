"""Clock telemetry hookup: engine columns, absent on a CPU device, window means."""

import numpy as np

from clgemm.bench import telemetry


class _Dev:
    type = "CPU"
    is_nvidia = False


def test_cpu_device_has_no_clock():
    s = telemetry.ClockSampler(_Dev())
    assert s.source is None and "CPU" in s.reason
    s.start()
    s.stop()
    assert s.rows() == []


def test_engine_columns_become_rows_with_nan_as_none():
    class Samples:
        t = np.array([1.0, 2.0, 3.0])
        sm_mhz = np.array([1980.0, np.nan, 1700.0])
        temp_c = np.array([40.0, 41.0, 42.0])
        power_w = np.array([300.0, np.nan, 310.0])

    class Impl:
        source = "nvml"

        def start(self):
            return True

        def stop(self):
            pass

        def samples(self, clear=False):
            return Samples()

    s = telemetry.ClockSampler.__new__(telemetry.ClockSampler)
    s._impl, s._rows, s.source = Impl(), [], "engine:nvml"
    s.stop()
    rows = s.rows()
    assert rows[1] == (2.0, None, 41.0, None)
    means = telemetry.window_means(rows, 0.5, 3.5)
    assert means["sm_mhz"] == 1840.0 and means["temp_c"] == 41.0 and means["power_w"] == 305.0
    assert telemetry.window_means(rows, 10, 11) == {"sm_mhz": None, "temp_c": None, "power_w": None}
