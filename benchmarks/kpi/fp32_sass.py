"""What stands between the float32 family and cuBLAS on an NVIDIA card, read off the machine
code (issue 18: "known only from the SASS"): the PTX that NVIDIA's OpenCL compiled for the
device table's schedule at each KPI size, assembled by ptxas for sm_90 (registers, spills,
shared memory), disassembled (the instruction mix of the hottest loop: the FFMA share), and
launched through CUDA (CuPy) with the same grid, block and arguments so that Nsight Compute
can read its counters beside cuBLAS's own SGEMM (NVIDIA's OpenCL hides its kernels from ncu).

    # on the GPU machine, .carry/ sourced, PYTHONPATH=src:
    python3 benchmarks/kpi/fp32_sass.py dump DIR 1400 2048 3072   # OpenCL -> DIR/<n>.ptx + .json
    python3 benchmarks/kpi/fp32_sass.py sass DIR                   # ptxas -v, cuobjdump, the mix
    python3 benchmarks/kpi/fp32_sass.py launch DIR 2048            # CUDA: time and check each
    ncu --clock-control none --csv --page raw --metrics $(python3 benchmarks/kpi/fp32_sass.py \
        metrics) -k regex:"clgemm|gemm|nvjet" python3 benchmarks/kpi/fp32_sass.py launch DIR 2048 1

`launch` also runs torch.matmul (cuBLAS SGEMM, TF32 off) on the same operands, so that ncu's
table holds both kernels (cuBLAS's Hopper kernels may be named nvjet_*, not *gemm*); `sass`
writes DIR/mix.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter

import numpy as np

# ---- SASS reading (pure text: tested on the CPU) -----------------------------------------
_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:\{\s*)?(@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)")
_BRANCH = re.compile(r"\bBRA\b[^;]*?0x([0-9a-f]+)")


_LABEL = re.compile(r"^\s*(\.L_x_\d+):")
_LABEL_BRANCH = re.compile(r"\bBRA\b[^;]*?`\((\.L_x_\d+)\)")


def parse_sass(text: str) -> list[tuple[int, str, int | None]]:
    """(address, opcode, branch target or None) of each instruction in cuobjdump's text; a
    target is an address (`BRA 0x4c0`) or a label (`BRA `(.L_x_3)`), which marks the
    instruction after it."""
    out, labels, pending, wanted = [], {}, [], []
    for line in text.splitlines():
        lab = _LABEL.match(line)
        if lab:
            pending.append(lab.group(1))
            continue
        m = _LINE.search(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        for name in pending:
            labels[name] = addr
        pending = []
        target = None
        if m.group(3) == "BRA":
            b = _BRANCH.search(line)
            if b:
                target = int(b.group(1), 16)
            else:
                named = _LABEL_BRANCH.search(line)
                if named:
                    wanted.append((len(out), named.group(1)))
        out.append((addr, m.group(3), target))
    for i, name in wanted:
        if name in labels:
            addr, op, _ = out[i]
            out[i] = (addr, op, labels[name])
    return out


def hottest_loop(code: list[tuple[int, str, int | None]]) -> tuple[int, int] | None:
    """The address range [start, end] of the backward branch's body that holds the most
    FFMA: the inner loop of a GEMM kernel."""
    best, best_ffma = None, -1
    for addr, op, target in code:
        if op == "BRA" and target is not None and target < addr:
            ffma = sum(1 for a, o, _ in code if target <= a <= addr and o == "FFMA")
            if ffma > best_ffma:
                best, best_ffma = (target, addr), ffma
    return best


def mix(code: list[tuple[int, str, int | None]], span: tuple[int, int] | None = None) -> dict:
    """Opcode counts (of `span` only, where given) and the FFMA share of all instructions."""
    ops = Counter(o for a, o, _ in code if span is None or span[0] <= a <= span[1])
    total = sum(ops.values())
    return {"instructions": total, "ffma_share": ops["FFMA"] / total if total else 0.0,
            "opcodes": dict(ops.most_common())}


def ptxas_info(text: str) -> dict:
    """Registers, spill bytes and shared memory from `ptxas -v` output."""
    info: dict = {}
    m = re.search(r"Used (\d+) registers", text)
    if m:
        info["registers"] = int(m.group(1))
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if m:
        info["spill_store_bytes"], info["spill_load_bytes"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"(\d+) bytes smem", text)
    if m:
        info["smem_bytes"] = int(m.group(1))
    m = re.search(r"(\d+) bytes stack frame", text)
    if m:
        info["stack_bytes"] = int(m.group(1))
    return info


# ---- on the card ---------------------------------------------------------------------------
def dump(out_dir: str, sizes: list[int]) -> None:
    """The table's schedule at each size, its OpenCL-compiled PTX and its launch shape."""
    from clgemm.kernels.gemm import render
    from clgemm.lanes.fp32 import choose_schedule, layout_for
    from clgemm.operands import Operand
    from clgemm.runtime import get_runtime

    os.makedirs(out_dir, exist_ok=True)
    rt = get_runtime()
    for n in sizes:
        s = choose_schedule(rt, n, n, n)
        plain = Operand(None, 0, n, False)
        layout = layout_for(s, plain, plain, plain)
        ptx = rt.build(render(s, layout), options="-cl-mad-enable").program.binaries[0]
        with open(os.path.join(out_dir, f"{n}.ptx"), "wb") as f:
            f.write(ptx.rstrip(b"\x00"))
        meta = {"n": n, "schedule": s.key(), "layout": str(layout), "wg": [s.wg_n, s.wg_m],
                "tile": [s.tile_n, s.tile_m], "device": rt.device.name}
        with open(os.path.join(out_dir, f"{n}.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        print("dumped", n, s.key(), len(ptx), "bytes", flush=True)


def sass(out_dir: str) -> None:
    """ptxas -v and the disassembly of each dumped PTX; the mix of its hottest loop."""
    report = {}
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".ptx"):
            continue
        ptx = os.path.join(out_dir, name)
        cubin = ptx[:-4] + ".cubin"
        run = subprocess.run(["ptxas", "-arch=sm_90", "-v", ptx, "-o", cubin],
                             capture_output=True, text=True)
        row = {"ptxas_rc": run.returncode, "ptxas": ptxas_info(run.stderr + run.stdout)}
        if run.returncode == 0:
            dis = subprocess.run(["cuobjdump", "--dump-sass", cubin], capture_output=True,
                                 text=True)
            with open(ptx[:-4] + ".sass", "w") as f:
                f.write(dis.stdout)
            code = parse_sass(dis.stdout)
            loop = hottest_loop(code)
            row.update(kernel=mix(code), loop_span=loop,
                       loop=mix(code, loop) if loop else None)
        else:
            row["ptxas_log"] = run.stderr[-2000:]
        report[name[:-4]] = row
        print(name, json.dumps(row)[:600], flush=True)
    with open(os.path.join(out_dir, "mix.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


def launch(out_dir: str, n: int, reps: int = 5) -> None:
    """Each dumped kernel of size n through CUDA, checked against float64 and timed by CUDA
    events, then torch.matmul (cuBLAS SGEMM, TF32 off) on the same operands."""
    import cupy as cp
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    rng = np.random.default_rng(0)
    a_host = rng.standard_normal((n, n)).astype(np.float32)
    b_host = rng.standard_normal((n, n)).astype(np.float32)
    a, b = cp.asarray(a_host), cp.asarray(b_host)
    c = cp.empty((n, n), cp.float32)
    # the float64 reference on the host: on the card it was a GEMM of its own, which ncu's
    # kernel filter took for cuBLAS's (records/nvidia-h200/2026-12-07-fp32-sass)
    ref = a_host.astype(np.float64) @ b_host.astype(np.float64)
    with open(os.path.join(out_dir, f"{n}.json")) as f:
        meta = json.load(f)
    with open(os.path.join(out_dir, f"{n}.ptx")) as f:
        text = f.read()
    # OpenCL's work-item functions add the launch's global offsets (%envreg registers),
    # which a CUDA launch leaves undefined: clgemm launches with none, so they are 0
    text = re.sub(r"mov\.(b|u)32\s+(%r\d+),\s*%envreg\d+;", r"mov.\g<1>32 \2, 0;", text)
    assert "%envreg" not in text, "an OpenCL environment register used otherwise: map it"
    path = os.path.join(out_dir, f"{n}.cuda.ptx")
    with open(path, "w") as f:
        f.write(text)
    fn = cp.RawModule(path=path).get_function("clgemm_sgemm")
    wg_n, wg_m = meta["wg"]
    tile_n, tile_m = meta["tile"]
    grid = (-(-n // tile_n), -(-n // tile_m))
    args = (np.int32(n), np.int32(n), np.int32(n), np.float32(1.0), np.float32(0.0),
            a, np.int32(n), np.int32(0), b, np.int32(n), np.int32(0), c, np.int32(n),
            np.int32(0))
    times = []
    for _ in range(reps):
        c.fill(float("nan"))
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn(grid, (wg_n, wg_m), args)
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e-3)
    err = float(np.linalg.norm(cp.asnumpy(c).astype(np.float64) - ref) / np.linalg.norm(ref))
    t = float(np.median(times))
    x, y = torch.as_tensor(a, device="cuda"), torch.as_tensor(b, device="cuda")
    torch.matmul(x, y)
    torch.cuda.synchronize()
    tt = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.matmul(x, y)
        end.record()
        end.synchronize()
        tt.append(start.elapsed_time(end) * 1e-3)
    tb = float(np.median(tt))
    print(json.dumps({"n": n, "schedule": meta["schedule"], "clgemm_s": t,
                      "clgemm_tflops": 2 * n ** 3 / t / 1e12, "rel_error": err,
                      "cublas_s": tb, "cublas_tflops": 2 * n ** 3 / tb / 1e12,
                      "ratio_to_cublas": tb / t}), flush=True)


# What `metrics` asks ncu for: the FMA pipe, issue and stall reasons, occupancy and its
# limits, shared-memory wavefronts and bank conflicts, L1/L2/DRAM throughput.
METRICS = ",".join([
    r"regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "launch__registers_per_thread",
    "launch__occupancy_limit_registers",
    "launch__occupancy_limit_shared_mem",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "l1tex__throughput.avg.pct_of_peak_sustained_active",
    "lts__throughput.avg.pct_of_peak_sustained_elapsed",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__time_duration.sum",
])


if __name__ == "__main__":
    verb = sys.argv[1] if len(sys.argv) > 1 else ""
    if verb == "dump":
        dump(sys.argv[2], [int(x) for x in sys.argv[3:]])
    elif verb == "sass":
        sass(sys.argv[2])
    elif verb == "launch":
        launch(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    elif verb == "metrics":
        print(METRICS)
    else:
        sys.exit(__doc__)
