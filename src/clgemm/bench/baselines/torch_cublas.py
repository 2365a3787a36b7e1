"""cuBLAS through PyTorch: float32 with TF32 off (the fp32 peer) and on (a faster, less
accurate peer), kernel time by CUDA events and the numpy-in/numpy-out path split in three."""

from __future__ import annotations

import time


from ..protocol import median, summarize_times


def _torch():
    import torch  # noqa: PLC0415 - optional peer

    return torch


def presence() -> tuple[str, str | None]:
    try:
        torch = _torch()
    except Exception as exc:  # noqa: BLE001
        return "absent", f"PyTorch not importable ({type(exc).__name__}: {exc})"
    try:
        if not torch.cuda.is_available():
            return "absent", "PyTorch has no CUDA device"
    except Exception as exc:  # noqa: BLE001
        return "absent", f"torch.cuda failed ({exc})"
    return "present", None


def describe() -> dict:
    torch = _torch()
    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0)}


def measure(case, inputs, protocol) -> list[dict]:
    torch = _torch()
    m, n, k = case.shape
    dev = torch.device("cuda")
    saved = torch.backends.cuda.matmul.allow_tf32
    entries = []
    try:
        gpu_sets = [(torch.from_numpy(a).to(dev), torch.from_numpy(b).to(dev)) for a, b in inputs.sets]
        out = torch.empty((m, n), dtype=torch.float32, device=dev)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            method = "cublas_tf32" if tf32 else "cublas_fp32"
            for i in range(protocol.warmup):
                a, b = gpu_sets[i % len(gpu_sets)]
                torch.mm(a, b, out=out)
            torch.cuda.synchronize()
            times, start = [], time.perf_counter()
            for r in range(protocol.repeats):
                a, b = gpu_sets[r % len(gpu_sets)]
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                torch.mm(a, b, out=out)
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1) * 1e-3)
                if r >= 2 and time.perf_counter() - start > protocol.max_measure_s:
                    break
            wall = []
            for r in range(min(protocol.repeats, len(times))):
                a, b = gpu_sets[r % len(gpu_sets)]
                t0 = time.perf_counter()
                torch.mm(a, b, out=out)
                torch.cuda.synchronize()
                wall.append(time.perf_counter() - t0)
            # Accuracy: set 0 into an output poisoned with NaN.
            out.fill_(float("nan"))
            torch.mm(gpu_sets[0][0], gpu_sets[0][1], out=out)
            result = out.cpu().numpy()
            # End to end: numpy in, numpy out.
            parts = {"h2d_s": [], "kernel_s": [], "d2h_s": [], "total_s": []}
            for r in range(protocol.host_repeats):
                a_h, b_h = inputs.sets[r % len(inputs.sets)]
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                a_d = torch.from_numpy(a_h).to(dev)
                b_d = torch.from_numpy(b_h).to(dev)
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                c_d = torch.mm(a_d, b_d)
                torch.cuda.synchronize()
                t2 = time.perf_counter()
                c_h = c_d.cpu().numpy()
                t3 = time.perf_counter()
                del c_h
                for key, v in (("h2d_s", t1 - t0), ("kernel_s", t2 - t1), ("d2h_s", t3 - t2),
                               ("total_s", t3 - t0)):
                    parts[key].append(v)
            host = {key: median(v) for key, v in parts.items()}
            host["repeats"] = protocol.host_repeats
            host["note"] = "torch.from_numpy -> .cuda() (synchronised), torch.mm (synchronised), .cpu()"
            entries.append({
                "method": method, "family": "cublas", "shape": list(case.shape), "tag": case.tag,
                "status": "ok", "reason": None, "schedule": None,
                "timing": summarize_times(times, m, n, k, "cuda-event"),
                "call": summarize_times(wall, m, n, k, "wall-drained"),
                "host_path": host,
                "accuracy": inputs.accuracy(result),
                "note": f"PyTorch {torch.__version__} torch.mm, allow_tf32={tf32}",
            })
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return entries
