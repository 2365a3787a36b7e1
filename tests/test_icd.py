"""Runtimes pip installed (the [intel] extra) registered with the ICD loader: the vendors
folder clgemm writes, what it leaves alone, and, where Intel's runtime is installed under a
prefix (as .ci/run does), the loader finding it through that folder alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clgemm.icd import register

import clgemm

SRC = Path(clgemm.__file__).resolve().parent.parent
INTEL_PREFIX = Path(os.environ.get("INTEL_OCL", "/tmp/clgemm-intel-ocl"))


@pytest.fixture
def layout(tmp_path):
    """A prefix where pip put Intel's runtime, and a system vendors folder with two runtimes."""
    prefix, system = tmp_path / "venv", tmp_path / "etc-vendors"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "libintelocl.so").write_bytes(b"\x7fELF")
    system.mkdir()
    (system / "rusticl.icd").write_text("libRusticlOpenCL.so.1\n")
    (system / "mesa.icd").write_text("libMesaOpenCL.so.1\n")
    return prefix, system, tmp_path / "vendors"


def test_the_folder_holds_the_system_runtimes_and_the_pip_one(layout):
    prefix, system, folder = layout
    env = {}
    assert register(prefix, system, env, folder) == folder
    assert env == {"OCL_ICD_VENDORS": str(folder)}
    files = {p.name: p.read_text() for p in folder.iterdir()}
    assert files == {"rusticl.icd": "libRusticlOpenCL.so.1\n", "mesa.icd": "libMesaOpenCL.so.1\n",
                     "clgemm-pip-libintelocl.icd": f"{prefix / 'lib' / 'libintelocl.so'}\n"}


def test_a_users_vendors_folder_or_nothing_to_add_leaves_the_loader_alone(layout):
    prefix, system, folder = layout
    for env in ({"OCL_ICD_VENDORS": "/mine"}, {"OPENCL_VENDOR_PATH": "/mine"}):
        before = dict(env)
        assert register(prefix, system, env, folder) is None and env == before
    assert register(prefix.parent / "no-such-venv", system, {}, folder) is None
    (system / "intel.icd").write_text(f"{prefix / 'lib' / 'libintelocl.so'}\n")
    assert register(prefix, system, {}, folder) is None  # the system registers it already
    assert not folder.exists()


def test_a_runtime_gone_from_the_system_leaves_the_folder(layout):
    prefix, system, folder = layout
    register(prefix, system, {}, folder)
    (system / "mesa.icd").unlink()
    register(prefix, system, {}, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["clgemm-pip-libintelocl.icd",
                                                        "rusticl.icd"]


@pytest.mark.skipif(not (INTEL_PREFIX / "lib" / "libintelocl.so").is_file(),
                    reason="Intel's runtime is not installed under $INTEL_OCL (.ci/run installs it)")
def test_the_loader_finds_intels_runtime_through_the_folder(tmp_path):
    """A fresh process with no loader settings and no LD_LIBRARY_PATH: clgemm's registration
    alone makes Intel's platform appear (its libraries load from their own folder)."""
    code = ("import sys; from pathlib import Path; from clgemm.icd import register; "
            f"register(Path({str(INTEL_PREFIX)!r}), folder=Path({str(tmp_path / 'v')!r})); "
            "import pyopencl as cl; print('|'.join(p.name for p in cl.get_platforms()))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OCL_ICD_VENDORS", "OPENCL_VENDOR_PATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(SRC)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Intel(R) OpenCL" in out.stdout.split("|")
