"""The environment fingerprint written into every artifact: device, driver, clocks, code
version, Python and library versions, host, date and the exact command line."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

_LIBRARIES = ("numpy", "pyopencl", "jsonschema", "matplotlib", "torch", "pocl-binary-distribution",
              "nvidia-ml-py", "pynvml")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> dict:
    """git commit, describe and dirty flag of the source tree this package runs from; for an
    installed (non-editable) package, of the checkout it is run from (`source: "cwd"`).
    CLGEMM_CODE_COMMIT names the commit of a copy whose git metadata is missing or stale (the
    lent GPU machine's copy of the tree: scripts/gpu-call.sh sets it from commit.txt); its
    dirty flag is then unknown."""
    stated = os.environ.get("CLGEMM_CODE_COMMIT", "").strip()
    if stated:
        return {"commit": stated, "describe": stated[:12], "dirty": None,
                "package_version": _own_version(), "source": "stated"}
    here = Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], here)
    source = "package"
    if commit is None:
        here, source = Path.cwd(), "cwd"
        commit = _git(["rev-parse", "HEAD"], here)
    if commit is None:
        return {"commit": None, "describe": None, "dirty": None, "package_version": _own_version()}
    status = _git(["status", "--porcelain", "--untracked-files=no"], here)
    return {
        "commit": commit,
        "describe": _git(["describe", "--always", "--dirty", "--tags"], here),
        "dirty": bool(status) if status is not None else None,
        "package_version": _own_version(),
        "source": source,
    }


def _own_version() -> str | None:
    try:
        from .. import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return None


def library_versions() -> dict:
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def nvidia_smi_clocks() -> dict | None:
    """Current and maximum clocks from nvidia-smi when present (device index 0)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    fields = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw"
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    values = [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]
    return dict(zip(fields.split(","), values))


def fingerprint(device=None, argv: list[str] | None = None) -> dict:
    """Everything an artifact needs to say where and how it was made."""
    if device is not None:
        dev = device.summary()
    else:
        dev = {"name": "none", "fingerprint": "none", "driver_version": "none"}
    clocks = {"device_max_mhz": dev.get("clock_mhz")}
    if device is not None and getattr(device, "is_nvidia", False):
        clocks["nvidia_smi"] = nvidia_smi_clocks()
    return {
        "device": dev,
        "clocks": clocks,
        "code": code_version(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "hostname": socket.gethostname(),
        "date_utc": utc_now(),
        "argv": list(argv if argv is not None else sys.argv),
    }
