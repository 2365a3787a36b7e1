"""`clgemm bench`: one run (or N sessions in separate processes, merged) -> one artifact."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..schedule import Schedule
from .env import fingerprint, utc_now
from .harness import DeviceProblem, build_cost, measure_clgemm, sustained
from .inputs import InputSets
from .metrics import SCHEMA_VERSION, ArtifactWriter, load_artifact
from .progress import Progress
from .protocol import Protocol, cv, gflops, median, reproducibility
from .suites import Case, cases, parse_shape


@dataclass
class BenchOptions:
    suite: str | None = "kpi"
    shapes: str | None = None
    scale: float = 1.0
    device: str | None = None
    out: str | None = None
    protocol: Protocol = field(default_factory=Protocol)
    baselines: tuple[str, ...] = ("numpy", "clblast", "cublas")
    clblast_tuned: tuple[str, ...] = ()
    schedules: tuple[str, ...] = ()  # extra clgemm schedules (keys), one method each
    label: str = "clgemm"  # method name of clgemm's own choice of schedule
    tc_modes: tuple[str, ...] = ()  # lab: tensor-core modes measured beside (tf32, 3xtf32)
    rank_schedules: int = 0  # schedules ranked per session (reproducibility score)
    sustained_seconds: float | None = None  # None: 60 s on a GPU, 2 s otherwise
    sustained_size: str | None = None
    load: bool = False
    build_cost: bool = True
    host_path: bool = True
    quiet: bool = False
    session_index: int | None = None  # set in session child processes


def _package_env() -> dict:
    """The environment of a child process that imports this same clgemm."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _child_argv(opts: BenchOptions, out: str, index: int, seed: int) -> list[str]:
    p = opts.protocol
    argv = [sys.executable, "-m", "clgemm.cli", "bench", "--out", out, "--sessions", "1",
            "--session-index", str(index), "--seed", str(seed), "--scale", str(opts.scale),
            "--warmup", str(p.warmup), "--repeats", str(p.repeats),
            "--input-sets", str(p.input_sets), "--max-measure-s", str(p.max_measure_s),
            "--host-repeats", str(p.host_repeats), "--sustained-seconds", "0",
            "--baselines", ",".join(opts.baselines) or "none", "--label", opts.label,
            "--rank-schedules", str(opts.rank_schedules), "--quiet"]
    argv += ["--suite", opts.suite or "none"]
    if opts.shapes:
        argv += ["--shapes", opts.shapes]
    if opts.device:
        argv += ["--device", opts.device]
    for path in opts.clblast_tuned:
        argv += ["--clblast-tuned", path]
    for key in opts.schedules:
        argv += ["--schedule", key]
    if opts.tc_modes:
        argv += ["--tc", ",".join(opts.tc_modes)]
    if not opts.host_path:
        argv.append("--no-host-path")
    return argv


def ranking_candidates(rt, count: int) -> list[Schedule]:
    """Up to `count` distinct schedules valid on the device: the table's, the defaults, then
    small variations of them."""
    from ..lanes.fp32 import SAFE_SCHEDULE
    from ..lanes.fp32 import search_space
    from ..select.table import DEFAULT_CPU, DEFAULT_GPU, load_table

    space = search_space(rt)
    base = load_table(rt.device).candidates() + [DEFAULT_GPU, DEFAULT_CPU, SAFE_SCHEDULE]
    variants = []
    for s in list(base):
        for change in ({"tile_k": 8}, {"out_m": 2, "out_n": 4}, {"double_buffer": 1},
                       {"unroll_k": 1}, {"wg_m": 16, "wg_n": 16}):
            try:
                variants.append(replace(s, **change))
            except TypeError:
                continue
    out: list[Schedule] = []
    for s in base + variants:
        if s not in out and space.is_valid(s):
            out.append(s)
        if len(out) >= count:
            break
    return out


class _Run:
    def __init__(self, opts: BenchOptions, argv: list[str]) -> None:
        from ..runtime import get_runtime

        self.opts = opts
        self.rt = get_runtime(opts.device)
        self.cases = cases(opts.suite, opts.shapes, opts.scale)
        if not self.cases:
            raise ValueError("nothing to measure: give --suite and/or --shapes")
        p = opts.protocol
        seed = p.seed if p.seed is not None else secrets.randbits(32)
        self.protocol = replace(p, seed=seed)
        if opts.sustained_seconds is None:
            secs = 60.0 if self.rt.device.type == "GPU" else 2.0
        else:
            secs = opts.sustained_seconds
        if opts.session_index is not None:
            secs = 0.0
        self.protocol = replace(self.protocol, sustained_seconds=float(secs))
        self.rng = np.random.default_rng(seed)
        device = self.rt.device
        self.writer = ArtifactWriter(opts.out, {
            "schema_version": SCHEMA_VERSION, "kind": "bench", "complete": False,
            "created_utc": utc_now(), "finished_utc": None, "command": list(argv),
            "env": fingerprint(device, argv), "protocol": self.protocol.as_dict(),
            "suite": opts.suite, "shapes": [list(c.shape) for c in self.cases],
            "results": [], "baselines": {}, "sustained": [], "sessions": None,
            "ranking": None, "load": None, "selector": None, "notes": [],
        })
        if opts.session_index is not None:
            self.writer.data["session_index"] = opts.session_index
        # Kernel times come from OpenCL events, or from the host's wall time where the
        # device's profiling clock is implausible (Rusticl on llvmpipe): the artifact says so.
        self.writer.data["protocol"]["timer"] = "events" if self.rt.profiling_ok else "wall"
        if not self.rt.profiling_ok:
            self.writer.data["notes"].append(
                "kernel times are host wall times from enqueue to completion (launch latency "
                "included): this device's OpenCL profiling clock is implausible")
        self._tuned = None

    # ---- peers ---------------------------------------------------------------------------
    def _presence(self) -> dict:
        out = {}
        for name in self.opts.baselines:
            if name == "numpy":
                from .baselines import numpy_cpu as mod
            elif name == "clblast":
                from .baselines import clblast as mod
            elif name == "cublas":
                from .baselines import torch_cublas as mod
            else:
                raise ValueError(f"unknown baseline {name!r}; known: numpy, clblast, cublas")
            status, reason = mod.presence()
            out[name] = {"status": status, "reason": reason}
            if name == "cublas" and status == "present":
                out[name]["describe"] = mod.describe()
        if "clblast" in out and out["clblast"]["status"] == "present":
            from .baselines import clblast

            if self.opts.clblast_tuned:
                try:
                    self._tuned = clblast.read_tuned(list(self.opts.clblast_tuned))
                    out["clblast_tuned"] = {"status": "present" if self._tuned else "absent",
                                            "reason": None if self._tuned else
                                            "no tuned results in " + ", ".join(self.opts.clblast_tuned),
                                            "parameters": self._tuned}
                except (OSError, ValueError, KeyError) as exc:
                    out["clblast_tuned"] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
            else:
                out["clblast_tuned"] = {"status": "absent",
                                        "reason": "no --clblast-tuned file given"}
        return out

    def _methods(self) -> list[tuple[str, Schedule | None]]:
        methods = [(self.opts.label, None)]
        for key in self.opts.schedules:
            methods.append((f"clgemm:{key}", Schedule.from_key(key)))
        return methods

    # ---- one session, in this process -----------------------------------------------------
    def measure(self, progress: Progress) -> None:
        w = self.writer
        w.set("baselines", self._presence())
        present = {k for k, v in w.data["baselines"].items() if v["status"] == "present"}
        p = self.protocol
        for case in self.cases:
            inputs = InputSets(*case.shape, p.input_sets, self.rng)
            for method, schedule in self._methods():
                entry, _ = measure_clgemm(self.rt, case, inputs, p, schedule, method,
                                          with_host=self.opts.host_path)
                w.add("results", entry)
                progress.step(_line(entry))
            for mode in self.opts.tc_modes:
                from .tensorcore import measure_tc

                entry = measure_tc(self.rt, case, inputs, p, mode)
                w.add("results", entry)
                progress.step(_line(entry))
            if "numpy" in present:
                from .baselines import numpy_cpu

                for entry in numpy_cpu.measure(case, inputs, p):
                    w.add("results", entry)
                    progress.step(_line(entry))
            if "clblast" in present:
                from .baselines import clblast

                variants = [("clblast", None)]
                if self._tuned:
                    variants.append(("clblast_tuned", self._tuned))
                for entry in clblast.measure(self.rt, case, inputs, p, variants):
                    w.add("results", entry)
                    progress.step(_line(entry))
            if "cublas" in present:
                from .baselines import torch_cublas

                try:
                    entries = torch_cublas.measure(case, inputs, p)
                except Exception as exc:  # noqa: BLE001
                    entries = [{"method": "cublas_fp32", "family": "cublas", "shape": list(case.shape),
                                "tag": case.tag, "status": "error",
                                "reason": f"{type(exc).__name__}: {exc}"}]
                for entry in entries:
                    w.add("results", entry)
                    progress.step(_line(entry))
            for name in sorted(set(self.opts.baselines) - present):
                reason = w.data["baselines"][name]["reason"] or "absent"
                w.add("results", {"method": name, "family": _family(name), "shape": list(case.shape),
                                  "tag": case.tag, "status": "absent", "reason": reason})
            del inputs
        if self.opts.rank_schedules >= 2:
            self._rank(progress)

    def _rank_case(self) -> Case:
        for c in self.cases:
            if c.shape == (2048, 2048, 2048):
                return c
        return max(self.cases, key=lambda c: c.m * c.n * c.k)

    def _rank(self, progress: Progress) -> None:
        case = self._rank_case()
        inputs = InputSets(*case.shape, self.protocol.input_sets, self.rng)
        scores = {}
        for s in ranking_candidates(self.rt, self.opts.rank_schedules):
            try:
                prob = DeviceProblem(self.rt, case, inputs, s)
                times = prob.kernel_times(self.protocol.warmup, self.protocol.repeats,
                                          self.protocol.max_measure_s)
                scores[s.key()] = gflops(*case.shape, median(times))
            except Exception as exc:  # noqa: BLE001
                self.writer.data["notes"].append(f"ranking: {s.key()} failed: {exc}")
            progress.step(f"rank {case.name} {s.key()}")
        self.writer.set("ranking", {"shape": list(case.shape), "metric": "gflops_median",
                                    "per_session": [scores],
                                    "reproducibility": reproducibility([scores])})

    # ---- N sessions, each a separate process ----------------------------------------------
    def sessions(self, progress: Progress) -> None:
        n = self.protocol.sessions
        runs, artifacts = [], []
        with tempfile.TemporaryDirectory(prefix="clgemm-sessions-") as tmp:
            for i in range(n):
                path = os.path.join(tmp, f"session{i}.json")
                argv = _child_argv(self.opts, path, i, (self.protocol.seed + i) % 2**32)
                t0 = time.monotonic()
                proc = subprocess.run(argv, env=_package_env(), capture_output=True, text=True)
                run = {"session": i, "returncode": proc.returncode,
                       "seconds": time.monotonic() - t0, "pid_command": argv[1:4]}
                if proc.returncode != 0:
                    run["stderr_tail"] = proc.stderr[-2000:]
                try:
                    art = load_artifact(path)
                    run["complete"] = art.get("complete", False)
                    run["created_utc"] = art.get("created_utc")
                    artifacts.append(art)
                except (OSError, ValueError) as exc:
                    run["complete"] = False
                    run["error"] = str(exc)
                runs.append(run)
                progress.step(f"session {i + 1}/{n} rc={proc.returncode} "
                              f"{run['seconds']:.1f}s", advance=len(self.cases))
                self.writer.set("sessions", {"n": n, "runs": runs})
        if not artifacts:
            raise RuntimeError("no session produced an artifact: " +
                               "; ".join(r.get("stderr_tail", r.get("error", "")) for r in runs))
        merge_sessions(self.writer.data, artifacts)
        self.writer.flush()
        self._sessions_ok = all(r["complete"] for r in runs)

    # ---- extras measured once, in the parent ----------------------------------------------
    def extras(self, progress: Progress) -> None:
        ok = [e for e in self.writer.data["results"]
              if e["family"] in ("clgemm", "clgemm-tensorcore") and e["status"] == "ok"]
        if self.opts.build_cost:
            done = {}
            for e in ok:
                m, n, k = e["shape"]
                try:
                    schedule, prob_layout = _schedule_and_layout(self.rt, e["schedule"], m, n, k)
                    key = (e["schedule"], prob_layout)
                    if key not in done:
                        done[key] = build_cost(self.rt.device, schedule, prob_layout)
                        progress.step(f"build cost {e['schedule']}: cold {done[key]['cold_s']:.2f}s "
                                      f"warm {done[key]['warm_s']:.3f}s", advance=0)
                    e["build"].update(done[key])
                except Exception as exc:  # noqa: BLE001
                    e["build"]["error"] = f"{type(exc).__name__}: {exc}"
            self.writer.flush()
        secs = self.protocol.sustained_seconds
        if secs > 0:
            case = self._sustained_case()
            inputs = InputSets(*case.shape, self.protocol.input_sets, self.rng)
            from ..lanes.fp32 import choose_schedule

            prob = DeviceProblem(self.rt, case, inputs, choose_schedule(self.rt, *case.shape))
            progress.note(f"sustained run: {case.name} for {secs:.0f} s")
            self.writer.add("sustained", sustained(prob, secs, self.protocol.window_s, self.opts.label))
            progress.step(f"sustained {case.name}")
        if self.opts.load:
            self._load(progress)

    def _sustained_case(self) -> Case:
        if self.opts.sustained_size:
            return Case(*parse_shape(self.opts.sustained_size), "sustained")
        for c in self.cases:
            if c.shape == (2048, 2048, 2048):
                return c
        return max(self.cases, key=lambda c: c.m * c.n * c.k)

    def _load(self, progress: Progress) -> None:
        from ..lanes.fp32 import choose_schedule

        size = 2048 if self.rt.device.type == "GPU" else 256
        cmd = [sys.executable, "-m", "clgemm.bench.load", "--device", self.rt.device.fingerprint,
               "--size", str(size), "--seconds", "3600"]
        proc = subprocess.Popen(cmd, env=_package_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        rows = []
        try:
            ready = proc.stdout.readline().strip() == "ready"
            p = self.protocol
            for case in self.cases:
                inputs = InputSets(*case.shape, p.input_sets, self.rng)
                prob = DeviceProblem(self.rt, case, inputs, choose_schedule(self.rt, *case.shape))
                loaded = gflops(*case.shape, median(prob.kernel_times(p.warmup, p.repeats, p.max_measure_s)))
                base = next((e for e in self.writer.data["results"] if e["method"] == self.opts.label
                             and e["shape"] == list(case.shape) and e["status"] == "ok"), None)
                unloaded = base["timing"]["gflops_median"] if base else None
                rows.append({"method": self.opts.label, "shape": list(case.shape),
                             "gflops_unloaded": unloaded, "gflops_loaded": loaded,
                             "ratio": loaded / unloaded if unloaded else None})
                progress.step(f"under load {case.name}: {loaded:.1f} GFLOPS", advance=0)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.writer.set("load", {"generator": " ".join(cmd[1:]), "generator_ready": ready,
                                 "rows": rows,
                                 "note": "kernel GFLOPS (median, event-timed) while another process "
                                         "runs GEMMs on the same device; unloaded = this run's median"})


def _schedule_and_layout(rt, key: str, m: int, n: int, k: int):
    """The schedule behind an entry's key and the layout its kernel was built for."""
    from ..operands import Operand

    if key.startswith("wg-"):  # the wgmma kernel: one source for every layout
        from ..kernels.wgmma import WgSchedule

        return WgSchedule.from_key(key), None
    if key.startswith("tc-"):
        from ..kernels.tensorcore import TcSchedule
        from ..tc import layout_for as tc_layout

        return TcSchedule.from_key(key), tc_layout(Operand(None, 0, k, False),
                                                   Operand(None, 0, n, False))
    schedule = Schedule.from_key(key)
    return schedule, _layout_of(rt, schedule, m, n, k)


def _layout_of(rt, schedule: Schedule, m: int, n: int, k: int):
    """The layout of the product kernel the lane launches (a direct schedule's reads its
    packed B: harness.DeviceProblem)."""
    from ..lanes.fp32 import lane_for, layout_for
    from ..operands import Operand

    a, b, c = Operand(None, 0, k, False), Operand(None, 0, n, False), Operand(None, 0, n, False)
    if schedule.direct:
        return lane_for(rt, schedule).product_kernel(m, n, k, a, b, c).layout
    return layout_for(schedule, a, b, c)


def _family(name: str) -> str:
    return {"numpy": "numpy", "clblast": "clblast", "cublas": "cublas"}.get(name, "clgemm")


def _line(entry: dict) -> str:
    shape = "x".join(map(str, entry["shape"]))
    if entry["status"] != "ok":
        return f"{entry['method']:>14} {shape}: {entry['status']} ({entry.get('reason')})"
    t = entry["timing"]
    acc = entry.get("accuracy") or {}
    err = acc.get("rel_frobenius_error")
    return (f"{entry['method']:>14} {shape}: peak {t['gflops_peak']:.1f} GFLOPS, median "
            f"{t['gflops_median']:.1f}, cv {t['cv']:.3f}" + (f", rel err {err:.2e}" if err else ""))


def merge_sessions(data: dict, artifacts: list[dict]) -> None:
    """Results of session 0 (first complete one) with each entry's per-session figures; the
    per-session rankings and their reproducibility score; notes of every session."""
    base = artifacts[0]
    data["results"] = base.get("results", [])
    data["baselines"] = base.get("baselines", {})
    for entry in data["results"]:
        if entry["status"] != "ok":
            continue
        peaks, medians = [], []
        for art in artifacts:
            for other in art.get("results", []):
                if (other["method"], other["shape"]) == (entry["method"], entry["shape"]) \
                        and other["status"] == "ok":
                    peaks.append(other["timing"]["gflops_peak"])
                    medians.append(other["timing"]["gflops_median"])
        entry["sessions"] = {"n": len(peaks), "gflops_peak": peaks, "gflops_median": medians,
                             "cv_peak": cv(peaks), "cv_median": cv(medians),
                             "gflops_peak_median": median(peaks),
                             "note": "entry figures are session 0's; these are every session's"}
    rankings = [a["ranking"]["per_session"][0] for a in artifacts
                if a.get("ranking") and a["ranking"].get("per_session")]
    if rankings:
        data["ranking"] = {"shape": artifacts[0]["ranking"]["shape"], "metric": "gflops_median",
                           "per_session": rankings, "reproducibility": reproducibility(rankings)}
    for i, art in enumerate(artifacts):
        data["notes"].extend(f"session {i}: {n}" for n in art.get("notes", []))


def run_bench(opts: BenchOptions, argv: list[str]) -> tuple[dict, list[str] | None]:
    """Measure and write the artifact; returns (artifact, validation errors or None)."""
    run = _Run(opts, argv)
    p = run.protocol
    n_methods = len(run._methods()) + len(opts.baselines) + 2
    total = len(run.cases) * n_methods + max(opts.rank_schedules, 0) + 2
    progress = Progress(total, quiet=opts.quiet)
    complete = False
    try:
        if p.sessions > 1 and opts.session_index is None:
            run.sessions(progress)
        else:
            run.measure(progress)
            run._sessions_ok = True
        if opts.session_index is None:
            run.extras(progress)
        complete = run._sessions_ok
    finally:
        progress.close()
        errors = run.writer.finish(complete)
    return run.writer.data, errors
