"""Turn bench and roofline artifacts into a Markdown and a self-contained HTML report.

Both are rendered from one list of blocks (headings, paragraphs, tables, images); every
figure in a table links to the artifact (and the entry in it) it comes from."""

from __future__ import annotations

import base64
import json
import html
import io
import os
from pathlib import Path

from ..atomic import replacing, write_text
from ..bench.metrics import load_artifact
from .soak import soak_blocks


class Link:
    def __init__(self, text: str, href: str) -> None:
        self.text, self.href = text, href


def _fmt(x, spec=".1f", none="—"):
    if x is None:
        return none
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _shape(s) -> str:
    return "x".join(map(str, s))


def _peak(e) -> float:
    s = e.get("sessions")
    if s and s.get("n", 0) >= 2:
        return s.get("gflops_peak_median") or e["timing"]["gflops_peak"]
    return e["timing"]["gflops_peak"]


# ---- plots ---------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def plot_gflops(bench: list[tuple[str, dict]]) -> bytes | None:
    rows = [(e["method"], _shape(e["shape"]), _peak(e)) for _, a in bench
            for e in a.get("results", []) if e["status"] == "ok"]
    if not rows:
        return None
    plt = _plt()
    shapes = list(dict.fromkeys(r[1] for r in rows))
    methods = list(dict.fromkeys(r[0] for r in rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(shapes) * max(1, len(methods)) / 3), 4))
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs, ys = [], []
        for i, s in enumerate(shapes):
            v = [r[2] for r in rows if r[0] == m and r[1] == s]
            if v:
                xs.append(i + j * width)
                ys.append(max(v))
        ax.bar(xs, ys, width, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(shapes))], shapes, rotation=20, fontsize=8)
    ax.set_ylabel("peak GFLOPS")
    if max(r[2] for r in rows) / max(min(r[2] for r in rows), 1e-9) > 50:
        ax.set_yscale("log")
    ax.set_title("peak GFLOPS by size and method")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_errors(bench: list[tuple[str, dict]]) -> bytes | None:
    rows = [(e["method"], _shape(e["shape"]), e["accuracy"]["rel_frobenius_error"],
             e["accuracy"]["numpy_f32_rel_error"]) for _, a in bench for e in a.get("results", [])
            if e["status"] == "ok" and e.get("accuracy") and e["accuracy"].get("rel_frobenius_error")]
    if not rows:
        return None
    plt = _plt()
    shapes = list(dict.fromkeys(r[1] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in dict.fromkeys(r[0] for r in rows):
        pts = [(shapes.index(r[1]), r[2]) for r in rows if r[0] == m]
        ax.semilogy([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
    ref = {}
    for r in rows:
        ref[r[1]] = r[3]
    ax.semilogy(range(len(shapes)), [2 * ref[s] for s in shapes], "k--", label="2 x numpy float32 (exact contract)")
    ax.set_xticks(range(len(shapes)), shapes, rotation=20, fontsize=8)
    ax.set_ylabel("relative Frobenius error vs float64")
    ax.set_title("error envelope")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_sustained(bench: list[tuple[str, dict]]) -> bytes | None:
    runs = [s for _, a in bench for s in a.get("sustained", []) or [] if s.get("series")]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax2 = None
    for s in runs:
        t = [p["t_s"] for p in s["series"]]
        ax.plot(t, [p["gflops"] for p in s["series"]], label=f"{s['method']} {_shape(s['shape'])}")
        clocks = [p.get("sm_mhz") for p in s["series"]]
        if any(c is not None for c in clocks):
            ax2 = ax2 or ax.twinx()
            ax2.plot(t, clocks, "r:", label="SM clock")
            ax2.set_ylabel("SM MHz", color="r")
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"GFLOPS per {runs[0]['window_s']} s window")
    ax.set_ylim(bottom=0)
    ax.set_title("sustained run")
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def plot_roofline(roof: list[tuple[str, dict]]) -> bytes | None:
    if not roof:
        return None
    from ..bench.roofline import plot

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = plot(roof[0][1], Path(tmp) / "roofline.png")
        return path.read_bytes()


# ---- blocks ---------------------------------------------------------------------------------

def _blocks(bench, roof, link) -> list[tuple]:
    B: list[tuple] = []
    all_arts = bench + roof
    first = all_arts[0][1]
    dev = first["env"]["device"]
    code = first["env"]["code"]
    B.append(("h", 1, f"clgemm report: {dev['name']}"))
    B.append(("p", [f"Device {dev['name']} (driver {dev['driver_version']}, fingerprint "
                    f"{dev['fingerprint']}), code {code.get('describe') or code.get('commit')}"
                    f"{' (dirty tree)' if code.get('dirty') else ''}, host {first['env']['hostname']}, "
                    f"{first['env']['date_utc']}. Artifacts: "] +
               sum(([Link(Path(p).name, link(p)), " "] for p, _ in all_arts), [])))
    for p, a in all_arts:
        if not a.get("complete"):
            B.append(("p", ["Warning: ", Link(Path(p).name, link(p)),
                            " is incomplete (interrupted run): figures missing."]))
    for p, a in bench:
        proto = a.get("protocol", {})
        B.append(("p", [f"Protocol ({Path(p).name}): {proto.get('warmup')} warm-up calls, "
                        f"{proto.get('repeats')} timed repeats over {proto.get('input_sets')} rotated "
                        f"random input sets (seed {proto.get('seed')}); peak = best repeat, typical = "
                        f"median; kernel time by {proto.get('timing_kernel', 'OpenCL events')}; "
                        f"{proto.get('sessions')} session(s) in separate processes. Command: `"
                        + " ".join(a.get("command", [])) + "`."]))
    B.append(("h", 2, "KPI-1: peak and sustained GFLOPS"))
    rows = []
    for p, a in bench:
        for i, e in enumerate(a.get("results", [])):
            ref = Link(f"{Path(p).name}#results[{i}]", link(p))
            if e["status"] != "ok":
                rows.append([e["method"], _shape(e["shape"]), e["status"], "—", "—", "—", "—",
                             e.get("reason") or "", ref])
                continue
            t = e["timing"]
            s = e.get("sessions") or {}
            rows.append([e["method"], _shape(e["shape"]), t["kind"], _fmt(t["gflops_peak"]),
                         _fmt(t["gflops_median"]),
                         _fmt(s.get("gflops_peak_median")) if s.get("n", 0) >= 2 else "—",
                         _fmt((e.get("call") or {}).get("gflops_median")),
                         e.get("note") or e.get("schedule") or "", ref])
    B.append(("table", ["method", "shape", "timing", "peak GFLOPS", "median GFLOPS",
                        "peak (median over sessions)", "call GFLOPS (wall, drained)", "note", "source"], rows))
    srows = []
    for p, a in bench:
        for i, s in enumerate(a.get("sustained", []) or []):
            srows.append([s["method"], _shape(s["shape"]), _fmt(s["seconds"], ".0f"),
                          _fmt(s.get("gflops_mean")), _fmt(s.get("gflops_min")), _fmt(s.get("cv"), ".2%"),
                          s.get("clock_source") or f"absent: {s.get('clock_absent_reason')}",
                          Link(f"{Path(p).name}#sustained[{i}]", link(p))])
    if srows:
        B.append(("table", ["method", "shape", "seconds", "mean GFLOPS", "min GFLOPS", "CV of windows",
                            "clock", "source"], srows))
    B.append(("img", "gflops.png", "GFLOPS by size and method", plot_gflops(bench)))
    B.append(("img", "sustained.png", "sustained run", plot_sustained(bench)))

    B.append(("h", 2, "KPI-2: stability"))
    rows = []
    for p, a in bench:
        for i, e in enumerate(a.get("results", [])):
            if e["status"] == "ok":
                s = e.get("sessions") or {}
                rows.append([e["method"], _shape(e["shape"]), _fmt(e["timing"]["cv"], ".2%"),
                             _fmt(s.get("cv_peak"), ".2%") if s.get("n", 0) >= 2 else "—",
                             str(s.get("n", 1)), Link(f"{Path(p).name}#results[{i}]", link(p))])
    B.append(("table", ["method", "shape", "CV within run", "CV across sessions (peaks)", "sessions", "source"], rows))
    for p, a in bench:
        r = a.get("ranking")
        if r and r.get("reproducibility"):
            rep = r["reproducibility"]
            B.append(("p", [f"Reproducibility score (mean Kendall tau of the per-session ranking of "
                            f"{len(r['per_session'][0])} schedules at {_shape(r['shape'])}, "
                            f"{rep.get('pairs')} session pairs): {_fmt(rep.get('score'), '.3f')} ",
                            Link(f"{Path(p).name}#ranking", link(p))]))
        ld = a.get("load")
        if ld and ld.get("rows"):
            B.append(("table", ["method", "shape", "GFLOPS unloaded", "GFLOPS under load", "ratio", "source"],
                      [[x["method"], _shape(x["shape"]), _fmt(x["gflops_unloaded"]), _fmt(x["gflops_loaded"]),
                        _fmt(x["ratio"], ".2f"), Link(f"{Path(p).name}#load", link(p))] for x in ld["rows"]]))

    B.append(("h", 2, "KPI-3: accuracy (vs float64, same inputs, C poisoned with NaN)"))
    rows = []
    for p, a in bench:
        for i, e in enumerate(a.get("results", [])):
            acc = e.get("accuracy")
            if e["status"] == "ok" and acc:
                rows.append([e["method"], _shape(e["shape"]), _fmt(acc["max_abs_error"], ".2e"),
                             _fmt(acc["rel_frobenius_error"], ".2e"), _fmt(acc["numpy_f32_rel_error"], ".2e"),
                             _fmt(acc.get("ratio_to_numpy"), ".2f"), "yes" if acc["all_written"] else "NO",
                             Link(f"{Path(p).name}#results[{i}]", link(p))])
    B.append(("table", ["method", "shape", "max abs error", "rel. Frobenius", "numpy f32 rel.",
                        "ratio to numpy", "all written", "source"], rows))
    B.append(("img", "errors.png", "error envelope", plot_errors(bench)))

    B.append(("h", 2, "KPI-4: end-to-end latency (numpy in, numpy out)"))
    rows = []
    for p, a in bench:
        for i, e in enumerate(a.get("results", [])):
            h = e.get("host_path")
            if e["status"] == "ok" and h:
                rows.append([e["method"], _shape(e["shape"])] +
                            [_fmt(h[k] * 1e3, ".3f") for k in ("h2d_s", "kernel_s", "d2h_s", "total_s")] +
                            [Link(f"{Path(p).name}#results[{i}]", link(p))])
    B.append(("table", ["method", "shape", "h2d ms", "kernel ms", "d2h ms", "total ms", "source"], rows))

    B.append(("h", 2, "KPI-5: engineering cost"))
    rows = []
    for p, a in bench:
        for i, e in enumerate(a.get("results", [])):
            b = e.get("build")
            if e["status"] == "ok" and b:
                rows.append([e["method"], _shape(e["shape"]), e.get("schedule") or "",
                             _fmt(b.get("cold_s"), ".2f"), _fmt(b.get("warm_s"), ".3f"),
                             str(b.get("source_lines")), Link(f"{Path(p).name}#results[{i}]", link(p))])
    B.append(("table", ["method", "shape", "schedule", "cold build s", "warm build s",
                        "kernel source lines", "source"], rows))

    absent = []
    for p, a in bench:
        for name, b in (a.get("baselines") or {}).items():
            if b["status"] != "present":
                absent.append([name, b["status"], b.get("reason") or "", Link(Path(p).name, link(p))])
    if absent:
        B.append(("h", 2, "Peers not measured"))
        B.append(("table", ["peer", "status", "reason", "source"], absent))

    if roof:
        B.append(("h", 2, "Roofline"))
        p, a = roof[0]
        r = a["roofline"]
        B.append(("p", [f"Measured float32 multiply-add peak {r['peak_gflops']:.1f} GFLOPS "
                        f"({r['peak'].get('form', '')}), device memory bandwidth "
                        f"{r['bandwidth_gbs']:.1f} GB/s (copy, read + written); ridge "
                        f"{r['ridge_flop_per_byte']:.2f} flop/byte. Model: {r.get('model', '')}. ",
                        Link(Path(p).name, link(p))]))
        B.append(("table", ["kernel", "schedule", "intensity flop/B", "bound GFLOPS", "measured GFLOPS",
                            "of bound"],
                  [[k["label"], k["schedule"], _fmt(k["intensity"], ".2f"), _fmt(k["attainable_gflops"]),
                    _fmt(k["measured_gflops"]), _fmt(k["fraction_of_bound"], ".0%")] for k in r["kernels"]]))
        B.append(("img", "roofline.png", "roofline", plot_roofline(roof)))
    return B


def _selector_blocks(replays, link) -> list[tuple]:
    """Secondary KPI: selector decision quality against the oracle (`clgemm replay`)."""
    if not replays:
        return []
    rows = []
    for p, r in replays:
        for i, t in enumerate(r.get("traces", [])):
            total, regret, quality = t["total_s"], t["regret"], t["decision_quality"]
            rows.append([t["trace"], t["calls"], _fmt(total["static"] * 1e3, ".2f"),
                         _fmt(total["online"] * 1e3, ".2f"), _fmt(total["oracle"] * 1e3, ".2f"),
                         _fmt(regret["static"]["relative"], ".2%"),
                         _fmt(regret["online"]["relative"], ".2%"),
                         _fmt(t["online_vs_static"], "+.2%"), _fmt(quality["static"], ".0%"),
                         _fmt(quality["online"], ".0%"),
                         Link(f"{Path(p).name}#traces[{i}]", link(p))])
    return [("h", 2, "Selector: static table vs online bandit vs oracle"),
            ("p", ["Total kernel time of each policy over each trace (ms), regret against the oracle "
                   "(the best validated schedule per shape, measured), and decision quality (share "
                   "of calls within 5% of the oracle's schedule)."]),
            ("table", ["trace", "calls", "static ms", "online ms", "oracle ms", "static regret",
                       "online regret", "online vs static", "static quality", "online quality",
                       "source"], rows)]


def _model_blocks(models, link) -> list[tuple]:
    """Model workloads (`bench --suite model`): each trace's total time beside the peers,
    then per class of product."""
    if not models:
        return []
    B: list[tuple] = [("h", 2, "Model workloads through the public call"),
                      ("p", ["Each trace replayed one product at a time through clgemm.matmul on "
                             "device arrays (outputs allocated by the call), beside the peers in "
                             "the same process; ratio = clgemm's time over the peer's (below 1: "
                             "clgemm faster)."])]
    for p, a in models:
        m = a["model"]
        dev = a["env"]["device"]["name"]
        peers = [x for x in ("torch", "numpy") if f"{x}_s" in m["summary"]]
        head = ["class", "calls", "clgemm ms"] + sum(([f"{x} ms", f"/ {x}"] for x in peers), [])
        rows = []
        for name, c in m["classes"].items():
            rows.append([name, c["count"], _fmt(c["clgemm_s"] * 1e3, ".3f")] + sum(
                ([_fmt(c[f"{x}_s"] * 1e3, ".3f"), _fmt(c[f"ratio_to_{x}"], ".2f")]
                 for x in peers), []))
        s = m["summary"]
        rows.append(["total (trace)", s["calls"], _fmt(s["clgemm_s"] * 1e3, ".3f")] + sum(
            ([_fmt(s[f"{x}_s"] * 1e3, ".3f"), _fmt(s[f"ratio_to_{x}"], ".2f")] for x in peers),
            []))
        B.append(("p", [f"{Path(m['trace']).name} on {dev}: largest error "
                        f"{_fmt(m['max_error_ratio_to_numpy'], '.2f')}x numpy float32's. Source: ",
                        Link(Path(p).name, link(p))]))
        B.append(("table", head, rows))
    return B


# ---- renderers ------------------------------------------------------------------------------

def _md_cell(x) -> str:
    if isinstance(x, Link):
        return f"[{x.text}]({x.href})"
    return str(x).replace("|", "\\|").replace("\n", " ")


def _html_cell(x) -> str:
    if isinstance(x, Link):
        return f'<a href="{html.escape(x.href)}">{html.escape(x.text)}</a>'
    return html.escape(str(x))


def _md(blocks, images: dict[str, str]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append("".join(_md_cell(x) for x in b[1]))
        elif b[0] == "table":
            if not b[2]:
                out.append("_no figures_")
                continue
            out.append("| " + " | ".join(b[1]) + " |")
            out.append("|" + "---|" * len(b[1]))
            out.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2])
        elif b[0] == "img" and b[3]:
            out.append(f"![{b[2]}]({images[b[1]]})")
        out.append("")
    return "\n".join(out)


def _html(blocks, title: str = "clgemm report") -> str:
    body = []
    for b in blocks:
        if b[0] == "h":
            body.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            body.append("<p>" + "".join(_html_cell(x) for x in b[1]) + "</p>")
        elif b[0] == "table":
            if not b[2]:
                body.append("<p><em>no figures</em></p>")
                continue
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b[0] == "img" and b[3]:
            data = base64.b64encode(b[3]).decode()
            caption = html.escape(b[2])
            if len(b) > 4:  # the record or artifact the figure comes from
                caption = f'<a href="{html.escape(b[4])}">{caption}</a>'
            body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{caption}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def write_report(paths: list[str], out_dir: str | Path, name: str = "report",
                 embed: bool = False) -> list[Path]:
    """Write <out_dir>/<name>.md and <name>.html (and PNGs beside, unless embed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bench, roof, replays, models, soaks = [], [], [], [], []
    for p in paths:
        raw = json.loads(Path(p).read_text())
        if str(raw.get("schema", "")).startswith("clgemm.replay/"):
            replays.append((p, raw))  # `clgemm replay` artifacts: the selector section
            continue
        if str(raw.get("schema", "")).startswith("clgemm.soak/"):
            soaks.append((p, raw))  # `clgemm soak` artifacts: the soak section
            continue
        a = load_artifact(p)
        {"roofline": roof, "model": models}.get(a["kind"], bench).append((p, a))
    if not bench and not roof and not models and not soaks:
        raise ValueError("no bench, roofline, model or soak artifact to report")

    def link(p) -> str:
        return os.path.relpath(Path(p).resolve(), out_dir.resolve()).replace(os.sep, "/")

    first = (models or soaks)[0][1] if not (bench or roof) else None
    head = (_blocks(bench, roof, link) if bench or roof
            else [("h", 1, f"clgemm report: {first['env']['device']['name']}")])
    blocks = (head + _model_blocks(models, link) + _selector_blocks(replays, link)
              + soak_blocks(soaks, link, _fmt, Link))
    written = []
    images = {}
    for b in blocks:
        if b[0] == "img" and b[3]:
            if embed:
                images[b[1]] = "data:image/png;base64," + base64.b64encode(b[3]).decode()
            else:
                target = out_dir / f"{name}-{b[1]}"
                with replacing(target, "wb") as f:
                    f.write(b[3])
                written.append(target)
                images[b[1]] = target.name
    md = out_dir / f"{name}.md"
    write_text(md, _md(blocks, images))
    page = out_dir / f"{name}.html"
    write_text(page, _html(blocks))
    return [md, page] + written
