"""`clgemm soak`: a short soak writes a valid artifact whose counts add up; injected faults are
found and counted; a wrong result, a false positive and an error are counted (not hidden); the
verification bounds pass clean products and fail corrupted ones; SIGINT, SIGTERM and kill -9
leave a valid partial artifact; bad options are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clgemm.cli import main
from clgemm.lab import soak as S
from clgemm.lab import soak_workload as wl

SRC = Path(S.__file__).resolve().parents[2]  # subprocesses import the clgemm tested
TRACE = '{"name": "t.a", "m": 37, "n": 29, "k": 45, "trans_a": false, "trans_b": true}\n'


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "small.jsonl"
    p.write_text(TRACE)
    return str(p)


def _opts(tmp_path, trace, **kw) -> S.SoakOptions:
    base = {"minutes": 0.1, "out": str(tmp_path / "soak.json"), "fault_rate": 0.6, "window_s": 1.0,
            "seed": int(np.random.default_rng().integers(1 << 20)), "traces": (trace,),
            "quiet": True}
    return S.SoakOptions(**{**base, **kw})


def _valid(data: dict) -> None:
    errors = S.validation_errors(data)
    assert errors == [], errors


def _consistent(d: dict) -> None:
    t, f, w = d["totals"], d["faults"], d["windows"]
    assert f["injected"] == f["found"] + f["missed_above_floor"] + f["missed_below_floor"]
    assert f["missed"] == f["missed_above_floor"] + f["missed_below_floor"]
    for name in ("calls", "injected", "found", "false_positives", "wrong_results", "errors",
                 "clean_checked", "probe_checks"):
        assert sum(x[name] for x in w) == t[name], name
    assert sum(t["by_contract"].values()) == t["calls"]
    by_model = f["by_model"].values()
    assert sum(m["injected"] for m in by_model) == f["injected"]
    assert sum(m["found"] for m in by_model) == f["found"]
    assert t["probe_checks"] == t["calls"]  # every returned product was verified
    assert d["false_positives"]["count"] == t["false_positives"]


def test_short_soak_writes_a_valid_artifact_whose_counts_add_up(tmp_path, trace):
    opts = _opts(tmp_path, trace)
    data = S.Soak(opts, ["test"]).run()
    on_disk = json.loads(Path(opts.out).read_text())
    assert on_disk["status"] == "complete" and on_disk["complete"] is True
    assert on_disk["interrupted"] is None and on_disk["finished_utc"]
    _valid(on_disk)
    _consistent(on_disk)
    # (a window ends at the first call after window_s: with a cold kernel cache on a slow
    # compiler, e.g. Intel's runtime in CI, the first window outlasts the whole 6 s run)
    assert len(on_disk["windows"]) >= 1 and on_disk["summary"]["windows"] == len(data["windows"])
    t = on_disk["totals"]
    assert set(t["by_contract"]) == {"exact", "check", "rel_tol"}, t["by_contract"]
    assert 0 < t["device_arrays"] < t["calls"] and 0 < t["plans"] < t["calls"]
    assert t["row_checks"] > 0
    # faults were injected and found; misses above the floor are counted by size and product
    # (the guard lets some through on tiny products, see the soak's record), never a NaN or
    # an Inf
    f = on_disk["faults"]
    assert f["injected"] >= 3 and f["found"] >= 1, f
    for model in ("nan", "inf"):
        m = f["by_model"].get(model, {})
        assert m.get("found", 0) == m.get("injected", 0), (model, m)
    assert sum(f["missed_above_floor_by_size"].values()) == f["missed_above_floor"]
    assert sum(f["missed_above_floor_by_product"].values()) == f["missed_above_floor"]
    assert sum(f["unrepaired_by_product"].values()) == f["unrepaired_above_floor"]
    assert on_disk["false_positives"]["count"] == 0 and on_disk["errors"]["count"] == 0
    assert on_disk["wrong_results"]["count"] == 0
    # the verification measured real roundoff (a bound of 0 use would mean nothing compared)
    ratios = on_disk["wrong_results"]["worst_ratio"]
    assert 0 < ratios["exact:probe"] < 1 and 0 < ratios["check:probe"] < 1, ratios
    w = on_disk["windows"][-1]
    assert w["rss_bytes"] > 10 << 20 and w["pool"]["managed_bytes"] is not None
    assert w["gflops"] > 0 and w["products_per_s"] > 0
    s = on_disk["summary"]
    covered = next((i + 1 for i, x in enumerate(on_disk["windows"]) if x["cover_done"]),
                   len(on_disk["windows"]))
    assert s["warmup_windows"] >= covered  # memory is judged once every allocation was made
    assert (s["memory"]["rss"] is not None) == (len(on_disk["windows"]) > s["warmup_windows"])
    assert ("throughput" in s) == (s["judged_windows"] >= 2)
    assert set(on_disk["verdict"]["bars"]) >= {"missed_above_floor", "false_positives", "errors",
                                               "wrong_results"}
    assert ("rss_growth_under_1pct" in on_disk["verdict"]["bars"]) == on_disk["verdict"][
        "memory_judged"]
    # no GPU here: the reason is written down
    assert on_disk["telemetry"]["gpu_source"] is None and on_disk["telemetry"]["gpu_reason"]
    # the report renders the soak section from the artifact
    code = main(["report", opts.out, "-o", str(tmp_path / "report")])
    assert code == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Soak: long-run stability" in md and "missed faults above the floor" in md
    assert md.count("\n| ") >= len(on_disk["windows"]) + 10  # a row per window and per bar


def test_every_injected_fault_on_a_check_call_is_counted_and_found(tmp_path, trace):
    """Force every call of the trace's product (37x29x45) to a check=True call with a fault:
    all applied, all above the floor found (faults of 1e-3 max|C| or non-finite ones)."""
    soak = S.Soak(_opts(tmp_path, trace, fault_models=("rel_1e-3", "nan", "bit_exponent")),
                  ["test"])
    soak.products = [p for p in soak.products if p.name == "small:t.a"]
    assert len(soak.products) == 1
    real = soak.draw

    def checked():
        d = real()
        return S.Draw(d.product, "check", None, d.on_device, d.via_plan, d.alpha, d.beta, True,
                      d.rows_check)

    soak.draw = checked
    for _ in range(6):
        soak.step()
    w = soak.window
    assert w.calls == 6 and w.injected + w.not_applied == 6 and w.injected >= 5
    assert w.found == w.injected - w.missed_below_floor and w.missed_above_floor == 0
    assert w.found >= 4 and w.wrong_results == 0


class _Lying:
    """clgemm with a wrong product on exact calls, a guard that cries wolf, or an error."""

    def __init__(self, real, how: str) -> None:
        self.real, self.how = real, how
        self.to_device = real.to_device

    def plan(self, *args, **kw):
        p = self.real.plan(*args, **kw)
        return lambda A, B, C=None, **k2: self._wrap(p(A, B, C, **k2), kw.get("check", False))

    def matmul(self, *args, **kw):
        return self._wrap(self.real.matmul(*args, **kw), kw.get("check", False))

    def _wrap(self, got, check: bool):
        if self.how == "error":
            raise MemoryError("injected by the test")
        out, info = got if isinstance(got, tuple) else (got, None)
        if self.how == "wrong" and not check:
            host = out.get() if hasattr(out, "get") else out
            host = host.copy()
            host[0, 0] += 0.05 * (np.abs(host).max() + 1.0)
            if hasattr(out, "set"):
                out.set(host)
            else:
                out[...] = host
        if self.how == "wolf" and info is not None and "abft" in info.extra:
            info.extra["abft"] = {**info.extra["abft"], "detected": True}
        return (out, info) if isinstance(got, tuple) else out


@pytest.mark.parametrize("how,count,bar", [("wrong", "wrong_results", "wrong_results"),
                                           ("wolf", "false_positives", "false_positives"),
                                           ("error", "errors", "errors")])
def test_failures_are_counted_and_fail_the_verdict(tmp_path, trace, how, count, bar):
    soak = S.Soak(_opts(tmp_path, trace, fault_rate=0.0), ["test"])
    soak.clgemm = _Lying(soak.clgemm, how)
    for _ in range(12):
        soak.step()
    soak.header(None, None)
    soak.close_window(0.0, 1.0, 0.0)
    data = soak.artifact("complete", None)
    assert data[count]["count"] >= 1 and data[count]["cases"], data[count]
    assert data["verdict"]["bars"][bar] is False and data["verdict"]["pass"] is False
    if how == "error":
        assert data["errors"]["by_type"] == {"MemoryError": data["errors"]["count"]}


def test_the_bounds_pass_clean_products_and_catch_a_wrong_cell(rng):
    """Both directions of the verification: numpy's float32 product (a correct result) passes
    every bound; one cell off by 5e-2 max|C| fails the probe test and the rows test."""
    p = wl.Product("t", 61, 47, 129, True, False)
    src = wl.OperandSource(int(rng.integers(1 << 30)))
    for _ in range(4):
        ops = src.get(p)
        opa, opb = ops.op()
        alpha, beta = float(rng.uniform(-2, 2)), float(rng.choice([0.0, 0.7]))
        C = (alpha * (opa @ opb) + beta * ops.C0).astype(np.float32)
        for rel_tol in (None, 1e-3):
            assert wl.verify_probe(ops, C, alpha, beta, rel_tol).ok
        rows = wl.verify_rows(ops, C, alpha, beta, None, rng)
        assert rows.ok and 0 < rows.ratio < 1
        bad = C.copy()
        i, j = int(rng.integers(p.m)), int(rng.integers(p.n))
        bad[i, j] += 5e-2 * np.abs(C).max() * rng.choice([-1, 1])
        assert not wl.verify_probe(ops, bad, alpha, beta, None).ok
        every = wl.verify_rows(ops, bad, alpha, beta, None, np.random.default_rng(0))
        # the rows test samples rows: it must fail when row i is among them
        rows_seen = np.sort(np.random.default_rng(0).choice(p.m, wl.SAMPLE_ROWS, replace=False))
        assert every.ok == (i not in rows_seen)
        # rel_tol: a result off by 3x the budget in Frobenius norm is refused
        noise = rng.standard_normal(C.shape)
        far = C + (3e-3 * np.linalg.norm(C) / np.linalg.norm(noise) * noise).astype(np.float32)
        assert not wl.verify_probe(ops, far, alpha, beta, 1e-3).ok


def _spawn(tmp_path, trace, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONFAULTHANDLER="1",
               PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "clgemm.cli", "soak", "--minutes", "5",
                             "--window-seconds", "0.5", "--out", str(out), "--trace", trace,
                             "--fault-rate", "0.3", "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_window(proc: subprocess.Popen, out: Path, timeout: float = 60.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        if out.exists():
            data = json.loads(out.read_text())  # never torn: written atomically
            if data["windows"]:
                return data
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no window written within the timeout")


@pytest.mark.parametrize("sig,code,name", [(signal.SIGINT, 130, "SIGINT"),
                                           (signal.SIGTERM, 143, "SIGTERM"),
                                           (signal.SIGKILL, -9, None)])
def test_an_interrupt_leaves_a_valid_partial_artifact(tmp_path, trace, sig, code, name):
    out = tmp_path / "partial.json"
    proc = _spawn(tmp_path, trace, out)
    _wait_for_window(proc, out)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # where it hangs: its threads' stacks (faulthandler)
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the soak had not exited 60 s after {sig!r}; its stderr:\n{err[-8000:]}")
    assert proc.returncode == code, err
    data = json.loads(out.read_text())
    _valid(data)
    _consistent(data)
    assert data["complete"] is False and data["windows"]
    assert data["interrupted"] == name
    assert data["status"] == ("running" if sig == signal.SIGKILL else "interrupted")
    if name:
        assert "wrote" in err and data["finished_utc"]
    assert not list(tmp_path.glob(".partial.json.*"))  # no temporary file left behind


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_dropped_in_a_finalizer_still_stops_the_soak(tmp_path, trace, monkeypatch):
    """Python prints and drops an exception raised while a finalizer runs (a pooled buffer's
    __del__, a weakref callback): a SIGINT handled there must still stop the soak, at its
    next step, with its artifact marked interrupted (it ran to its end before)."""
    soak = S.Soak(_opts(tmp_path, trace, minutes=0.5), ["test"])
    steps: list[int] = []
    real = soak.step

    class SignalledInFinalizer:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: in here
            time.sleep(0.01)

    def step() -> None:
        steps.append(1)
        if len(steps) == 3:
            SignalledInFinalizer()  # dropped at once: its __del__ runs now
        real()

    monkeypatch.setattr(soak, "step", step)
    t = time.monotonic()
    data = soak.run()
    assert data["interrupted"] == "SIGINT" and data["status"] == "interrupted"
    assert len(steps) == 3 and time.monotonic() - t < 20.0
    _valid(data)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def _one_line(code: int, err: str, expect: int) -> None:
    assert code == expect, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err


def test_a_window_longer_than_the_run_is_a_usage_error(tmp_path, capsys):
    code = main(["soak", "--minutes", "0.01", "--window-seconds", "60", "--out",
                 str(tmp_path / "x.json")])
    _one_line(code, capsys.readouterr().err, 2)
    assert not (tmp_path / "x.json").exists()



def test_the_warmup_covers_every_product_contract_and_array_kind_first(tmp_path, trace):
    soak = S.Soak(_opts(tmp_path, trace), ["test"])
    variants = [(c, None) for c, _ in S.CONTRACTS if c != "rel_tol"] + [
        ("rel_tol", t) for t in S.REL_TOLS]
    n = len(soak.products) * len(variants) * 2 * 2
    first = [soak.draw() for _ in range(n)]
    assert {(d.product, d.contract, d.rel_tol, d.on_device, d.beta != 0.0) for d in first} == {
        (p, c, t, dev, old) for p in soak.products for c, t in variants
        for dev in (False, True) for old in (False, True)}
    later = [soak.draw() for _ in range(3 * len(soak.products))]
    assert any(d.beta == 0.0 for d in later) and len({d.on_device for d in later}) == 2


def test_big_products_reuse_their_operands_and_device_copies(tmp_path, trace, monkeypatch):
    """The GPU path on the CPU: operands over FRESH_LIMIT elements are drawn once per matrix
    shape, shared, uploaded once before the clock starts, and verified like fresh ones."""
    monkeypatch.setattr(wl, "FRESH_LIMIT", 3000)
    soak = S.Soak(_opts(tmp_path, trace, fault_rate=0.5), ["test"])
    soak.products = [p for p in soak.products if 3000 < p.elements < 20000][:4]
    assert len(soak.products) >= 2
    assert soak.source.prepare(soak.products) == len(soak.products)
    soak.upload_reused()
    kept = soak.source.kept()
    assert all(ops.kind == "reused" and ops.device is not None for ops in kept)
    for _ in range(2 * len(soak.products) * len(S.CONTRACTS) * 2):
        soak.step()
    w = soak.window
    assert w.errors == 0 and w.wrong_results == 0 and w.device_arrays > 0, soak.log.cases
    assert soak.source.get(soak.products[0]) is kept[0]  # the same operands every call


def test_a_gpu_soaks_the_full_model_traces_and_the_kpi_squares():
    """What the GPU command runs (checked here without a GPU): every traces/models/*.jsonl,
    the KPI squares at full size, the odd shapes of both lists."""

    class Gpu:
        type, name = "GPU", "a GPU"

    traces = wl.default_traces(Gpu())
    assert {Path(t).stem for t in traces} >= {"bert-base-train", "llama-7b-decode",
                                              "llama-7b-prefill", "resnet50-im2col"}
    products = wl.products(Gpu(), traces, 0)
    names = {p.name for p in products}
    assert {"kpi:1400", "kpi:2048", "kpi:3072", "llama-7b-prefill:prefill.lm_head",
            "odd:1399x1401x1403"} <= names
    # the traces' batched products (attention) are soaked as the batches they are
    batched = {(p.name, p.batch) for p in products if p.batch > 1}
    assert ("llama-7b-prefill:prefill-attn.scores", 32) in batched and len(batched) >= 10


BATCHED = ('{"name": "t.b", "m": 13, "n": 9, "k": 7, "trans_a": false, "trans_b": true, '
           '"batch": 3}\n')


def test_a_batched_trace_entry_runs_as_a_batch_each_product_verified(tmp_path):
    """A trace entry with a batch is soaked as the batched product (3-D operands, one call),
    every product of it verified against float64 and injected with the call's fault; a wrong
    product anywhere in the batch is a wrong result."""
    path = tmp_path / "batched.jsonl"
    path.write_text(BATCHED)
    # every checked call injected: at 0.6 a random seed left all four unfaulted 1 in 40 runs
    soak = S.Soak(_opts(tmp_path, str(path), fault_models=("rel_1e-3", "nan"), fault_rate=1.0),
                  ["test"])
    soak.products = [p for p in soak.products if p.name == "batched:t.b"]
    assert [p.batch for p in soak.products] == [3]
    shapes = []
    real = soak.clgemm

    class Spy:
        to_device = staticmethod(real.to_device)

        def matmul(self, A, B, **kw):
            shapes.append(tuple(A.shape))
            return real.matmul(A, B, **kw)

        def plan(self, *args, **kw):
            shapes.append(("plan", kw.get("batch")))
            return real.plan(*args, **kw)

    soak.clgemm = Spy()
    for _ in range(16):
        soak.step()
    w = soak.window
    assert w.errors == 0, [(c["type"], c["message"]) for c in soak.log.cases["errors"]]
    assert w.calls == 16 and w.wrong_results == 0 and w.false_positives == 0
    assert all(s in ((3, 13, 7), ("plan", 3)) for s in shapes), shapes
    # every checked call with a fault counts one per product of the batch
    assert w.injected % 3 == 0 and w.injected > 0 and w.missed_above_floor == 0
    assert w.found == w.injected - w.missed_below_floor

    ops = soak.source.get(soak.products[0])
    C = np.einsum("bik,bjk->bij", ops.A.astype(np.float64), ops.B.astype(np.float64))
    outs = list(C.astype(np.float32))
    d = S.Draw(soak.products[0], "exact", None, False, False, 1.0, 0.0, False, True)
    assert all(c.ok for each in soak._verify(d, ops, outs) for c in each)
    outs[2] = outs[2].copy()
    # sparse operands with K = 7 leave the whole batch zero about 1 seed in 500 (CI drew one):
    # the fault's size then has a floor of its own
    outs[2][4, 5] += 1e-2 * max(np.abs(C).max(), 1.0)
    per = soak._verify(d, ops, outs)
    assert all(c.ok for c in per[0] + per[1]) and not all(c.ok for c in per[2])


def test_a_row_fault_on_an_all_zero_product_is_below_the_floor(tmp_path, trace):
    """The row model adds max|C| 1e-3 (1 + noise) to a row: on a product whose clean result
    is all zeros it changes nothing, and is no miss above the floor."""
    soak = S.Soak(_opts(tmp_path, trace, fault_models=("row",)), ["test"])
    p = soak.products[0]
    real = soak.source.get

    def zeros(prod):
        ops = real(prod)
        return wl.Operands(prod, np.zeros_like(ops.A), ops.B, np.zeros_like(ops.C0),
                           wl.probes_of(np.random.default_rng(0), ops.op()[1]), "zeros")

    soak.source.get = zeros
    d = S.Draw(p, "check", None, False, False, 1.0, 0.0, True, False)
    soak.draw = lambda: d
    for _ in range(3):
        soak.step()
    w = soak.window
    assert w.calls == 3 and w.missed_above_floor == 0 and w.errors == 0
    assert w.missed_below_floor + w.found == w.injected == 3


def test_a_missed_fault_keeps_what_the_guard_judged_it_by(rng):
    # a miss is read later from the artifact alone: T, the floor, the block rows, the lane
    import clgemm

    A = rng.standard_normal((70, 90)).astype(np.float32)
    B = rng.standard_normal((90, 50)).astype(np.float32)
    _, info = clgemm.matmul(A, B, check=True, return_info=True)
    g = S.Soak._guard_view(info)["guard"]
    assert g["threshold"] > 0 and g["calibration"] > 0 and g["block"] >= 1
    assert g["lane"] == "fp32" and g["schedule"] == info.schedule
    assert S.Soak._guard_view(None) == {}


def test_a_miss_within_the_calls_stated_floor_is_counted_apart(tmp_path, trace):
    from clgemm.info import Info

    soak = S.Soak(_opts(tmp_path, trace), ["test"])
    d = S.Draw(soak.products[0], "check", None, False, False, 1.0, 0.0, True, False)
    fault = {"model": "rel_1e-5", "cell": (0, 0), "delta": 1.0, "rel_size": 2e-5,
             "significant": True}

    def info(floor):
        i = Info(method="exact", schedule="s", device="d", shape=(37, 29, 45))
        i.extra["abft"] = {"floor_abs": floor, "threshold": 1.0}
        return i

    soak._fault_outcome(d, fault, False, True, info(2.0))  # within the call's floor
    soak._fault_outcome(d, fault, False, True, info(0.5))  # over it: a miss
    soak._fault_outcome(d, fault, False, True, None)  # no floor stated: over FLOOR_REL counts
    w = soak.window
    assert (w.injected, w.missed_above_floor, w.missed_below_floor) == (3, 2, 1)
    assert w.missed_under_stated_floor == 1
    case = soak.log.cases["under_stated_floor"][0]
    assert case["guard"]["floor_abs"] == 2.0
