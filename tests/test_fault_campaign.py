"""The bad-input campaign: every CLI subcommand and the API, fed nonsense, answer with one line
(CLI: exit 2 for usage, 1 for failures) or a `ClgemmError` (API) -- never a traceback, never
another exception type, never a silent success.

The CLI cases are generated from the parser itself: every option of every subcommand gets the
bad values of its argument kind (the `type=` function from `clgemm.commands.args`), so a new
subcommand or option inherits the campaign. An option without a checking type fails
`test_every_option_is_checked` until it gets one (or is listed as free text). All cases run
in-process (`main(argv)`) and fail while the command line is parsed: no kernel is compiled.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sqlite3
import time

import numpy as np
import pytest

import clgemm
from clgemm.cli import build_parser, main

# ---- the file zoo: good and bad inputs, made once per module -------------------------------
# Placeholders "{name}" in the tables below are replaced by these paths at run time.
GOOD_SPACE = {"schema": "clgemm.space/1", "device": {"name": "x"}, "shape": [8, 8, 8],
              "params": [], "records": []}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from clgemm.bench.metrics import SCHEMA_VERSION

    d = tmp_path_factory.mktemp("zoo")
    f = {}

    def put(name: str, data, mode: str = "w") -> None:
        path = d / name
        with open(path, mode) as h:
            h.write(data)
        f[name.split(".")[0]] = str(path)

    np.save(d / "npy.npy", np.ones((5, 5), np.float32))
    f["npy"] = str(d / "npy.npy")
    raw = (d / "npy.npy").read_bytes()
    put("trunc_npy.npy", raw[:len(raw) // 2], "wb")
    np.save(d / "pickled_npy.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f["pickled_npy"] = str(d / "pickled_npy.npy")
    put("empty.json", "")
    put("text.txt", "hello, not what you think\n")
    put("binary.bin", bytes(range(256)) * 4, "wb")
    put("trunc_json.json", '{"schema": "clgemm.')
    put("json_list.json", "[1, 2, 3]")
    put("json_wrong.json", json.dumps({"schema": "something/else", "schema_version": "no"}))
    put("pickle.pkl", pickle.dumps({"a": 1}), "wb")
    put("trace.jsonl", '{"m": 8, "n": 8, "k": 8}\n')
    put("trace_bad_dims.jsonl", '{"m": 0, "n": 8, "k": 8}\n')
    put("trace_bad_phase.jsonl", '{"phase": "sideways"}\n')
    put("space.json", json.dumps(GOOD_SPACE))
    put("artifact.json", json.dumps({"schema_version": SCHEMA_VERSION}))
    put("bad_candidates.txt", "this-is-no-schedule-key\n")
    put("candidates_json.json", '["wm4-wn8",')
    db = d / "db.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    f["db"] = str(db)
    (d / "folder").mkdir()
    f["folder"] = str(d / "folder")
    f["missing"] = str(d / "no" / "such" / "file.json")
    f["under_file"] = str(d / "text.txt" / "inside.json")  # a path whose parent is a file
    f["out_file"] = str(d / "out" / "result.json")
    f["out_dir"] = str(d / "outdir")
    return f


def resolve(value: str, zoo: dict) -> str:
    return value.format(**zoo) if "{" in value else value


# ---- bad and good values per argument kind (the `type=` function's name) --------------------
NOT_NUMBERS = ["abc", "", "1,5", "--", "0x1g"]
BAD = {
    "an integer": NOT_NUMBERS + ["1.5"],
    "an integer >= 0 (0 = none)": NOT_NUMBERS + ["-1", "1.5"],
    "an integer >= 1": NOT_NUMBERS + ["0", "-3", "1.5"],
    "a number": NOT_NUMBERS + ["nan", "inf", "-inf"],
    "a number > 0": NOT_NUMBERS + ["nan", "inf", "0", "-1"],
    "a number > 1": NOT_NUMBERS + ["nan", "inf", "1", "0.5", "-2"],
    "a number >= 0": NOT_NUMBERS + ["nan", "-1e-9"],
    "a number > 0 and < 1": NOT_NUMBERS + ["nan", "0", "1", "-0.5", "2"],
    "a number >= 0 and <= 1": NOT_NUMBERS + ["nan", "-0.1", "1.5"],
    "a number > 0 and <= 1": NOT_NUMBERS + ["nan", "0", "-0.5", "1.5"],
    "shape": ["abc", "0", "axb", "1x2", "1x2x3x4", "-5", "", "64x0x64", "1.5"],
    "shape_text": ["abc", "0", "1x2", "-5", ""],
    "shape_list": ["abc", ",", "0", "64,abc", "1x2", ""],
    "comma-separated list of an integer >= 1": ["abc", "0", "1,-2", ",", "1.5"],
    "comma-separated list of a number > 0 and < 1": ["abc", "0", "2", "nan", ","],
    "comma list of choices": ["bogus", ",", "x,y"],
    "existing_file": ["{missing}", "{folder}"],
    "existing_dir": ["{missing}", "{text}"],
    "existing_path": ["{missing}"],
    "output_file": ["{folder}", "{under_file}", "", "{folder}/"],
    "output_dir": ["{text}", "{under_file}"],
    "file_stem": ["a/b", "", ".."],
    "npy_file": ["{missing}", "{folder}", "{empty}", "{text}", "{trunc_npy}", "{pickled_npy}",
                 "{pickle}"],
    "a clgemm bench or roofline artifact": ["{missing}", "{folder}", "{empty}", "{text}",
                                            "{trunc_json}", "{json_list}", "{json_wrong}",
                                            "{binary}"],
    "report_input": ["{missing}", "{folder}", "{empty}", "{trunc_json}", "{json_list}",
                     "{json_wrong}", "{binary}"],
    "a recorded space": ["{missing}", "{folder}", "{empty}", "{trunc_json}", "{json_list}",
                         "{binary}"],
    "space_file": ["{missing}", "{empty}", "{trunc_json}", "{json_list}", "{json_wrong}"],
    "table_file": ["{missing}", "{folder}", "{trunc_json}", "{json_list}", "{json_wrong}",
                   "{space}"],
    "trace_file": ["{missing}", "{folder}", "{empty}", "{text}", "{json_list}", "{json_wrong}",
                   "{trace_bad_dims}", "{trace_bad_phase}", "{binary}"],
    "candidates_file": ["{missing}", "{folder}", "{bad_candidates}", "{candidates_json}"],
    "database": ["{folder}", "{text}", "{binary}", "{under_file}"],
    "existing database": ["{missing}", "{folder}", "{text}", "{empty}"],
    "budget": ["abc", "0", "-5", "0s", "-1s", "nans", "s", ""],
    "schedule_key": ["nonsense", "", "wm4-zz9", "tc-nonsense"],
    "option_pair": ["x", "t0=abc", "=1", "t0=nan"],
    "int": ["abc", "1.5", ""],
    "choices": ["bogus", ""],
    "fleet_devices": ["", ",", "ocl:", "gpu:0", "ocl:0,ocl:0", "ocl:0,", "sim:{missing}",
                      "sim:{text}", "sim:{trunc_json}", "ocl:@a", "gpus:0", "gpus:x",
                      "gpus:"],
    "dask_address": ["", "host", "tcp://host", "tcp://:8786", "host:port", "host:0",
                     "host:70000"],
    "kill_spec": ["", "compile-0", "@3", "compile-0@", "compile-0@0", "compile-0@x"],
}
GOOD = {
    "npy_file": "{npy}", "trace_file": "{trace}", "a clgemm bench or roofline artifact":
    "{artifact}", "report_input": "{artifact}", "a recorded space": "{space}",
    "space_file": "{space}", "existing database": "{db}", "database": "{db}",
    "output_file": "{out_file}", "output_dir": "{out_dir}", "existing_file": "{text}",
    "shape": "64", "a number > 0": "1",
}
FREE_TEXT = {"--device", "--prior-device", "--label", "--candidate-method", "--baseline-method"}


def kind_of(action: argparse.Action) -> str | None:
    if action.choices is not None and action.type is None:
        return "choices"
    if action.type is int:
        return "int"
    return getattr(action.type, "__name__", None)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def value_actions(sp: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in sp._actions if a.nargs != 0 and a.help != argparse.SUPPRESS]


def required_argv(sp: argparse.ArgumentParser, skip: argparse.Action | None = None) -> list:
    """Good values for the required arguments (and positionals) other than `skip`."""
    argv = []
    for a in value_actions(sp):
        # a positional of nargs "*" or "?" may be left out (argparse still marks it required)
        optional = not a.option_strings and a.nargs in ("*", "?")
        if a is skip or optional or not (a.required or not a.option_strings):
            continue
        good = a.choices[0] if kind_of(a) == "choices" else GOOD.get(kind_of(a))
        assert good, f"no good value for {a.dest} (kind {kind_of(a)!r}): add one to GOOD"
        argv += ([a.option_strings[0]] if a.option_strings else []) + [good]
    return argv


def cli_cases() -> list:
    cases = []
    for name, sp in subcommands().items():
        cases.append(pytest.param(name, [*required_argv(sp), "--no-such-option", "1"],
                                  id=f"{name}:unknown-option"))
        if required_argv(sp):
            cases.append(pytest.param(name, [], id=f"{name}:nothing"))
        for a in value_actions(sp):
            for bad in BAD.get(kind_of(a), []):
                flag = [a.option_strings[0]] if a.option_strings else []
                # a value starting with '-' is given as --opt=value (argparse reads it so)
                arg = ([f"{flag[0]}={bad}"] if flag and bad.startswith("-") else flag + [bad])
                if not flag and bad.startswith("-"):
                    continue
                cases.append(pytest.param(name, [*required_argv(sp, skip=a), *arg],
                                          id=f"{name}:{a.dest}={bad or 'EMPTY'}"))
    return cases


CLI_CASES = cli_cases()


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, err: str, expect: int) -> None:
    assert code == expect, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, f"not one line:\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert "error:" in lines[0]


def test_the_campaign_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) + len(CLI_RUNTIME_CASES) >= 300


def test_every_option_is_checked():
    """An option must have a checking type (or choices, or be a flag) unless it is free text."""
    unchecked = []
    for name, sp in subcommands().items():
        for a in value_actions(sp):
            if kind_of(a) not in BAD and not set(a.option_strings) & FREE_TEXT:
                unchecked.append(f"{name} {a.option_strings or a.dest} ({kind_of(a)})")
    assert not unchecked, "options without a checking type= (see clgemm.commands.args): " + \
        ", ".join(unchecked)


def _no_work(args):
    pytest.fail(f"bad input accepted: `clgemm {args.command}` would have started its work")


def parser_without_work(build=build_parser):
    """The real parser with every command's work replaced by a failure: a case the parser
    accepts is a silent acceptance, caught before it runs a benchmark for minutes."""
    parser = build()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for sp in sub.choices.values():
        sp.set_defaults(func=_no_work)
    return parser


@pytest.mark.parametrize("command,argv", CLI_CASES)
def test_cli_bad_argument(command, argv, zoo, capsys, tmp_path, monkeypatch):
    from clgemm import cli

    monkeypatch.chdir(tmp_path)  # defaults like -o report land here, never in the repo
    monkeypatch.setattr(cli, "build_parser", parser_without_work)
    argv = [command] + [resolve(x, zoo) for x in argv]
    code, out, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, 2)


# ---- CLI cases that pass the parser and fail in the command (exit 1, one line) -------------
CLI_RUNTIME_CASES = [
    pytest.param(["matmul", "{npy}", "{npy}", "-o", "{out_file}", "--device", "no-such-dev"],
                 "available", id="matmul:device"),
    pytest.param(["matmul", "{f64}", "{npy}", "-o", "{out_file}"], "astype", id="matmul:float64"),
    pytest.param(["matmul", "{npy}", "{npy4d}", "-o", "{out_file}"], "2-D", id="matmul:4d"),
    pytest.param(["matmul", "{npy}", "{npy_4x3}", "-o", "{out_file}"], "inner dimensions",
                 id="matmul:inner"),
    pytest.param(["matmul", "{npy}", "{npy}", "-o", "{out_file}", "--beta", "1"], "beta",
                 id="matmul:beta-without-c"),
    pytest.param(["matmul", "{npy}", "{npy}", "--c", "{npy_4x3}", "--beta", "1", "-o",
                  "{out_file}"], "C has shape", id="matmul:c-shape"),
    pytest.param(["bench", "--device", "no-such-dev", "-o", "{out_file}"], "available",
                 id="bench:device"),
    pytest.param(["tune", "--size", "64", "--db", "{trunc_db}", "--budget", "1"],
                 "tuning database", id="tune:truncated-db"),
    pytest.param(["tune", "--size", "64", "--device", "no-such-dev", "--db", "{new_db}"],
                 "available", id="tune:device"),
    pytest.param(["distill", "--db", "{db}", "--device", "no-such-dev"], "available",
                 id="distill:device"),
    pytest.param(["replay", "{trace}", "--device", "no-such-dev"], "available",
                 id="replay:device"),
    pytest.param(["abft-campaign", "--device", "no-such-dev"], "available",
                 id="abft-campaign:device"),
    pytest.param(["approx-campaign", "--device", "no-such-dev"], "available",
                 id="approx-campaign:device"),
    pytest.param(["abft-calibrate", "--device", "no-such-dev", "--dry-run"], "available",
                 id="abft-calibrate:device"),
    pytest.param(["roofline", "--device", "no-such-dev", "-o", "{out_file}"], "available",
                 id="roofline:device"),
    pytest.param(["strategies", "--space", "{json_wrong}"], "recorded-space",
                 id="strategies:unknown-format"),
    pytest.param(["soak", "--minutes", "0.01", "--window-seconds", "0.5", "--out", "{out_file}",
                  "--device", "no-such-dev"], "available", id="soak:device"),
]


@pytest.mark.parametrize("argv,expect", CLI_RUNTIME_CASES)
def test_cli_failure_is_one_line(argv, expect, zoo, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "f64.npy", np.ones((5, 5)))
    np.save(tmp_path / "npy4d.npy", np.ones((2, 2, 5, 5), np.float32))
    np.save(tmp_path / "npy_4x3.npy", np.ones((4, 3), np.float32))
    trunc = tmp_path / "trunc.sqlite"
    con = sqlite3.connect(trunc)
    con.executescript("CREATE TABLE t (x); " + "INSERT INTO t VALUES (randomblob(3000));" * 20)
    con.close()
    trunc.write_bytes(trunc.read_bytes()[:5000])  # the header survives, the pages do not
    files = dict(zoo, f64=str(tmp_path / "f64.npy"), npy4d=str(tmp_path / "npy4d.npy"),
                 npy_4x3=str(tmp_path / "npy_4x3.npy"), trunc_db=str(trunc),
                 new_db=str(tmp_path / "new.sqlite"))
    code, out, err = run_cli([resolve(x, files) for x in argv], capsys)
    assert_one_line_error(code, err, 1)
    assert expect in err


def test_debug_shows_the_traceback(zoo, capsys, tmp_path):
    code, out, err = run_cli(["matmul", zoo["npy"], zoo["npy"], "-o", str(tmp_path / "o.npy"),
                              "--device", "no-such-dev", "--debug"], capsys)
    assert code == 1 and "Traceback" in err and "available" in err.splitlines()[-1]


def test_matmul_out_is_written_where_named(zoo, capsys, tmp_path):
    """-o NAME without .npy: numpy.save(NAME) wrote NAME.npy and the CLI reported NAME."""
    out = tmp_path / "result"
    code, text, err = run_cli(["matmul", zoo["npy"], zoo["npy"], "-o", str(out)], capsys)
    assert code == 0, err
    assert np.allclose(np.load(out), np.full((5, 5), 5.0))
    assert not (tmp_path / "result.npy").exists()


# ---- the API -------------------------------------------------------------------------------
def _masked():
    return np.ma.masked_array(np.ones((4, 5), np.float32), mask=np.eye(4, 5, dtype=bool))


def _readonly_c():
    c = np.zeros((4, 6), np.float32)
    c.flags.writeable = False
    return c


def _nan_c():
    c = np.ones((4, 6), np.float32)
    c[1, 2] = np.nan
    return c


A = np.ones((4, 5), np.float32)
B = np.ones((5, 6), np.float32)
E = clgemm.ClgemmError
API_BAD = {
    "A": [[[1.0] * 5] * 4, (1.0, 2.0), None, "A", 3.0, _masked(), A.astype(np.float64),
          A.astype(np.int32), A.astype(np.complex64), A.astype(object), A.astype(np.float16),
          A[0], A[None], np.float32(1.0), np.array(1.0, np.float32), A.astype(bool)],
    "B": [[[1.0] * 6] * 5, None, "B", B.astype(np.float64), B[0], B[None],
          np.ma.masked_array(B)],
    "C": [_readonly_c(), np.broadcast_to(np.float32(0), (4, 6)),
          np.broadcast_to(np.zeros(6, np.float32), (4, 6)), np.zeros((4, 5), np.float32),
          np.zeros((4, 6)), [[0.0] * 6] * 4, "C", np.ma.masked_array(np.zeros((4, 6),
                                                                             np.float32))],
    "alpha": ["2", b"2", True, np.bool_(True), None, [1.0], 1j, float("nan"), float("inf"),
              -float("inf"), object(), {}],
    "beta": ["0", False, None, 1j, float("nan"), "x"],
    "trans_a": ["no", "yes", 1, 0, None, 1.0, "False", [], np.int64(1)],
    "trans_b": ["no", 1, None, "True"],
    "rel_tol": ["1e-3", 0.0, 1.0, 1.5, -1e-3, float("nan"), True, [1e-3], "x", 1j],
    "check": ["yes", 1, None, "True", np.float32(1)],
    "nonfinite": ["ignore", None, 1, True, "RAISE", ["raise"]],
    "selector": ["dynamic", None, 1, ["online"], "Static"],
    "schedule": ["garbage", 3, {}, [], "wm4-wn8-om6-on16-tk16", object(), 1.5],
    "return_info": ["yes", 1, None],
    "device": ["no such device anywhere", 99, -1],
}


def api_cases() -> list:
    cases = []
    for arg, values in API_BAD.items():
        for i, v in enumerate(values):
            cases.append(pytest.param(arg, v, id=f"matmul:{arg}#{i}:{type(v).__name__}"))
    return cases


API_CASES = api_cases() + [pytest.param("to_device", v, id=f"to_device#{i}:{type(v).__name__}")
                           for i, v in enumerate([[1.0], [[1.0]], (1.0,), None, "x", 3.0,
                                                  A.astype(np.float64), _masked()])]


@pytest.mark.parametrize("arg,value", API_CASES)
def test_api_bad_argument(arg, value):
    t0 = time.perf_counter()
    with pytest.raises(E) as info:
        if arg == "to_device":
            clgemm.to_device(value)
        else:
            kwargs = {"C": np.zeros((4, 6), np.float32), "beta": 0.0}
            if arg in ("A", "B"):
                args = (value, B) if arg == "A" else (A, value)
                clgemm.matmul(*args, **kwargs)
            else:
                kwargs[arg] = value
                if arg == "C":
                    kwargs["beta"] = 1.0
                clgemm.matmul(A, B, **kwargs)
    assert str(info.value)  # says something
    assert time.perf_counter() - t0 < 5.0


def test_device_array_operands_cannot_be_mixed_or_already_on_device():
    d = clgemm.to_device(A)
    with pytest.raises(E):
        clgemm.to_device(d)
    with pytest.raises(E):
        clgemm.matmul(d, B)
    with pytest.raises(E):
        clgemm.matmul(A, clgemm.to_device(B))


def test_nonfinite_raise_reads_c_only_when_beta_is_not_zero(rng):
    a = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    with pytest.raises(clgemm.NonFiniteError, match="C contains"):
        clgemm.matmul(a, b, C=_nan_c(), beta=0.5, nonfinite="raise")
    out = clgemm.matmul(a, b, C=_nan_c(), beta=0.0, nonfinite="raise")  # C is not read
    assert np.allclose(out, a.astype(np.float64) @ b.astype(np.float64), atol=1e-5)


def test_huge_products_are_refused_before_any_host_allocation():
    """A zero-stride 70000 x 50000 operand (13 GiB if densified) and a 100000^2 result
    (40 GB): refused at once with our error, not after densifying or by numpy."""
    huge_a = np.broadcast_to(np.float32(1), (70000, 50000))
    huge_b = np.broadcast_to(np.float32(1), (50000, 16))
    for args in ((huge_a, huge_b),
                 (np.broadcast_to(np.float32(1), (100000, 8)),
                  np.broadcast_to(np.float32(1), (8, 100000)))):
        t0 = time.perf_counter()
        with pytest.raises((clgemm.OutOfDeviceMemoryError, clgemm.OutOfHostMemoryError)):
            clgemm.matmul(*args)
        assert time.perf_counter() - t0 < 2.0


def test_host_memory_is_checked_against_what_is_available():
    from clgemm.runtime import get_runtime
    from clgemm.validate import check_host_memory

    dev = get_runtime().device
    a = np.broadcast_to(np.float32(1), (2000, 3000))  # densified: 24 MB
    check_host_memory(dev, a, B[:1].repeat(3000, 0), None, 2000, 6, 0.0, available=1 << 30)
    with pytest.raises(clgemm.OutOfHostMemoryError, match="split"):
        check_host_memory(dev, a, np.ones((3000, 6), np.float32), None, 2000, 6, 0.0,
                          available=10 << 20)
