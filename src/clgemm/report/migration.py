"""The migration report: what each OpenCL implementation offers clgemm and what moving a tuned
table between implementations costs, generated from the committed pipeline records alone.

    clgemm report --migration [--records records] -o docs --name migration

Each implementation's record `records/<slug>/<date>-pipeline/` (benchmarks/impls/) holds its
KPI artifact (kpi.json: the table's choice, the untuned default and the other implementations'
tables in one run, numpy beside), roofline.json (the FMA peak), model-*.json (a model trace),
capabilities.json (benchmarks/impls/capabilities.py), table.json (the table it shipped) and
transfer.json (the other implementations' tables beside its own, at the middle KPI size).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_text
from .migration_text import GPU_PLACEHOLDER, ROCM_ON_PAPER
from .records import Record, load_records
from .render import Link, _fmt, _html, _md

# <date>-pipeline, or <date>-pipeline-<n> for a re-run that supersedes one of the same day
PIPELINE_ID = re.compile(r"-pipeline(-\d+)?$")
# The bars of issue 22, checked on the artifacts.
TUNED_OVER_DEFAULT = 2.0
BEST_OVER_NUMPY = 0.8


@dataclass(frozen=True)
class ImplRun:
    """One implementation's pipeline record, its artifacts read."""

    record: Record
    kpi: dict | None
    roofline: dict | None
    model: dict | None
    caps: dict | None
    table: dict | None
    transfer: dict | None = None  # the other tables beside this one's (else inside kpi)

    @property
    def name(self) -> str:
        if self.caps:
            d = self.caps["device"]
            return f"{d['platform']} ({d['name']})"
        if self.kpi:
            d = self.kpi["env"]["device"]
            return f"{d['platform']} ({d['name']})"
        return self.record.slug

    @property
    def platform(self) -> str:
        if self.caps:
            return self.caps["device"]["platform"]
        return (self.kpi or {}).get("env", {}).get("device", {}).get("platform", self.record.slug)

    def artifact(self, name: str) -> Path:
        return self.record.path / name


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pipeline_runs(records: list[Record]) -> list[ImplRun]:
    """The latest current pipeline record of each device folder, CPUs after GPUs."""
    latest: dict[str, Record] = {}
    for r in records:
        if r.current and PIPELINE_ID.search(r.id):
            if r.slug not in latest or (r.date, r.id) > (latest[r.slug].date, latest[r.slug].id):
                latest[r.slug] = r
    runs = []
    for slug in sorted(latest, key=lambda s: (not s.startswith("nvidia"), s)):
        r = latest[slug]
        models = sorted(a for a in r.artifacts if a.startswith("model-") and a.endswith(".json"))
        runs.append(ImplRun(r, _read(r.path / "kpi.json"), _read(r.path / "roofline.json"),
                            _read(r.path / models[0]) if models else None,
                            _read(r.path / "capabilities.json"), _read(r.path / "table.json"),
                            _read(r.path / "transfer.json")))
    return runs


# ---- figures from the artifacts -----------------------------------------------------------
def _entries(kpi: dict | None) -> list[dict]:
    return [e for e in (kpi or {}).get("results", []) if e.get("status") == "ok"]


def _sizes(kpi: dict | None) -> list[int]:
    return sorted({e["shape"][0] for e in _entries(kpi) if len(set(e["shape"])) == 1})


def _middle(kpi: dict | None) -> int | None:
    sizes = _sizes(kpi)
    return 1024 if 1024 in sizes else (sizes[len(sizes) // 2] if sizes else None)


def _gflops(e: dict | None, kind: str = "timing") -> float | None:
    if not e or not e.get(kind):
        return None
    return e[kind].get("gflops_median")


def _entry(kpi: dict | None, method: str, size: int) -> dict | None:
    for e in _entries(kpi):
        if e["method"] == method and e["shape"] == [size, size, size]:
            return e
    return None


def _default_method(kpi: dict | None) -> str | None:
    """The method of the untuned default (DEFAULT_CPU or DEFAULT_GPU by the device's type)."""
    from ..select.table import DEFAULT_CPU, DEFAULT_GPU

    if not kpi:
        return None
    default = DEFAULT_GPU if kpi["env"]["device"].get("type") == "GPU" else DEFAULT_CPU
    return f"clgemm:{default.key()}"


def _table_key(run: ImplRun) -> str | None:
    """The schedule key of the implementation's table default (None without its table)."""
    from ..select.table import Table

    return Table.from_json(run.table, "table.json").default.key() if run.table else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _peak(run: ImplRun) -> float | None:
    return (run.roofline or {}).get("roofline", {}).get("peak_gflops")


def _build(run: ImplRun, size: int | None) -> dict:
    e = _entry(run.kpi, "clgemm", size) if size else None
    return (e or {}).get("build", {})


def _caps_offers(run: ImplRun) -> dict:
    if run.caps:
        return run.caps["offers"]
    caps = (run.kpi or {}).get("env", {}).get("device", {}).get("capabilities", {})
    return {**caps, "local_mem_bytes": caps.get("local_mem_bytes")}


def _yes(x) -> str:
    return "—" if x is None else ("yes" if x else "no")


# ---- blocks ------------------------------------------------------------------------------
def migration_blocks(runs: list[ImplRun], link) -> list[tuple]:
    B: list[tuple] = [
        ("h", 1, "clgemm on every OpenCL implementation we reach: a migration report"),
        ("p", ["Generated by `clgemm report --migration` from the pipeline records (",
               "records/<device>/<date>-pipeline, made by benchmarks/impls/tune.sh then "
               "bench.sh); every figure links to its artifact. Medians of OpenCL-event kernel "
               "times unless a column says call (wall time per call, queue drained), which is "
               "what numpy's figure is. The CPU runs shared 2 cores with other work: read the "
               "recorded load (load.txt) beside each figure."]),
    ]
    if not runs:
        return B + [("p", ["No pipeline record found."])]
    B += _offers_blocks(runs, link)
    B += _speed_blocks(runs, link)
    B += _kpi_blocks(runs, link)
    B += _correctness_blocks(runs, link)
    B += _transfer_blocks(runs, link)
    B += _unseeded_blocks(runs, link)
    B += _model_blocks(runs, link)
    B += _bar_blocks(runs)
    # each record's own claim: what its figures leave out (a missing implementation, a
    # reason for a missed bar) is said there
    B += [("h", 2, "What each record says")] + [
        ("p", [f"{r.name}: {r.record.claim} ", Link("record", link(r.artifact("record.json")))])
        for r in runs]
    if not any(r.record.slug.startswith("nvidia") for r in runs):
        B += [("h", 2, "NVIDIA GPU (to be filled from a GPU run)"), ("p", [GPU_PLACEHOLDER])]
    B += [("h", 2, "ROCm/AMD on paper")] + [("p", [para]) for para in ROCM_ON_PAPER]
    return B


def _src(run: ImplRun, name: str, link) -> Link:
    return Link(name, link(run.artifact(name)))


def _offers_blocks(runs, link) -> list[tuple]:
    rows = []
    for run in runs:
        o = _caps_offers(run)
        size = _middle(run.kpi)
        b = _build(run, size)
        lanes = [x for x in (run.caps or {}).get("lanes", [])]
        ok = ", ".join(x["lane"] for x in lanes if x["status"] == "ok") or "—"
        not_ok = "; ".join(f"{x['lane']}: {x['status']} ({x.get('why', '')[:80]})"
                           for x in lanes if x["status"] != "ok") or "none"
        tc = o.get("tensor_cores") or {}
        local = o.get("local_mem_bytes")
        rows.append([
            run.name, _yes(o.get("fp64")), _yes(o.get("subgroups")), _yes(o.get("inline_ptx")),
            _fmt(local / 1024 if local else None, ".0f"),
            _fmt(b.get("cold_s"), ".2f"), _fmt(b.get("warm_s"), ".3f"),
            ok, not_ok,
            ("yes" if tc.get("available") else f"no ({str(tc.get('why', '—'))[:60]})"),
            o.get("abft_checksums", "—"),
            _src(run, "capabilities.json", link) if run.caps else "—",
        ])
    return [("h", 2, "What each implementation offers"),
            ("p", ["Capabilities as the device reports them and as probed (inline PTX compiles "
                   "and runs, the tensor-core probe); compile time of the table's kernel at the "
                   "middle KPI size: cold (new process, empty caches) and warm (from clgemm's "
                   "binary cache); lanes and guards each tried on fresh random odd-shaped inputs "
                   "against float64 (capabilities.py)."]),
            ("table", ["implementation", "fp64", "subgroups", "inline PTX", "local mem KiB",
                       "compile cold s", "compile warm s", "lanes and guards that run",
                       "that do not", "tensor cores", "ABFT checksums", "source"], rows)]


def _speed_blocks(runs, link) -> list[tuple]:
    rows = []
    for run in runs:
        size = _middle(run.kpi)
        if size is None:
            rows.append([run.name] + ["—"] * 10)
            continue
        tuned = _gflops(_entry(run.kpi, "clgemm", size))
        default = _gflops(_entry(run.kpi, _default_method(run.kpi), size))
        numpy = _gflops(_entry(run.kpi, "numpy_cpu", size), "timing")
        call = _gflops(_entry(run.kpi, "clgemm", size), "call")
        call_default = _gflops(_entry(run.kpi, _default_method(run.kpi), size), "call")
        peak = _peak(run)
        share = _ratio(tuned, peak)
        rows.append([run.name, size, _fmt(tuned), _fmt(default),
                     _fmt(_ratio(tuned, default), ".2f"),
                     _fmt(_ratio(call, call_default), ".2f"), _fmt(peak),
                     _fmt(share and 100 * share, ".0f"),
                     _fmt(numpy), _fmt(_ratio(call, numpy), ".2f"),
                     _src(run, "kpi.json", link) if run.kpi else "—"])
    return [("h", 2, "Tuned vs untuned default vs peak"),
            ("p", ["GFLOPS at the middle KPI size (1024 on the CPU): the shipped table's choice "
                   "(tuned), the built-in default a device without a table would run (untuned, "
                   "measured in the same run), the FMA peak the implementation's own "
                   "microbenchmark reaches (roofline --quick, a short run of its FMA kernel: on "
                   "a loaded CPU, or where the compiler vectorises that kernel worse than the "
                   "GEMM, it reads below the tuned GEMM, and then bounds nothing; a share over "
                   "100% says so), numpy (OpenBLAS) beside."]),
            ("p", ["Kernel figures come from OpenCL event profiling, call figures from the wall "
                   "clock with the queue drained. Where a device's event clock is implausible "
                   "(Rusticl on llvmpipe reads 1 ns for every launch), the kernel figures are "
                   "the wall clock of one launch too (the artifact's protocol.timer says wall): "
                   "the two columns are then two passes at different moments, and on shared "
                   "cores they can differ more than the schedules do (2.7x in Rusticl's first "
                   "record); there the record's chained.json, the table and the default timed "
                   "in interleaved rounds of chained launches, is the fairer ratio."]),
            ("table", ["implementation", "size", "tuned", "untuned default", "tuned / default",
                       "same, call times", "FMA peak", "tuned % of peak", "numpy",
                       "tuned call / numpy", "source"], rows)]


def _kpi_blocks(runs, link) -> list[tuple]:
    rows = []
    for run in runs:
        for size in _sizes(run.kpi):
            e = _entry(run.kpi, "clgemm", size)
            numpy = _gflops(_entry(run.kpi, "numpy_cpu", size))
            rows.append([run.name, size, _fmt(_gflops(e)), _fmt(_gflops(e, "call")),
                         _fmt(numpy), _fmt(_ratio(_gflops(e, "call"), numpy), ".2f"),
                         _fmt((e or {}).get("timing", {}).get("gflops_peak"))])
    return [("h", 2, "KPI sizes"),
            ("p", ["The KPI suite scaled to the device (--scale in each record's command); "
                   "tuned kernel and call medians against numpy's call median."]),
            ("table", ["implementation", "size", "kernel GFLOPS", "call GFLOPS", "numpy GFLOPS",
                       "call / numpy", "kernel best-of-repeats"], rows)]


def _correctness_blocks(runs, link) -> list[tuple]:
    rows = []
    for run in runs:
        ratios = [e["accuracy"]["ratio_to_numpy"] for e in _entries(run.kpi)
                  if e["family"].startswith("clgemm") and e.get("accuracy")]
        written = all(e["accuracy"].get("all_written", False) for e in _entries(run.kpi)
                      if e["family"].startswith("clgemm") and e.get("accuracy"))
        lanes = (run.caps or {}).get("lanes", [])
        lane_ratio = [x["rel_error"] / x["numpy_rel_error"] for x in lanes
                      if x.get("status") == "ok" and x.get("numpy_rel_error")
                      and "approx" not in x["lane"]]
        model_ratio = (run.model or {}).get("model", {}).get("max_error_ratio_to_numpy")
        rows.append([run.name, len(ratios), _fmt(max(ratios) if ratios else None, ".2f"),
                     _yes(written if ratios else None),
                     _fmt(max(lane_ratio) if lane_ratio else None, ".2f"),
                     _fmt(model_ratio, ".2f")])
    return [("h", 2, "Correctness"),
            ("p", ["Relative Frobenius error against float64 on fresh standard-normal inputs, as "
                   "a multiple of numpy float32's on the same inputs (the exact contract: at "
                   "most 2); outputs poisoned with NaN before each call."]),
            ("table", ["implementation", "KPI products", "max error / numpy", "all written",
                       "lanes: max error / numpy", "model trace: max error / numpy"], rows)]


def _transfer_blocks(runs, link) -> list[tuple]:
    origins = [r for r in runs if _table_key(r)]
    if len(origins) < 2:
        return []
    rows = []
    for origin in origins:
        origin_key = _table_key(origin)
        row = [f"{origin.platform}'s table"]
        for target in runs:
            art = target.transfer or target.kpi
            size = _middle(art)
            own = _gflops(_entry(art, "clgemm", size)) if size else None
            if target is origin or origin_key == _table_key(target):
                row.append(f"{_fmt(own)} (own{'' if target is origin else ': the same schedule'})")
                continue
            e = _entry(art, f"clgemm:{origin_key}", size) if size else None
            if e is None:
                ran = [x for x in (art or {}).get("results", [])
                       if x["method"] == f"clgemm:{origin_key}"]
                row.append(f"did not run ({str(ran[0].get('reason'))[:60]})" if ran else "—")
            else:
                row.append(f"{_fmt(_gflops(e))} ({_fmt(_ratio(_gflops(e), own), '.2f')}x own)")
        rows.append(row)
    return [("h", 2, "Moving a tuned table between implementations"),
            ("p", ["Each implementation's tuned default schedule run on the others, in one run "
                   "with their own table (transfer.json, else the KPI run), at the middle KPI "
                   "size (GFLOPS, kernel median; "
                   "in brackets the share of the target's own table). Below 1: what a table "
                   "keyed by the device name alone would have cost on that implementation."]),
            ("table", ["table \\ run on"] + [r.platform for r in runs], rows)]


def _unseeded_blocks(runs, link) -> list[tuple]:
    """An earlier pass whose tune started from nothing (unseeded-transfer.json): its table
    beside the untuned default and the other implementations' tables, in one run."""
    rows = []
    for run in runs:
        if "unseeded-transfer.json" not in run.record.artifacts:
            continue
        art = _read(run.artifact("unseeded-transfer.json"))
        size = _middle(art)
        own = _gflops(_entry(art, "clgemm", size))
        default = _gflops(_entry(art, _default_method(art), size))
        others = [(e["method"].split(":", 1)[1], _gflops(e)) for e in _entries(art)
                  if e["method"].startswith("clgemm:") and e["method"] != _default_method(art)]
        key, best = max(others, key=lambda x: x[1] or 0.0, default=(None, None))
        rows.append([run.name, size, _fmt(own), _fmt(default), key or "—", _fmt(best),
                     _fmt(_ratio(best, own), ".2f"),
                     _src(run, "unseeded-transfer.json", link)])
    if not rows:
        return []
    return [("h", 2, "A tune that starts from nothing"),
            ("p", ["The first pass tuned each implementation for 180 s from an empty database "
                   "(the forest strategy). Its table, measured in one run beside the untuned "
                   "default and the other implementations' tables: the best foreign schedule "
                   "beat it, so tune.sh now seeds the search with every shipped table of the "
                   "device type (the tables above come from seeded passes; Rusticl's re-run "
                   "searched greedily around the seeds, as tune.sh now does)."]),
            ("table", ["implementation", "size", "unseeded table", "untuned default",
                       "best other table's schedule", "its GFLOPS", "over the unseeded table",
                       "source"], rows)]


def _model_blocks(runs, link) -> list[tuple]:
    rows = []
    for run in runs:
        m = (run.model or {}).get("model")
        if not m:
            continue
        s = m["summary"]
        name = next(a for a in run.record.artifacts
                    if a.startswith("model-") and a.endswith(".json"))
        peers = [p for p in ("numpy", "torch") if f"{p}_s" in s]
        rows.append([run.name, Path(m["trace"]).name, s["calls"], _fmt(s["clgemm_s"] * 1e3, ".2f")]
                    + [f"{_fmt(s[f'{p}_s'] * 1e3, '.2f')} ({p}; x{_fmt(s[f'ratio_to_{p}'], '.2f')})"
                       for p in peers[:1]]
                    + [_fmt(m.get("max_error_ratio_to_numpy"), ".2f"), _src(run, name, link)])
    return [("h", 2, "Model trace"),
            ("p", ["The model suite: each product of the trace through clgemm.matmul on device "
                   "arrays, beside numpy in the same process (ratio: clgemm's time over the "
                   "peer's; below 1 clgemm is faster)."]),
            ("table", ["implementation", "trace", "calls", "clgemm ms", "peer ms (ratio)",
                       "max error / numpy", "source"], rows)]


def bars(runs: list[ImplRun]) -> list[tuple[str, bool | None, str]]:
    """Issue 22's bars on these artifacts: (what, met (None: not measured), figures)."""
    out = []
    cpu = [r for r in runs if r.kpi and r.kpi["env"]["device"].get("type") != "GPU"]
    for run in cpu:
        tuned = _gflops(_entry(run.kpi, "clgemm", 1024))
        default = _gflops(_entry(run.kpi, _default_method(run.kpi), 1024))
        r = _ratio(tuned, default)
        out.append((f"{run.platform}: tuned >= {TUNED_OVER_DEFAULT:g}x untuned default at 1024",
                    None if r is None else r >= TUNED_OVER_DEFAULT,
                    f"{_fmt(tuned)} vs {_fmt(default)} GFLOPS = {_fmt(r, '.2f')}x"))
    best, best_ratio = None, None
    for run in cpu:
        ratios = [_ratio(_gflops(_entry(run.kpi, "clgemm", s), "call"),
                         _gflops(_entry(run.kpi, "numpy_cpu", s))) for s in _sizes(run.kpi)]
        if ratios and all(x is not None for x in ratios):
            worst = min(ratios)
            if best_ratio is None or worst > best_ratio:
                best, best_ratio = run, worst
    if cpu:
        out.append((f"best CPU implementation >= {BEST_OVER_NUMPY:g}x numpy at every KPI size "
                    "(call medians)", None if best is None else best_ratio >= BEST_OVER_NUMPY,
                    "—" if best is None
                    else f"{best.platform}: worst size {best_ratio:.2f}x numpy"))
    return out


def _bar_blocks(runs) -> list[tuple]:
    rows = [[what, "—" if met is None else ("met" if met else "NOT met"), figs]
            for what, met, figs in bars(runs)]
    return [("h", 2, "The bars"), ("table", ["bar", "verdict", "figures"], rows)] if rows else []


def write_migration(out: str | Path, records_root: str | Path = "records",
                    name: str = "migration") -> list[Path]:
    """Write <out>/<name>.md and <name>.html from the pipeline records."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = pipeline_runs(load_records(records_root))

    def link(p) -> str:
        return os.path.relpath(Path(p).resolve(), out.resolve()).replace(os.sep, "/")

    blocks = migration_blocks(runs, link)
    md, page = out / f"{name}.md", out / f"{name}.html"
    write_text(md, _md(blocks, {}))
    write_text(page, _html(blocks, "clgemm migration report"))
    return [md, page]


__all__ = ["ImplRun", "bars", "migration_blocks", "pipeline_runs", "write_migration"]
