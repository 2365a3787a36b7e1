"""Hardware counters for the tensor-core kernels, which NVIDIA's OpenCL hides from Nsight
Compute: the PTX that the OpenCL driver compiled is loaded through CUDA (CuPy) and launched
with the same grid, block and arguments, so `ncu` can profile it.

    # on the GPU machine, .carry/ sourced, PYTHONPATH=src:
    python3 benchmarks/tc/ncu_profile.py dump DIR KEY [KEY ...]    # OpenCL -> DIR/<key>.ptx
    python3 benchmarks/tc/ncu_profile.py launch DIR N               # time + check each, CUDA
    ncu --clock-control none --set full -k regex:clgemm python3 benchmarks/tc/ncu_profile.py launch DIR N

`launch` runs each kernel on N x N x N random data, checks it against cuBLAS in float64 and
prints its time by CUDA events beside nothing else: the same code as OpenCL runs, so the
figures should match the OpenCL event times of `run_tc.py` (a check of the method).
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np


def dump(out_dir: str, keys: list[str]) -> None:
    from clgemm.kernels.tensorcore import TcLayout, TcSchedule
    from clgemm.runtime import get_runtime
    from clgemm.lanes.mma import TcKernel

    os.makedirs(out_dir, exist_ok=True)
    rt = get_runtime()
    for key in keys:
        kernel = TcKernel(rt, TcSchedule.from_key(key), TcLayout(False, False, True, True))
        ptx = kernel.program.binaries[0].rstrip(b"\x00")
        with open(os.path.join(out_dir, key + ".ptx"), "wb") as f:
            f.write(ptx)
        print("dumped", key, len(ptx), "bytes")


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def launch(ptx_dir: str, n: int, reps: int = 5) -> None:
    import cupy as cp

    from clgemm.kernels.tensorcore import TcSchedule

    rng = np.random.default_rng(0)
    a = cp.asarray(rng.standard_normal((n, n)).astype(np.float32))
    b = cp.asarray(rng.standard_normal((n, n)).astype(np.float32))
    c = cp.empty((n, n), cp.float32)
    flag = cp.zeros(1, cp.int32)
    ref = a.astype(cp.float64) @ b.astype(cp.float64)
    for name in sorted(os.listdir(ptx_dir)):
        if not name.endswith(".ptx"):
            continue
        s = TcSchedule.from_key(name[:-4])
        # OpenCL's get_group_id adds %envreg0 (the launch's global offset in groups), which a
        # CUDA launch leaves undefined: pin it to 0, as clgemm's OpenCL launches have it.
        with open(os.path.join(ptx_dir, name)) as f:
            ptx = re.sub(r"mov\.b32\s+(%r\d+),\s*%envreg0;", r"mov.b32 \1, 0;", f.read())
        assert "%envreg" not in ptx, "another OpenCL environment register: map it first"
        fn = cp.RawModule(path=_write(ptx_dir, name + ".cuda", ptx)).get_function("clgemm_tc")
        grid = (-(-n // s.block_m)) * (-(-n // s.block_n))
        args = (np.int32(n), np.int32(n), np.int32(n), np.float32(1.0), np.float32(0.0),
                a, np.int32(n), np.int32(0), b, np.int32(n), np.int32(0),
                c, np.int32(n), np.int32(0), flag)
        times = []
        for _ in range(reps):
            c.fill(float("nan"))
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            fn((grid,), (s.threads,), args)
            end.record()
            end.synchronize()
            times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
        err = float(cp.linalg.norm(c.astype(cp.float64) - ref) / cp.linalg.norm(ref))
        t = float(np.median(times))
        print(f"{name[:-4]:50s} n={n} {t * 1e6:8.1f} us {2 * n ** 3 / t / 1e12:6.1f} TFLOPS "
              f"rel err {err:.2e}", flush=True)


# What `metrics` asks ncu for: every stall reason (cycles per issued instruction), the tensor
# pipe, shared-memory wavefronts and bank conflicts, L2, DRAM and issue activity.
METRICS = ",".join([
    r"regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_active",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum",
    "l1tex__throughput.avg.pct_of_peak_sustained_active",
    "lts__throughput.avg.pct_of_peak_sustained_elapsed",
    "lts__t_sector_hit_rate.pct",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__warps_active.avg.per_cycle_active",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
    "gpu__time_duration.sum",
])


def summary(csv_path: str) -> None:
    """The ncu --csv --page raw output as one row per metric, one column per kernel."""
    import csv
    import io

    with open(csv_path) as f:
        lines = [line for line in f.read().splitlines() if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, data = rows[0], rows[2:]
    for i, name in enumerate(header):
        values = [r[i] for r in data]
        if name.startswith("smsp__average_warps_issue_stalled_"):
            try:
                if max(float(v) for v in values) < 0.05:
                    continue
            except ValueError:
                pass
            name = "stall " + name[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")]
        elif not name.startswith(("sm__", "l1tex", "lts", "gpu__time", "dram", "smsp__issue", "Grid")):
            continue
        print(f"{name[:58]:58s}", " ".join(f"{v[:9]:>9s}" for v in values))


if __name__ == "__main__":
    verb = sys.argv[1]
    if verb == "dump":
        dump(sys.argv[2], sys.argv[3:])
    elif verb == "metrics":
        print(METRICS)
    elif verb == "summary":
        summary(sys.argv[2])
    elif verb == "launch":
        launch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    else:
        sys.exit(__doc__)
