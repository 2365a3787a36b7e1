"""The technical report, generated from the committed records and the lab's cards alone:
`clgemm report --paper` writes one self-contained HTML page (plots inline) whose every
figure links to the record it comes from."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from ..bench.metrics import load_artifact
from ..lab.cards import load_card
from .records import Record, load_records, replaced_by
from .render import Link, _fmt, _html, _peak, plot_errors, plot_gflops

_SQUARE_KPI = (1400, 2048, 3072, 4096)


def _bench_artifacts(rec: Record) -> list[tuple[str, dict]]:
    """The harness's bench artifacts (clgemm.metrics/1) among a record's JSON files."""
    out = []
    for name in rec.artifacts:
        if not name.endswith(".json"):
            continue
        path = rec.path / name
        try:
            head = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(head, dict) and str(head.get("schema_version", "")).startswith("clgemm.metrics/") \
                and head.get("kind") == "bench":
            out.append((str(path), load_artifact(path)))
    return out


def _kpi_sources(records: list[Record]) -> list[tuple[Record, str, dict]]:
    """Per device, the bench artifact that stands for its KPIs: a current record, the `kpi`
    feature first, then the most sessions, then the latest."""
    best: dict[str, tuple] = {}
    for r in records:
        if not r.current:
            continue
        for path, art in _bench_artifacts(r):
            key = (r.feature == "kpi", art["protocol"].get("sessions") or 1, r.date)
            if r.slug not in best or key > best[r.slug][0]:
                best[r.slug] = (key, r, path, art)
    return [v[1:] for _, v in sorted(best.items(), key=lambda kv: _device_order(kv[0]))]


def _device_order(slug: str) -> tuple:
    """GPUs first: the records of record are theirs; CPU devices serve the tests and the CI."""
    return (not slug.startswith("nvidia"), slug)


def _sizes(art: dict) -> list[int]:
    shapes = {tuple(e["shape"]) for e in art["results"] if e["status"] == "ok"}
    square = sorted(s[0] for s in shapes if s[0] == s[1] == s[2])
    return square or sorted({s[0] for s in shapes})


def _by_method(art: dict) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for e in art["results"]:
        if e["status"] == "ok":
            out[e["method"]][e["shape"][0]] = e
    return out


def _kpi_blocks(rec: Record, path: str, art: dict, link) -> list[tuple]:
    dev = art["env"]["device"]
    sizes = _sizes(art)
    methods = _by_method(art)
    tera = max(_peak(e) for m in methods.values() for e in m.values()) > 5000
    unit, scale = ("TFLOPS", 1e-3) if tera else ("GFLOPS", 1.0)
    src = Link(f"{rec.id}/{Path(path).name}", link(path))
    proto = art["protocol"]
    B: list[tuple] = [
        ("h", 3, f"{rec.slug}: {dev['name']}"),
        ("p", [f"Driver {dev.get('driver_version')}, {proto.get('sessions')} session(s) in separate "
               f"processes, {proto.get('repeats')} timed repeats after {proto.get('warmup')} warm-up "
               f"calls, {proto.get('input_sets')} rotated input sets. Source: ", src,
               f" (record: {rec.what}; commit {rec.commit})."]),
    ]
    head = ["method"] + [str(s) for s in sizes]
    rows = [[m] + [_fmt(_peak(by[s]) * scale) if s in by else "—" for s in sizes]
            for m, by in methods.items()]
    B.append(("p", [f"KPI-1, peak {unit} (kernel time; with several sessions the median over "
                    "sessions of each session's best repeat):"]))
    B.append(("table", head, rows))
    rows = []
    for m, by in methods.items():
        es = list(by.values())
        cvs = [e["sessions"]["cv_peak"] for e in es if (e.get("sessions") or {}).get("n", 0) >= 2]
        ratios = [e["accuracy"]["ratio_to_numpy"] for e in es
                  if (e.get("accuracy") or {}).get("ratio_to_numpy") is not None]
        host = [e for e in es if e.get("host_path")]
        big = max(host, key=lambda e: e["shape"][0]) if host else None
        builds = [e["build"] for e in es if e.get("build")]
        rows.append([m, _fmt(max(cvs), ".2%") if cvs else "—",
                     _fmt(max(ratios), ".2f") if ratios else "—",
                     f"{big['host_path']['total_s'] * 1e3:.2f} ms at {big['shape'][0]}" if big else "—",
                     _fmt(max(b["cold_s"] for b in builds), ".2f") if builds else "—",
                     _fmt(max(b["warm_s"] for b in builds), ".3f") if builds else "—",
                     str(max(b["source_lines"] for b in builds)) if builds else "—"])
    B.append(("p", ["KPI-2 to KPI-5, worst case over the sizes (TF32 methods serve a budgeted "
                    "contract, rel_tol, so their error is not held to 2x numpy float32's):"]))
    B.append(("table", ["method", "KPI-2 CV across sessions", "KPI-3 error / numpy float32",
                        "KPI-4 numpy in, numpy out", "KPI-5 cold build s", "warm build s",
                        "kernel source lines"], rows))
    bench = [(path, art)]
    B.append(("img", f"{rec.slug}-gflops", f"Peak GFLOPS by size and method, {dev['name']} "
              f"(record {rec.id})", plot_gflops(bench), link(str(rec.path))))
    B.append(("img", f"{rec.slug}-errors", f"Error envelope, {dev['name']} (record {rec.id})",
              plot_errors(bench), link(str(rec.path))))
    return B


def _png_artifacts(records: list[Record], link) -> list[tuple]:
    """Plots the runs themselves drew (roofline, strategy curves), from current records."""
    B = []
    for r in records:
        for name in r.artifacts:
            if r.current and name.endswith(".png"):
                B.append(("img", f"{r.id}/{name}", f"{name}: {r.what} (record {r.id})",
                          (r.path / name).read_bytes(), link(str(r.path))))
    return B


def _cards(lab_root: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(lab_root.glob("**/card.toml")):
        card, _ = load_card(path)
        if card:
            out.append((path, card))
    return out


def _card_blocks(cards, repo: Path, link) -> list[tuple]:
    B: list[tuple] = []
    for path, c in cards:
        gate = c.get("gate") or {}
        res = c.get("results") or {}
        B.append(("h", 3, f"{c['track']} {c['id']}: {c['title']}"))
        B.append(("p", [f"Status: {c['status']}. Gate: {gate.get('decision', 'none')}"
                        + (f" ({gate['note']})" if gate.get("note") else "") + ". ",
                        Link("card", link(str(path)))]
                  + ([" ", Link("notes", link(str(path.parent / "README.md")))]
                     if (path.parent / "README.md").exists() else [])))
        B.append(("p", ["Hypothesis: " + " ".join(c["hypothesis"].split())]))
        if res.get("verdict"):
            B.append(("p", ["Verdict: " + " ".join(str(res["verdict"]).split())]))
        if gate.get("criteria"):
            B.append(("table", ["gate criterion"], [[x] for x in gate["criteria"]]))
        recs = [x for x in c.get("links", []) if x.startswith("records/")]
        if recs:
            B.append(("p", ["Evidence: "] + sum(([Link(x[len("records/"):], link(str(repo / x))), " "]
                                                  for x in recs), [])))
    return B


def _gate_rows(records: list[Record], link) -> list[list]:
    rows = []
    for r in records:
        for name in r.artifacts:
            if name.startswith("gate") and name.endswith(".json"):
                g = json.loads((r.path / name).read_text())
                failed = [c["name"] + ": " + c["summary"] for c in g.get("criteria", []) if not c["pass"]]
                rows.append([Link(f"{r.id}/{name}", link(str(r.path / name))), g.get("decision", "?"),
                             f"{g.get('candidate_method')} over {g.get('baseline_method')}",
                             "; ".join(failed) or "every criterion passed", r.status])
    return rows


def _threats(records: list[Record]) -> list[str]:
    cur = [r for r in records if r.current]
    unknown = [r.id for r in cur if r.commit == "unknown"]
    dirty = [r.id for r in cur if r.commit.endswith("-dirty")]
    h200 = [r.id for r in cur if r.slug == "nvidia-h200"]
    return [
        f"Provenance: {len(unknown)} of {len(cur)} current records cannot name the commit they ran "
        f"on (the device copies carried no git metadata then; their commit is 'unknown' and "
        f"`added_in` names the commit that first stored them); {len(dirty)} ran on a commit plus "
        "uncommitted changes ('-dirty'), committed right after as their notes say.",
        f"Device substitution: {len(h200)} current records were measured on an H200 on days no H100 "
        "was lent. The H200 has the H100's chip (sm_90, 132 SMs) with faster memory; its figures are "
        "compared only with peers measured in the same process on the same card, never with the H100's.",
        "Peers are timed as their users call them: cuBLAS through PyTorch (CUDA events), CLBlast by "
        "wall time with the queue drained, clgemm by OpenCL kernel events (its drained wall time is "
        "in each entry's `call` block). Kernel-event figures favour clgemm against CLBlast's.",
        "Shared hosts: the CPU records ran on 2 cores shared with other jobs; numpy's own speed moved "
        "2x between runs there, and the H100 host's Python varied 2x between sessions, which moves "
        "wall-time overheads (the guard's) by several points.",
        "Single runs: most tensor-core rounds and guard campaigns are one process each; only the KPI "
        "artifacts carry several sessions (CV across sessions). Sub-5% differences between single "
        "runs are within noise.",
        "Accuracy is measured on standard-normal inputs, plus wide-exponent and odd-shape checks where "
        "stated; correlated roundoff on same-sign data (the wgmma lane) was found only by the guard "
        "campaign, so other data distributions may hide similar effects.",
        "Figures are as the harness wrote them; the claims in records are transcriptions checked by "
        "tests only where the README quotes them.",
    ]


def paper_blocks(records: list[Record], lab_root: Path, link) -> list[tuple]:
    root = records[0].path.parent.parent  # the records folder
    cur = [r for r in records if r.current]
    devices = sorted({r.slug for r in records}, key=_device_order)
    kpi = _kpi_sources(records)
    cards = _cards(lab_root)
    negative = [r for r in records if r.negative]
    B: list[tuple] = [("h", 1, "clgemm: fast, checked float32 GEMM on OpenCL — technical report")]
    B.append(("p", [f"Generated by `clgemm report --paper` from {len(records)} records "
                    f"({len(cur)} current) on {len(devices)} devices ",
                    Link("records/INDEX.md", link(str(root / "INDEX.md"))),
                    f" and {len(cards)} experiment cards. Every figure links to its record; every "
                    "record names the command that made it and the commit it ran on."]))
    B.append(("h", 2, "1. What the system is"))
    B.append(("p", ["clgemm is a Python library and command line that makes single-precision matrix "
                    "multiplication fast and trustworthy on any OpenCL device. Kernels are generated "
                    "from a schedule (tile, work-group, vector and staging parameters); a tuner with "
                    "a compiled search engine (Rust) finds schedules per device and distils them into "
                    "a shipped per-device table; a plan chosen once per shape class routes each call "
                    "to a lane (the float32 family, tensor-core 3xTF32 or TF32 through inline PTX, "
                    "wgmma on Hopper through patched sm_90a PTX). Optional stations on the road: "
                    "an ABFT guard (`check=True`: blocked float64 checksums judged on the device) "
                    "and approximate products under an error budget (`rel_tol`)."]))
    B.append(("h", 2, "2. Method"))
    B.append(("p", ["One harness (`clgemm bench`) measures every method and peer in the same "
                    "process and writes one JSON artifact (schema clgemm.metrics/1) with device, "
                    "driver, code version and protocol: warm-up calls, timed repeats over rotated "
                    "random input sets, C poisoned with NaN before each checked call, errors against "
                    "float64 on the same inputs and against numpy float32's own error, several "
                    "sessions in separate processes for stability, cold and warm build times. A "
                    "candidate enters the production road only through `clgemm gate`: +10% at every "
                    "target size, error within 2x numpy float32's, CV across sessions at most 5%, "
                    "build and code-size limits. Peers: numpy (OpenBLAS) on the host, CLBlast "
                    "shipped and tuned by its own tuner, cuBLAS fp32 and TF32 through PyTorch."]))
    B.append(("table", ["device", "records", "current", "first", "last"],
              [[f"{s} ({next(r.device for r in records if r.slug == s)})",
                str(sum(r.slug == s for r in records)), str(sum(r.slug == s for r in cur)),
                min(r.date for r in records if r.slug == s), max(r.date for r in records if r.slug == s)]
               for s in devices]))
    B.append(("h", 2, "3. KPI figures per device"))
    for rec, path, art in kpi:
        B += _kpi_blocks(rec, path, art, link)
    B.append(("h", 3, "Plots drawn by the runs"))
    B += _png_artifacts(records, link)
    B.append(("h", 2, "4. Headline claims of the current records"))
    B.append(("table", ["record", "feature", "claim"],
              [[Link(r.id, link(str(r.path))), r.feature, r.claim] for r in cur]))
    B.append(("h", 2, "5. Research tracks and their gate decisions"))
    B += _card_blocks(cards, root.parent, link)
    B.append(("h", 2, "6. Negative results"))
    B.append(("p", ["Stated as plainly as the positive ones: what was tried and did not work, "
                    "the gates that rejected, the tracks that stopped."]))
    B.append(("p", ["Every gate decision on record, the promotions beside the rejections:"]))
    B.append(("table", ["gate artifact", "decision", "candidate over baseline", "failed criteria",
                        "record status"], _gate_rows(records, link)))
    B.append(("p", ["Tracks stopped or rejected by their gate:"]))
    B.append(("table", ["track", "card", "status", "gate"],
              [[c["track"], c["id"], c["status"], (c.get("gate") or {}).get("decision", "none")]
               for _, c in cards if c["status"] in ("stopped", "rejected")
               or (c.get("gate") or {}).get("decision") == "rejected"]))
    B.append(("p", ["Records marked negative (tried, did not work, or missed its goal):"]))
    B.append(("table", ["record", "status", "claim"],
              [[Link(r.id, link(str(r.path))), r.status, r.claim] for r in negative]))
    B.append(("h", 2, "7. Threats to validity"))
    B += [("p", ["• " + t]) for t in _threats(records)]
    B.append(("h", 2, "8. How to reproduce each figure"))
    B.append(("p", ["From the repository root at the commit named (GPU records: on the GPU machine "
                    "with `.carry/` as the scripts say). `reproduce` is the command with today's "
                    "script paths where they moved since."]))
    B.append(("table", ["record", "date", "commit", "command"],
              [[Link(r.id, link(str(r.path))), r.date, r.commit, r.command_now()] for r in cur]))
    repl = replaced_by(records)
    B.append(("h", 2, "Appendix: superseded records"))
    B.append(("table", ["record", "replaced by", "claim"],
              [[Link(r.id, link(str(r.path))), ", ".join(repl[r.id]), r.claim]
               for r in records if not r.current]))
    return B


def write_paper(out: str | Path, records_root: str | Path = "records",
                lab_root: str | Path = "research/breakthrough_lab") -> Path:
    """Write <out>/report.html: self-contained (plots inline), links relative to <out>."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = load_records(records_root)

    def link(p: str) -> str:
        return os.path.relpath(Path(p).resolve(), out.resolve()).replace(os.sep, "/")

    page = out / "report.html"
    page.write_text(_html(paper_blocks(records, Path(lab_root), link),
                          title="clgemm technical report"))
    return page
