"""A first run where PoCL cannot compile (simulated: POCL_EXTRA_BUILD_FLAGS names a CPU its
LLVM refuses, so every PoCL build fails, as on a host CPU PoCL's LLVM does not know) still
runs the README's main command to the end on another implementation, with a one-line notice
of the device it picked and why. The other implementation is Rusticl (mesa-opencl-icd, which
the README names), whose shipped table ranks it after PoCL, so PoCL is tried first; skipped
where Rusticl is not installed. benchmarks/impls/no_pocl.sh runs the full command in a fresh
venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import clgemm

PACKAGE_PARENT = Path(clgemm.__file__).resolve().parents[1]  # subprocesses import the clgemm tested
SYSTEM_ICD = Path("/etc/OpenCL/vendors")


def _vendors(tmp_path: Path) -> Path | None:
    """A vendors folder with the system's implementations (None: Rusticl is not among them).
    Intel's runtime is left out: its table may rank it before PoCL, which is then never
    tried (and no notice is due)."""
    icds = list(SYSTEM_ICD.glob("*.icd"))
    if not any("rusticl" in icd.read_text().lower() for icd in icds):
        return None
    folder = tmp_path / "vendors"
    folder.mkdir()
    for icd in icds:
        shutil.copyfile(icd, folder / icd.name)
    return folder


def _env(tmp_path: Path, vendors: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CLGEMM_DEVICE"}
    env.update(RUSTICL_ENABLE="llvmpipe", OCL_ICD_VENDORS=str(vendors),
               POCL_EXTRA_BUILD_FLAGS="-mcpu=nosuchcpu", POCL_KERNEL_CACHE="0",
               CLGEMM_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(PACKAGE_PARENT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def test_pocl_failing_to_compile_gives_another_device_and_one_notice(tmp_path):
    vendors = _vendors(tmp_path)
    if vendors is None:
        pytest.skip("Rusticl is not installed (apt install mesa-opencl-icd)")
    env = _env(tmp_path, vendors)
    probe = subprocess.run(
        [sys.executable, "-c", "from clgemm.device import devices, compile_blocker; "
         "print(sum(compile_blocker(d) is None for d in devices() "
         "if 'Portable' not in d.platform))"], env=env, capture_output=True, text=True)
    if probe.returncode or probe.stdout.strip() == "0":
        pytest.skip(f"no other implementation compiles here: {probe.stderr[-300:]}")
    # the simulation is real: PoCL itself refuses a trivial kernel under these settings
    refused = subprocess.run(
        [sys.executable, "-c", "from clgemm.device import devices, compile_blocker; "
         "print([compile_blocker(d) for d in devices() if 'Portable' in d.platform][0])"],
        env=env, capture_output=True, text=True)
    assert refused.returncode == 0 and refused.stdout.strip() not in ("", "None"), refused
    out = tmp_path / "kpi.json"
    # the README's main command, at a size for a test
    run = subprocess.run(
        [sys.executable, "-m", "clgemm.cli", "bench", "--suite", "none", "--shapes", "65x33x17",
         "--sessions", "1", "--sustained-seconds", "0", "--baselines", "numpy", "--repeats", "3",
         "--no-build-cost", "-o", str(out)],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    art = json.loads(out.read_text())
    dev = art["env"]["device"]
    assert art["complete"] and dev["platform"] == "rusticl", dev
    assert any(e["status"] == "ok" and e["method"] == "clgemm" for e in art["results"])
    notices = [line for line in run.stderr.splitlines() if line.startswith("clgemm: using")]
    assert len(notices) == 1, run.stderr[-2000:]
    assert notices[0].endswith("(CLGEMM_DEVICE chooses a device)"), notices  # one line
    assert dev["platform"] in notices[0] and "Portable Computing Language" in notices[0]
    assert "its compiler fails" in notices[0]


def test_a_cpu_without_a_table_of_its_own_ranks_by_its_implementations():
    """The default device's ranking takes a table of the same implementation measured on
    another CPU (PoCL's came from an EPYC host): on a Xeon the exact match alone left PoCL at
    0 GFLOPS, behind Rusticl's llvmpipe with a table of its own, 10-80x slower."""
    import dataclasses

    from clgemm import device as dev
    from clgemm.select import table as tables

    pocl = [d for d in clgemm.devices() if "Portable" in d.platform]
    if not pocl:
        pytest.skip("no PoCL device here")
    other_cpu = dataclasses.replace(pocl[0], name="pthread-Some Other CPU 9999")
    assert tables.load_table(other_cpu).match == "implementation"
    assert dev._tuned_gflops(other_cpu) > 0
