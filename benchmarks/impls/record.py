"""Write one implementation's pipeline record (see record.sh): copy its artifacts, then a
record.json whose claim carries the figures read from them."""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

from clgemm.report.migration import (_default_method, _entry, _gflops, _sizes, bars,
                                      pipeline_runs)

# What a pipeline record keeps of $OUT (the tuning database only where small).
KEEP = ("distill.log", "kpi.json", "kpi.log", "chained.json", "chained.log",
        "roofline.json", "roofline.png", "roofline.log", "capabilities.json",
        "capabilities.log", "load.txt", "transfer.json", "transfer.log")
MAX_DB_BYTES = 8 << 20


def _commit(kpi: dict) -> str:
    """The commit the KPI run measured (its env.code), else this checkout's, else unknown."""
    code = kpi.get("env", {}).get("code", {})
    if code.get("commit"):
        return code["commit"][:7] + ("-dirty" if code.get("dirty") else "")
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--table", required=True)
    ap.add_argument("--records", required=True, type=Path, help="records/<device slug>")
    ap.add_argument("--name", default="pipeline",
                    help="the folder's <what> (pipeline-2: a re-run of the same day)")
    ap.add_argument("--supersedes", nargs="*", default=[],
                    help="record ids (<slug>/<folder>) this one replaces: marked superseded")
    ap.add_argument("--note", default="",
                    help="a sentence the figures cannot say (why a bar is missed), at the "
                         "claim's end")
    args = ap.parse_args(argv)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    folder = args.records / f"{today}-{args.name}"
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n in KEEP if (args.out / n).exists()]
    # the model trace, the seeding rounds, and an earlier pass kept as evidence (unseeded-*)
    # and what bounds the kernels there (llvmpipe_probe.py, where run)
    for pattern in ("tune-*.json", "tune-*.log", "model-*.json", "model-*.log", "seed-*",
                    "unseeded-*", "probe*.json"):
        names += sorted(p.name for p in args.out.glob(pattern))
    db = args.out / "tune.sqlite"
    if db.exists() and db.stat().st_size <= MAX_DB_BYTES:
        subprocess.run(["sqlite3", str(db), f".backup {folder / 'tune.sqlite'}"], check=False)
        if (folder / "tune.sqlite").exists():
            names.append("tune.sqlite")
    for n in names:
        if n != "tune.sqlite":
            shutil.copyfile(args.out / n, folder / n)
    shutil.copyfile(Path("src/clgemm/data/tables") / args.table, folder / "table.json")
    names.append("table.json")
    kpi = json.loads((folder / "kpi.json").read_text())
    dev = kpi["env"]["device"]
    record = {
        "what": f"{dev['platform']}: the whole pipeline (tune, distill, table, KPI, model trace)",
        "claim": "(filled below from the artifacts)",
        "command": (f"IMPL={args.impl} bash benchmarks/impls/tune.sh && IMPL={args.impl} bash "
                    f"benchmarks/impls/bench.sh && IMPL={args.impl} bash benchmarks/impls/record.sh"),
        "commit": _commit(kpi),
        "commit_note": "the table shipped as src/clgemm/data/tables/" + args.table
                       + "; kpi.json's env.code names the code that measured",
        "device": f"{dev['name']} ({dev['platform']}, driver {dev['driver_version']})",
        "date": today,
        "feature": "kpi",
        "artifacts": sorted(set(names)),
        "supersedes": list(args.supersedes),
        "status": "current",
    }
    (folder / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    for old in args.supersedes:
        path = args.records.parent / old / "record.json"
        data = json.loads(path.read_text())
        data["status"] = "superseded"
        path.write_text(json.dumps(data, indent=1) + "\n")
    # the claim, from the same reading of the artifacts as the migration report
    from clgemm.report.records import load_records

    run = next(r for r in pipeline_runs(load_records(args.records.parent))
               if r.record.path.resolve() == folder.resolve())
    judged = bars([run])  # the CPU bars (none on a GPU)
    verdicts = [b for b in judged if b[0].startswith(run.platform)]
    parts = [f"{what}: {'met' if met else 'NOT met' if met is not None else 'not measured'}, "
             f"{figs}" for what, met, figs in verdicts]
    if judged:
        parts.append(f"vs numpy (call medians, worst KPI size): {judged[-1][2]}")
    else:
        size = 2048 if 2048 in _sizes(run.kpi) else max(_sizes(run.kpi), default=None)
        tuned = _gflops(_entry(run.kpi, "clgemm", size)) if size else None
        default = _gflops(_entry(run.kpi, _default_method(run.kpi), size)) if size else None
        parts.append(f"at {size}: table {tuned or 0:.1f} GFLOPS, untuned default "
                     f"{default or 0:.1f}")
    chained = folder / "chained.json"
    if chained.exists():  # the wall clock over chained launches, the rounds interleaved
        c = json.loads(chained.read_text())
        arms = c["arms"]
        parts.append(f"chained wall clock at {c['size']} ({c['rounds']} rounds of "
                     f"{c['chain']}): table {arms['table']['gflops_median']:.1f} GFLOPS, "
                     f"default {arms['default']['gflops_median']:.1f}, numpy "
                     f"{arms['numpy']['gflops_median']:.1f}; table/default "
                     f"{c['table_over_default']['median']:.2f}x")
    model = (run.model or {}).get("model", {}).get("summary", {})
    if model:
        parts.append(f"tiny model trace {model['clgemm_s'] * 1e3:.1f} ms vs numpy "
                     f"{model['numpy_s'] * 1e3:.1f} ms")
    if args.note:
        parts.append(args.note)
    claim = "; ".join(parts)
    if len(claim) > 700:
        raise SystemExit(f"the claim has {len(claim)} characters, more than 700: shorten --note")
    record["claim"] = claim
    record["negative"] = any(met is False for _, met, _ in verdicts)
    (folder / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {folder}/record.json: {record['claim']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
