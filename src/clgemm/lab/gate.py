"""The promotion gate: may a lab candidate replace the production baseline?

Both sides are artifacts of the metrics schema. Criteria (each printed with its figure):
speed (>= +10% on the target sizes), error (within the contract), stability (CV across
sessions), build time, and code cost. Every criterion must pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..bench.metrics import load_artifact
from ..bench.suites import is_kpi, parse_shape


@dataclass(frozen=True)
class GateConfig:
    candidate_method: str | None = None
    baseline_method: str | None = None
    metric: str = "peak"  # "peak" or "sustained"
    sizes: str | None = None  # "1400,2048x2048x2048"; default: KPI sizes present in both
    min_speedup: float = 0.10
    speed_rule: str = "all"  # "all" target sizes, or "any" one of them
    error_ratio: float = 2.0  # exact contract: rel error <= ratio x numpy float32's
    rel_budget: float | None = None  # approximate contract: rel error <= budget
    max_cv: float = 0.05
    allow_single_session: bool = False
    max_cold_build_s: float = 30.0
    max_warm_build_s: float = 2.0
    max_source_lines: int = 2000
    max_lines_ratio: float = 2.0


def _method(artifact: dict, wanted: str | None, side: str) -> str:
    methods = [e["method"] for e in artifact.get("results", [])]
    if wanted:
        if wanted not in methods:
            raise ValueError(f"{side}: no method {wanted!r} in the artifact; it has "
                             f"{sorted(set(methods))}")
        return wanted
    if "clgemm" in methods:
        return "clgemm"
    own = sorted({e["method"] for e in artifact.get("results", []) if e.get("family") == "clgemm"})
    if len(own) == 1:
        return own[0]
    raise ValueError(f"{side}: say which method to judge (--{side}-method); it has {sorted(set(methods))}")


def _entries(artifact: dict, method: str) -> dict[tuple, dict]:
    return {tuple(e["shape"]): e for e in artifact.get("results", [])
            if e["method"] == method and e["status"] == "ok"}


def _peak(entry: dict) -> tuple[float, str]:
    s = entry.get("sessions")
    if s and s.get("n", 0) >= 2 and s.get("gflops_peak"):
        peaks = sorted(s["gflops_peak"])
        mid = len(peaks) // 2
        value = peaks[mid] if len(peaks) % 2 else 0.5 * (peaks[mid - 1] + peaks[mid])
        return value, f"median over {s['n']} sessions of each session's best repeat"
    return entry["timing"]["gflops_peak"], "best of the timed repeats (one session)"


def _sustained(artifact: dict, method: str, shape: tuple) -> float | None:
    for s in artifact.get("sustained", []) or []:
        if s["method"] == method and tuple(s["shape"]) == shape and s.get("gflops_mean"):
            return s["gflops_mean"]
    return None


def _name(shape) -> str:
    m, n, k = shape
    return str(m) if m == n == k else f"{m}x{n}x{k}"


def _criterion(name: str, passed: bool, summary: str, figure, threshold, per_size=None) -> dict:
    return {"name": name, "pass": bool(passed), "summary": summary, "figure": figure,
            "threshold": threshold, "per_size": per_size or {}}


def decide(candidate: str | Path | dict, baseline: str | Path | dict, cfg: GateConfig = GateConfig()) -> dict:
    cand = candidate if isinstance(candidate, dict) else load_artifact(candidate)
    base = baseline if isinstance(baseline, dict) else load_artifact(baseline)
    cm = _method(cand, cfg.candidate_method, "candidate")
    bm = _method(base, cfg.baseline_method, "baseline")
    ce, be = _entries(cand, cm), _entries(base, bm)
    if cfg.sizes:
        targets = [parse_shape(t) for t in cfg.sizes.split(",") if t.strip()]
        how = "given"
    else:
        common = [s for s in ce if s in be]
        targets = [s for s in common if is_kpi(s)] or common
        how = "KPI sizes in both" if any(is_kpi(s) for s in common) else "all sizes in both"
    criteria = []

    # 1. speed
    per, ratios, missing, basis = {}, [], [], ""
    for shape in targets:
        if shape not in ce or shape not in be:
            missing.append(_name(shape))
            continue
        if cfg.metric == "sustained":
            c, b = _sustained(cand, cm, shape), _sustained(base, bm, shape)
            basis = "sustained GFLOPS (mean of the windows of the continuous run)"
            if c is None or b is None:
                missing.append(_name(shape))
                continue
        else:
            (c, basis), (b, _) = _peak(ce[shape]), _peak(be[shape])
            basis = "peak GFLOPS: " + basis
        ratio = c / b - 1.0
        ratios.append(ratio)
        per[_name(shape)] = {"candidate_gflops": c, "baseline_gflops": b, "speedup": ratio}
    if not ratios:
        criteria.append(_criterion("speed", False, f"no {cfg.metric} figures at common target sizes "
                                   f"({', '.join(missing) or 'none'})", None, cfg.min_speedup))
    else:
        figure = min(ratios) if cfg.speed_rule == "all" else max(ratios)
        ok = figure >= cfg.min_speedup and not (missing and cfg.speed_rule == "all")
        text = ", ".join(f"{k} {v['speedup']:+.1%}" for k, v in per.items())
        if missing:
            text += f"; missing at {', '.join(missing)}"
        criteria.append(_criterion(
            "speed", ok, f"{text} ({cfg.speed_rule} >= {cfg.min_speedup:+.0%}; {basis}; "
            f"sizes: {how})", figure, cfg.min_speedup, per))

    # 2. error within the contract
    per, worst, bad = {}, None, []
    for shape in targets:
        acc = (ce.get(shape) or {}).get("accuracy")
        if not acc:
            bad.append(f"{_name(shape)} no accuracy figures")
            continue
        if not acc.get("all_written") or acc.get("rel_frobenius_error") is None:
            bad.append(f"{_name(shape)} unwritten outputs")
            continue
        if cfg.rel_budget is not None:
            fig = acc["rel_frobenius_error"]
            limit = cfg.rel_budget
        else:
            fig = acc.get("ratio_to_numpy")
            limit = cfg.error_ratio
            if fig is None:
                bad.append(f"{_name(shape)} no numpy yardstick")
                continue
        per[_name(shape)] = {"figure": fig, "rel_frobenius_error": acc["rel_frobenius_error"],
                             "max_abs_error": acc.get("max_abs_error")}
        worst = fig if worst is None else max(worst, fig)
        if fig > limit:
            bad.append(f"{_name(shape)} {fig:.3g} > {limit:g}")
    what = (f"relative Frobenius error <= {cfg.rel_budget:g}" if cfg.rel_budget is not None
            else f"relative error <= {cfg.error_ratio:g} x numpy float32's on the same inputs")
    criteria.append(_criterion(
        "error", not bad and worst is not None,
        (f"worst {worst:.3g}" if worst is not None else "no figures") + f" ({what})"
        + (f"; {'; '.join(bad)}" if bad else ""), worst, cfg.rel_budget or cfg.error_ratio, per))

    # 3. stability across sessions
    per, worst, bad = {}, None, []
    for shape in targets:
        e = ce.get(shape)
        if e is None:
            continue
        s = e.get("sessions")
        if s and s.get("n", 0) >= 2:
            fig, src = s["cv_peak"], f"across {s['n']} sessions"
        elif cfg.allow_single_session:
            fig, src = e["timing"]["cv"], "within one run (no sessions)"
        else:
            bad.append(f"{_name(shape)} has no session data (bench --sessions N >= 2)")
            continue
        per[_name(shape)] = {"cv": fig, "source": src}
        worst = fig if worst is None else max(worst, fig)
        if fig > cfg.max_cv:
            bad.append(f"{_name(shape)} cv {fig:.2%} {src}")
    criteria.append(_criterion(
        "stability", not bad and worst is not None,
        (f"worst CV {worst:.2%}" if worst is not None else "no figures") + f" (<= {cfg.max_cv:.0%})"
        + (f"; {'; '.join(bad)}" if bad else ""), worst, cfg.max_cv, per))

    # 4. build time
    cold = [e.get("build", {}).get("cold_s") for s, e in ce.items() if s in targets]
    warm = [e.get("build", {}).get("warm_s") for s, e in ce.items() if s in targets]
    if not cold or any(v is None for v in cold + warm):
        criteria.append(_criterion("build", False, "no cold/warm build figures in the candidate "
                                   "(bench without --no-build-cost)", None,
                                   [cfg.max_cold_build_s, cfg.max_warm_build_s]))
    else:
        ok = max(cold) <= cfg.max_cold_build_s and max(warm) <= cfg.max_warm_build_s
        criteria.append(_criterion(
            "build", ok, f"cold {max(cold):.2f} s (<= {cfg.max_cold_build_s:g}), warm "
            f"{max(warm):.3f} s (<= {cfg.max_warm_build_s:g})", [max(cold), max(warm)],
            [cfg.max_cold_build_s, cfg.max_warm_build_s]))

    # 5. code cost
    lines = [e.get("build", {}).get("source_lines") for s, e in ce.items() if s in targets]
    base_lines = [e.get("build", {}).get("source_lines") for s, e in be.items() if s in targets]
    base_lines = [v for v in base_lines if v]
    if not lines or any(v is None for v in lines):
        criteria.append(_criterion("code", False, "no kernel source line counts in the candidate",
                                   None, cfg.max_source_lines))
    else:
        most = max(lines)
        limit = cfg.max_source_lines
        text = f"{most} kernel source lines (<= {cfg.max_source_lines}"
        if base_lines:
            limit = min(limit, int(cfg.max_lines_ratio * max(base_lines)))
            text += f", <= {cfg.max_lines_ratio:g} x baseline's {max(base_lines)}"
        criteria.append(_criterion("code", most <= limit, text + ")", most, limit))

    promoted = all(c["pass"] for c in criteria)
    return {
        "decision": "promoted" if promoted else "rejected",
        "candidate": str(candidate) if not isinstance(candidate, dict) else "<in memory>",
        "baseline": str(baseline) if not isinstance(baseline, dict) else "<in memory>",
        "candidate_method": cm, "baseline_method": bm, "metric": cfg.metric,
        "target_sizes": [_name(s) for s in targets], "criteria": criteria,
        "config": asdict(cfg),
        "devices": [cand.get("env", {}).get("device", {}).get("name"),
                    base.get("env", {}).get("device", {}).get("name")],
    }


def format_decision(d: dict) -> str:
    lines = [f"gate: {d['candidate_method']} in {d['candidate']} vs {d['baseline_method']} in "
             f"{d['baseline']} ({d['metric']}; sizes {', '.join(d['target_sizes']) or 'none'})"]
    if d["devices"][0] != d["devices"][1]:
        lines.append(f"  warning: different devices: {d['devices'][0]} vs {d['devices'][1]}")
    for c in d["criteria"]:
        lines.append(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['name']:<9} {c['summary']}")
    lines.append(f"decision: {d['decision'].upper()}")
    return "\n".join(lines)
