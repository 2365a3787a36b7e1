"""The report's soak section (`clgemm soak` artifacts, schema clgemm.soak/1): the verdict
against the issue's bars, then throughput, memory and clocks per window."""

from __future__ import annotations

from pathlib import Path


def _mib(x) -> float | None:
    return None if x is None else x / 2**20


def _mean(window: dict, name: str):
    g = (window.get("gpu") or {}).get(name)
    return g["mean"] if g else None


def _growth(g: dict | None) -> str:
    if g is None:
        return "not judged"
    return f"{g['growth_pct']:+.2f}% (peak {g['peak_growth_pct']:+.2f}%)"


def soak_blocks(soaks: list[tuple[str, dict]], link, fmt, Link) -> list[tuple]:
    """Blocks (h / p / table) for each soak artifact; `fmt` and `Link` are the renderer's."""
    if not soaks:
        return []
    B: list[tuple] = [("h", 2, "Soak: long-run stability"),
                      ("p", [("A mixed workload (model traces, KPI squares, odd shapes; exact, "
                             "check=True, rel_tol; numpy and device arrays) for a given time, "
                             "every result verified against float64, faults injected into "
                             "check=True calls; memory growth is judged after the warm-up "
                             "windows, throughput drift read beside the clocks.")])]
    for p, a in soaks:
        dev = a["env"]["device"]["name"]
        s, f, v = a["summary"], a["faults"], a["verdict"]
        t = s.get("throughput") or {}
        mem = s["memory"]
        B.append(("h", 3, f"{dev}: {a['options']['minutes']:g} min, {a['status']}"))
        B.append(("table", ["bar", "figure", "met"], [
            ["missed faults above the floor", (f"{f['missed_above_floor']} of {f['injected']} "
             f"injected ({f['found']} found; floor "
             f"{a['workload'].get('floor') or str(a['workload']['floor_rel']) + ' max|C|'})"),
             v["bars"]["missed_above_floor"]],
            [f"faults over {a['workload']['floor_rel']:g} max|C| within their cell's float32 "
             "error bound (tiny products)",
             f.get("within_cell_bound", "—"), "reported"],
            [f"faults over {a['workload']['floor_rel']:g} max|C| missed within their call's "
             "stated floor (big products of large K)",
             f.get("missed_under_stated_floor", "—"), "reported"],
            ["found faults left above the floor", f.get("unrepaired_above_floor", 0),
             v["bars"].get("unrepaired_above_floor")],
            ["false positives", (f"{a['false_positives']['count']} of "
             f"{a['false_positives']['clean_checked']} clean check=True calls"),
             v["bars"]["false_positives"]],
            ["wrong results", f"{a['wrong_results']['count']} of {a['totals']['calls']} products",
             v["bars"]["wrong_results"]],
            ["errors", f"{a['errors']['count']} {a['errors']['by_type'] or ''}".strip(),
             v["bars"]["errors"]],
            ["host RSS growth after warm-up", _growth(mem.get("rss")),
             v["bars"].get("rss_growth_under_1pct")],
            ["device pools' growth after warm-up (runtime queues + guard)",
             _growth(mem.get("pool_managed")),
             v["bars"].get("pool_managed_growth_under_1pct")],
            ["GPU memory.used growth after warm-up", _growth(mem.get("gpu_used")),
             v["bars"].get("gpu_used_growth_under_1pct")],
            ["throughput drift (first to last judged window)",
             (f"{fmt(t.get('drift_pct'), '+.1f')}%, "
              f"slope {fmt(t.get('slope_pct_per_hour'), '+.1f')}"
             f"%/h, CV {fmt(t.get('cv'), '.3f')}"), "reported" if t else "too few windows"],
            ["verdict", Link(Path(p).name, link(p)), v["pass"]],
        ]))
        rows = []
        for w in a["windows"]:
            host = w.get("host") or {}
            rows.append([w["index"], fmt(w["t_end_s"] / 60, ".1f"), w["calls"],
                         fmt(w["gflops"], ".2f"), fmt(w["products_per_s"], ".1f"),
                         fmt(w.get("mix_index"), ".2f"), fmt(_mib(w["rss_bytes"]), ".1f"),
                         fmt(_mib(w["pool"]["managed_bytes"]), ".1f"),
                         fmt(_mean(w, "sm_mhz"), ".0f"), fmt(_mean(w, "temp_c"), ".0f"),
                         fmt(_mean(w, "power_w"), ".0f"),
                         (w.get("gpu") or {}).get("throttle_reasons") or "—",
                         fmt(host.get("loadavg_1m"), ".1f"),
                         f"{w['found']}/{w['injected']}", w["false_positives"],
                         w["wrong_results"], w["errors"]])
        B.append(("table", ["window", "end min", "products", "GFLOPS", "products/s", "mix index",
                            "RSS MiB", "pool MiB", "SM MHz", "temp C", "power W", "throttle",
                            "host load", "faults found", "false pos.", "wrong", "errors"], rows))
    return B
