"""The roofline: the device's float32 FMA peak and memory bandwidth (microbenchmarks), each
schedule's arithmetic intensity from its tile sizes, and kernels placed against the roof.

Traffic model of one work-group tile TM x TN over K (float32): it loads (TM + TN) * K * 4 bytes
and stores TM * TN * 4 bytes for 2 * TM * TN * K flops. An operand not staged through local
memory is read by every work-item that needs it: A is re-read by the wg_n work-items of a row,
B by the wg_m of a column (caches may do better; the model is the pessimistic prior)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..schedule import Schedule

_CHAINS = 16

MODEL = ("per work-group tile TM x TN over K: loads (TM + TN) * K * 4 bytes (an unstaged operand "
         "re-read by each work-item across the other dimension), stores TM * TN * 4 bytes, "
         "2 * TM * TN * K flops")

FMA_SOURCE = """
__kernel void fma_peak(__global float* out, const float a, const float b, const int iters) {
  const int gid = get_global_id(0);
""" + "".join(f"  float x{i} = (float)gid * 1e-7f + {i}.0f;\n" for i in range(_CHAINS)) + """
  for (int i = 0; i < iters; i++) {
""" + "".join(f"    x{i} = fma(x{i}, a, b);\n" for i in range(_CHAINS)) + """
  }
  out[gid] = """ + " + ".join(f"x{i}" for i in range(_CHAINS)) + """;
}
"""

COPY_SOURCE = """
__kernel void copy4(__global const float4* restrict src, __global float4* restrict dst) {
  const size_t i = get_global_id(0);
  dst[i] = src[i];
}
"""


def intensity(schedule: Schedule, k: int = 2048) -> float:
    """Flops per byte of global traffic of one work-group tile over depth k."""
    tm, tn = schedule.tile_m, schedule.tile_n
    a_bytes = tm * k * 4 * (1 if schedule.stage_a else schedule.wg_n)
    b_bytes = tn * k * 4 * (1 if schedule.stage_b else schedule.wg_m)
    c_bytes = tm * tn * 4
    return 2.0 * tm * tn * k / (a_bytes + b_bytes + c_bytes)


def attainable_gflops(schedule: Schedule, peak: float, bw: float, k: int = 2048) -> float:
    """Roofline bound of a schedule: min(peak GFLOPS, intensity * bandwidth GB/s)."""
    return min(float(peak), intensity(schedule, k) * float(bw))


def _best_time(rt, run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        best = min(best, rt.timed(run))  # event time, or wall where the clock is implausible
    return max(best, 1e-9)


def _fma_source(form: str) -> str:
    src = FMA_SOURCE
    for i in range(_CHAINS):
        src = src.replace(f"x{i} = fma(x{i}, a, b)", f"x{i} = " + form.format(i=i))
    return src


# Two spellings: fma() is a library call on some CPU drivers (PoCL), while x * a + b under
# -cl-mad-enable is contracted to the hardware FMA by every compiler we know; the best counts.
_FMA_FORMS = {"fma()": "fma(x{i}, a, b)", "x*a+b (-cl-mad-enable)": "x{i} * a + b"}


def measure_peak(rt, quick: bool = False) -> dict:
    """float32 FMA throughput of a register-only loop with independent chains."""
    import pyopencl as cl

    d = rt.device
    wg = min(256, d.max_work_group_size)
    groups = d.compute_units * (4 if d.type != "GPU" else 32)
    global_size = groups * wg
    out = rt.buffer(4 * global_size, "fma out")
    target = 0.01 if quick else 0.1
    forms = {}
    for name, form in _FMA_FORMS.items():
        kernel = rt.build(_fma_source(form), options="-cl-mad-enable").kernel("fma_peak")
        iters = 64
        launch = lambda: cl.enqueue_nd_range_kernel(rt.queue, kernel, (global_size,), (wg,))  # noqa: E731
        while True:
            kernel.set_args(out, np.float32(0.9999999), np.float32(1e-7), np.int32(iters))
            t = _best_time(rt, launch, 1)
            if t >= target or iters >= 1 << 22:
                break
            iters = min(iters * max(2, int(target / t)), 1 << 22)
        t = _best_time(rt, launch, 2 if quick else 5)
        forms[name] = {"gflops": 2.0 * _CHAINS * iters * global_size / t / 1e9, "seconds": t,
                       "iters": iters}
    best = max(forms, key=lambda f: forms[f]["gflops"])
    return {"gflops": forms[best]["gflops"], "form": best, "forms": forms,
            "global_size": global_size, "local_size": wg, "chains": _CHAINS,
            "method": "register-only multiply-add loop, independent chains, OpenCL event time, "
                      "best of the spellings"}


def measure_bandwidth(rt, quick: bool = False) -> dict:
    """Device copy kernel (float4): bytes read + written per second."""
    import pyopencl as cl

    kernel = rt.build(COPY_SOURCE).kernel("copy4")
    d = rt.device
    want = (16 if quick else 256) * 2**20 if d.type == "GPU" else (8 if quick else 64) * 2**20
    nbytes = int(min(want, d.max_alloc_bytes // 2, d.global_mem_bytes // 8)) // 16 * 16
    src = rt.buffer(nbytes, "copy src")
    dst = rt.buffer(nbytes, "copy dst")
    cl.enqueue_fill_buffer(rt.queue, src, np.float32(1.0), 0, nbytes).wait()
    kernel.set_args(src, dst)
    n4 = nbytes // 16
    t = _best_time(rt, lambda: cl.enqueue_nd_range_kernel(rt.queue, kernel, (n4,), None),
                   3 if quick else 10)
    return {"gbs": 2.0 * nbytes / t / 1e9, "seconds": t, "bytes_each_way": nbytes,
            "method": "float4 device-to-device copy kernel, (read + written) bytes / event time, best"}


def place(schedules: list[tuple[str, Schedule, float | None, list | None]], peak: float, bw: float,
          k: int) -> list[dict]:
    out = []
    for label, s, measured, shape in schedules:
        kk = shape[2] if shape else k
        ai = intensity(s, kk)
        bound = attainable_gflops(s, peak, bw, kk)
        out.append({"label": label, "schedule": s.key(), "shape": shape, "intensity": ai,
                    "attainable_gflops": bound, "measured_gflops": measured,
                    "fraction_of_bound": measured / bound if measured else None})
    return out


def run_roofline(device, out: str | Path, png: str | Path | None, artifacts: list[str],
                 k: int = 2048, quick: bool = False):
    from ..lanes.fp32 import SAFE_SCHEDULE
    from ..runtime import get_runtime
    from ..select.table import DEFAULT_CPU, DEFAULT_GPU
    from .env import fingerprint, utc_now
    from .metrics import SCHEMA_VERSION, ArtifactWriter, load_artifact

    import sys

    rt = get_runtime(device)
    writer = ArtifactWriter(out, {
        "schema_version": SCHEMA_VERSION, "kind": "roofline", "complete": False,
        "created_utc": utc_now(), "finished_utc": None, "command": list(sys.argv),
        "env": fingerprint(rt.device), "roofline": None, "notes": [],
    })
    complete = False
    try:
        peak = measure_peak(rt, quick)
        bw = measure_bandwidth(rt, quick)
        points: list[tuple[str, Schedule, float | None, list | None]] = []
        for path in artifacts:
            art = load_artifact(path)
            for e in art.get("results", []):
                if e.get("family") == "clgemm" and e.get("status") == "ok" and e.get("schedule"):
                    points.append((f"{e['method']} {'x'.join(map(str, e['shape']))}",
                                   Schedule.from_key(e["schedule"]), e["timing"]["gflops_peak"],
                                   e["shape"]))
        for name, s in (("DEFAULT_GPU", DEFAULT_GPU), ("DEFAULT_CPU", DEFAULT_CPU),
                        ("SAFE_SCHEDULE", SAFE_SCHEDULE)):
            points.append((name, s, None, None))
        writer.set("roofline", {
            "peak_gflops": peak["gflops"], "bandwidth_gbs": bw["gbs"],
            "ridge_flop_per_byte": peak["gflops"] / bw["gbs"], "peak": peak, "bandwidth": bw,
            "k_for_intensity": k, "model": MODEL,
            "kernels": place(points, peak["gflops"], bw["gbs"], k),
            "from_artifacts": list(artifacts),
        })
        complete = True
    finally:
        errors = writer.finish(complete)
    if errors:
        raise ValueError("roofline artifact does not match the schema: " + "; ".join(errors[:5]))
    png_path = None
    if png is not False:
        png_path = Path(png) if png else Path(out).with_suffix(".png")
        try:
            plot(writer.data, png_path)
        except ImportError:
            png_path = None
    return writer.data, png_path


def plot(data: dict, path: str | Path, title: str | None = None) -> Path:
    """Log-log roofline with each kernel at (intensity, measured or bound)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = data["roofline"]
    peak, bw = r["peak_gflops"], r["bandwidth_gbs"]
    xs = [kern["intensity"] for kern in r["kernels"]] or [1.0]
    lo, hi = min(min(xs) / 4, peak / bw / 8), max(max(xs) * 4, peak / bw * 8)
    grid = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(grid, np.minimum(peak, grid * bw), "k-", lw=2, label=f"roof: {peak:.0f} GFLOPS, {bw:.0f} GB/s")
    for kern in r["kernels"]:
        if kern["measured_gflops"]:
            ax.loglog(kern["intensity"], kern["measured_gflops"], "o", label=kern["label"])
            ax.loglog([kern["intensity"]] * 2, [kern["measured_gflops"], kern["attainable_gflops"]],
                      ":", color="grey")
        else:
            ax.loglog(kern["intensity"], kern["attainable_gflops"], "x", color="grey")
            ax.annotate(kern["label"], (kern["intensity"], kern["attainable_gflops"]), fontsize=7)
    ax.set_xlabel("arithmetic intensity (flop / byte of global traffic, tile model)")
    ax.set_ylabel("GFLOPS")
    ax.set_title(title or f"roofline: {data['env']['device']['name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
