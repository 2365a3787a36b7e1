"""The clgemm command: devices and matmul from .npy files."""

from __future__ import annotations

import json

import numpy as np

from clgemm.cli import main
from conftest import assert_close_to_reference, rand, reference


def test_devices_json(capsys):
    assert main(["devices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and {"fingerprint", "capabilities", "driver_version"} <= set(rows[0])


def test_matmul_from_files(tmp_path, rng, capsys):
    A, B, C0 = rand(rng, (31, 17)), rand(rng, (23, 17)), rand(rng, (31, 23))
    for name, x in (("a", A), ("b", B), ("c", C0)):
        np.save(tmp_path / f"{name}.npy", x)
    code = main(["matmul", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--trans-b",
                 "--c", str(tmp_path / "c.npy"), "--alpha", "2", "--beta", "0.5",
                 "-o", str(tmp_path / "out.npy")])
    assert code == 0
    out = np.load(tmp_path / "out.npy")
    ref, np_err = reference(A, B, C0, 2.0, 0.5, False, True)
    assert_close_to_reference(out, ref, np_err)
    assert "GFLOPS" in capsys.readouterr().out


def test_matmul_error_is_reported_not_raised(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((3, 4)))  # float64
    np.save(tmp_path / "b.npy", np.ones((4, 2), np.float32))
    code = main(["matmul", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-o",
                 str(tmp_path / "o.npy")])
    assert code == 1
    assert "astype" in capsys.readouterr().err
