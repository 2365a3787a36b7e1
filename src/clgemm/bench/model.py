"""The model-workload suite: a trace of a model's products replayed one call at a time through
the public API on device arrays, beside PyTorch (cuBLAS fp32, TF32 off) and numpy, with the
whole trace's wall time and each product's.

What is timed is what a framework would pay: `clgemm.matmul(a, b, trans_a=..., trans_b=...)`
on arrays from `clgemm.to_device`, its output allocated by the call, the calls chained with
one wait at the end; the peers likewise (`torch.matmul` on CUDA tensors, synchronised once;
`np.matmul`). Each product's accuracy is checked once against float64 on sampled rows, into
an output poisoned with NaN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime import get_runtime
from ..select.replay import Call, read_trace

CHECK_ROWS = 64  # rows of each product compared with float64 (all columns)


@dataclass(frozen=True)
class ModelOptions:
    trace: str
    device: object = None
    repeats: int = 3  # timed passes over the trace (the median is reported)
    peers: tuple[str, ...] = ("torch", "numpy")
    seed: int = 0
    min_shape_s: float = 0.05  # each product's own loop runs at least this long
    quiet: bool = False


def trace_calls(path: str | Path) -> list[Call]:
    calls = [e for e in read_trace(path) if isinstance(e, Call)]
    if not calls:
        raise ValueError(f"{path}: the trace holds no products")
    return calls


def key_of(call: Call) -> tuple:
    """What tells two products apart: their shape, layout and batch."""
    return call.shape + (call.batch,)


def class_of(call: Call) -> str:
    return call.name.split(".")[0] if call.name else f"{call.m}x{call.n}x{call.k}"


class _Operands:
    """Random operands of every distinct product, on the host and (lazily) on each side."""

    def __init__(self, calls: list[Call], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.host: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for c in calls:
            if key_of(c) not in self.host:
                lead = (c.batch,) if c.batch > 1 else ()
                a = rng.standard_normal(lead + ((c.k, c.m) if c.trans_a else (c.m, c.k)),
                                        np.float32)
                b = rng.standard_normal(lead + ((c.n, c.k) if c.trans_b else (c.k, c.n)),
                                        np.float32)
                self.host[key_of(c)] = (a, b)


def _t(x: np.ndarray) -> np.ndarray:
    """The transpose of each matrix (of a matrix, or of a batch of them)."""
    return np.swapaxes(x, -1, -2)


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


# Batches timed at the final batch size (each at least min_shape_s long): the best of one
# was a single sample for a product over min_shape_s, and one slow sample on a shared host
# set a class's figure (PoCL, 1024 x 2304 x 768: 70.9 ms in one run, 18.4-19.1 alone).
FINAL_BATCHES = 3


def _loop_seconds(run_once, sync, min_s: float) -> float:
    """Seconds per call of `run_once`, chained, one `sync` at the end of each batch: batches
    of 1, 4, 16, ... calls until one lasts `min_s`, then FINAL_BATCHES of that size; the
    best batch's time per call."""
    run_once()
    sync()
    n, best, final = 1, float("inf"), 0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            run_once()
        sync()
        wall = time.perf_counter() - t0
        best = min(best, wall / n)
        if wall >= min_s or n >= 4096 or final:
            final += 1
            if final >= FINAL_BATCHES:
                return best
        else:
            n *= 4


class _Clgemm:
    name = "clgemm"

    def __init__(self, ops: _Operands, device) -> None:
        import clgemm

        self.clgemm = clgemm
        self.rt = get_runtime(device)
        self.dev = {s: (clgemm.to_device(a, self.rt.device), clgemm.to_device(b, self.rt.device))
                    for s, (a, b) in ops.host.items()}

    def call(self, c: Call):
        a, b = self.dev[key_of(c)]
        return self.clgemm.matmul(a, b, trans_a=c.trans_a, trans_b=c.trans_b)

    def sync(self) -> None:
        self.rt.user_queue.finish()

    def checked(self, c: Call) -> np.ndarray:
        a, b = self.dev[key_of(c)]
        lead = (c.batch,) if c.batch > 1 else ()
        out = self.clgemm.to_device(np.full(lead + (c.m, c.n), np.nan, np.float32),
                                    self.rt.device)
        self.clgemm.matmul(a, b, C=out, trans_a=c.trans_a, trans_b=c.trans_b)
        return out.get()

    def lane(self, c: Call) -> str:
        p = self.clgemm.plan(c.m, c.n, c.k, trans_a=c.trans_a, trans_b=c.trans_b,
                             device=self.rt.device, batch=c.batch if c.batch > 1 else None)
        return f"{p.lane.name} {p.lane.schedule.key()}"


class _Torch:
    name = "torch"

    def __init__(self, ops: _Operands) -> None:
        import torch  # noqa: PLC0415 - optional peer

        if not torch.cuda.is_available():
            raise RuntimeError("PyTorch has no CUDA device")
        self.torch = torch
        torch.backends.cuda.matmul.allow_tf32 = False
        self.dev = {s: (torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda())
                    for s, (a, b) in ops.host.items()}

    def call(self, c: Call):
        a, b = self.dev[key_of(c)]
        return self.torch.matmul(a.transpose(-1, -2) if c.trans_a else a,
                                 b.transpose(-1, -2) if c.trans_b else b)

    def sync(self) -> None:
        self.torch.cuda.synchronize()


class _Numpy:
    name = "numpy"

    def __init__(self, ops: _Operands) -> None:
        self.host = ops.host

    def call(self, c: Call):
        a, b = self.host[key_of(c)]
        return np.matmul(_t(a) if c.trans_a else a, _t(b) if c.trans_b else b)

    def sync(self) -> None:
        pass


def _peers(names: tuple[str, ...], ops: _Operands) -> tuple[list, dict]:
    made, absent = [], {}
    for name in names:
        try:
            made.append(_Torch(ops) if name == "torch" else _Numpy(ops))
        except Exception as exc:  # noqa: BLE001 - an absent peer is reported, not fatal
            absent[name] = f"{type(exc).__name__}: {exc}"
    return made, absent


def _accuracy(ops: _Operands, c: Call, got: np.ndarray, rng) -> dict:
    a, b = ops.host[key_of(c)]
    if c.batch > 1:  # the last product of the batch (the one a wrong stride would miss)
        a, b, got = a[-1], b[-1], got[-1]
    op_a = a.T if c.trans_a else a
    op_b = b.T if c.trans_b else b
    rows = np.sort(rng.choice(c.m, size=min(CHECK_ROWS, c.m), replace=False))
    ref = op_a[rows].astype(np.float64) @ op_b.astype(np.float64)
    norm = float(np.linalg.norm(ref)) or 1.0
    err = float(np.linalg.norm(got[rows] - ref)) / norm
    np_err = float(np.linalg.norm(op_a[rows] @ op_b - ref)) / norm
    return {"rel_error": err, "numpy_f32_rel_error": np_err,
            "ratio_to_numpy": err / np_err if np_err > 0 else None,
            "all_written": bool(np.isfinite(got).all()), "rows_checked": int(len(rows))}


def run_model(opts: ModelOptions, progress=print) -> dict:
    """Measure the trace; returns the `model` section of the artifact."""
    calls = trace_calls(opts.trace)
    ops = _Operands(calls, opts.seed)
    ours = _Clgemm(ops, opts.device)
    peers, absent = _peers(opts.peers, ops)
    sides = [ours] + peers
    rng = np.random.default_rng(opts.seed + 1)
    distinct = list({key_of(c): c for c in calls}.values())

    rows = []
    for c in distinct:  # plans, compiles and the check first: none of it is timed
        names = sorted({x.name for x in calls if key_of(x) == key_of(c)})
        row = {"name": ", ".join(names), "class": class_of(c), "m": c.m, "n": c.n, "k": c.k,
               "trans_a": c.trans_a, "trans_b": c.trans_b, "batch": c.batch,
               "count": sum(x.repeat for x in calls if key_of(x) == key_of(c)),
               "lane": ours.lane(c), "accuracy": _accuracy(ops, c, ours.checked(c), rng)}
        rows.append(row)
        if not opts.quiet:
            progress(f"  checked {c.batch}x{c.m}x{c.n}x{c.k} ta={int(c.trans_a)} tb={int(c.trans_b)}: "
                     f"error {row['accuracy']['ratio_to_numpy'] or 0:.2f}x numpy's")
    for side in sides:  # each product's own loop: seconds per call
        for row, c in zip(rows, distinct):
            row[f"{side.name}_s"] = _loop_seconds(lambda: side.call(c), side.sync,
                                                  opts.min_shape_s)
    totals = {}
    for side in sides:  # the whole trace in its order, chained, one wait per pass
        passes = []
        for _ in range(max(1, opts.repeats) + 1):
            t0 = time.perf_counter()
            for c in calls:
                for _ in range(c.repeat):
                    side.call(c)
            side.sync()
            passes.append(time.perf_counter() - t0)
        totals[side.name] = {"median_s": _median(passes[1:]), "passes_s": passes[1:],
                             "warm_pass_s": passes[0]}
        if not opts.quiet:
            progress(f"  {side.name}: trace {totals[side.name]['median_s'] * 1e3:.2f} ms")
    flops = sum(c.flops * c.repeat for c in calls)
    by_class: dict[str, dict] = {}
    row_of = {key_of(c): row for row, c in zip(rows, distinct)}
    for c in calls:  # by each call's own class (products of one shape can serve two)
        row = row_of[key_of(c)]
        agg = by_class.setdefault(class_of(c), {"count": 0, "flops": 0.0})
        agg["count"] += c.repeat
        agg["flops"] += c.flops * c.repeat
        for side in sides:
            key = f"{side.name}_s"
            agg[key] = agg.get(key, 0.0) + row[key] * c.repeat
    for row in rows + list(by_class.values()):
        for peer in peers:
            row[f"ratio_to_{peer.name}"] = row["clgemm_s"] / row[f"{peer.name}_s"]
    summary = {"flops": flops, "calls": sum(c.repeat for c in calls),
               "products": len(distinct), "clgemm_s": totals["clgemm"]["median_s"]}
    for peer in peers:
        summary[f"{peer.name}_s"] = totals[peer.name]["median_s"]
        summary[f"ratio_to_{peer.name}"] = summary["clgemm_s"] / summary[f"{peer.name}_s"]
    worst = max((r["accuracy"]["ratio_to_numpy"] or 0.0) for r in rows)
    return {"trace": str(opts.trace), "summary": summary, "totals": totals,
            "classes": by_class, "products": rows, "absent_peers": absent,
            "max_error_ratio_to_numpy": worst,
            "protocol": {"repeats": opts.repeats, "min_shape_s": opts.min_shape_s,
                         "final_batches": FINAL_BATCHES,
                         "seed": opts.seed, "check_rows": CHECK_ROWS,
                         "clgemm": "clgemm.matmul on device arrays, output allocated by the "
                                   "call, chained, one user-queue finish per pass",
                         "torch": "torch.matmul on CUDA tensors (allow_tf32=False), one "
                                  "synchronize per pass",
                         "numpy": "np.matmul on the host"}}


def format_model(section: dict) -> str:
    """A short table of the model section (classes, then the total)."""
    s = section["summary"]
    peers = [p for p in ("torch", "numpy") if f"{p}_s" in s]
    head = f"{'class':<16}{'calls':>7}{'clgemm ms':>12}" + "".join(
        f"{p + ' ms':>12}{'ratio':>8}" for p in peers)
    lines = [f"trace {section['trace']}", head]
    for name, c in section["classes"].items():
        lines.append(f"{name:<16}{c['count']:>7}{c['clgemm_s'] * 1e3:>12.3f}" + "".join(
            f"{c[p + '_s'] * 1e3:>12.3f}{c['ratio_to_' + p]:>8.2f}" for p in peers))
    lines.append(f"{'total (trace)':<16}{s['calls']:>7}{s['clgemm_s'] * 1e3:>12.3f}" + "".join(
        f"{s[p + '_s'] * 1e3:>12.3f}{s['ratio_to_' + p]:>8.2f}" for p in peers))
    lines.append(f"largest error ratio to numpy float32: {section['max_error_ratio_to_numpy']:.2f}")
    return "\n".join(lines)


def run_model_artifact(opts: ModelOptions, out: str, argv: list[str]) -> tuple[dict, list | None]:
    """Measure the trace into a `kind: model` artifact at `out` (valid on disk at every step:
    an interrupted run leaves `complete: false`)."""
    from ..device import get_device
    from .env import fingerprint, utc_now
    from .metrics import SCHEMA_VERSION, ArtifactWriter

    writer = ArtifactWriter(out, {
        "schema_version": SCHEMA_VERSION, "kind": "model", "complete": False,
        "created_utc": utc_now(), "finished_utc": None, "command": list(argv),
        "env": fingerprint(get_device(opts.device), argv), "notes": []})
    complete = False
    try:
        writer.set("model", run_model(opts, progress=print))
        complete = True
    finally:
        errors = writer.finish(complete)
    return writer.data, errors
