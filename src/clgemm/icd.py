"""OpenCL runtimes that pip installed, made visible to the ICD loader without apt or root.

`pip install 'clgemm[intel]'` puts Intel's CPU runtime (libintelocl.so and the libraries it
loads from its own folder) under `<prefix>/lib`, and an .icd file under
`<prefix>/etc/OpenCL/vendors` that names the build machine's path, not this one's. The loader
reads only /etc/OpenCL/vendors (or the folder OCL_ICD_VENDORS names; pyopencl's own loader
also reads its package folder, where PoCL's wheel registers). So before the first platform
query clgemm points OCL_ICD_VENDORS at a folder of its own holding the system's .icd files
and one for each runtime found under the prefix. A user's OCL_ICD_VENDORS or
OPENCL_VENDOR_PATH is left alone.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from .atomic import write_text

# Libraries of OpenCL runtimes published on PyPI, as pip lays them out under the prefix.
PIP_RUNTIMES = ("libintelocl.so",)  # intel-opencl-rt (with intel-cmplr-lib-rt, tbb)
SYSTEM_VENDORS = Path("/etc/OpenCL/vendors")
_OWN_PREFIX = "clgemm-pip-"  # the .icd files this module writes


def pip_runtimes(prefix: str | Path = sys.prefix) -> list[Path]:
    """The runtime libraries pip installed under `prefix` (the running environment's)."""
    return [p for p in (Path(prefix) / "lib" / name for name in PIP_RUNTIMES) if p.is_file()]


def _vendors_folder(prefix: Path) -> Path:
    from .runtime import cache_dir

    digest = hashlib.sha256(str(prefix.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / f"icd-vendors-{digest}"  # one per environment


def register(prefix: str | Path = sys.prefix, system: Path = SYSTEM_VENDORS,
             env: MutableMapping[str, str] = os.environ, folder: Path | None = None
             ) -> Path | None:
    """Point the ICD loader (through `env`) at a vendors folder holding `system`'s .icd files
    and one for each runtime pip installed under `prefix`; returns that folder, or None when
    there is nothing to add or the user chose the loader's folder. Call it before the first
    OpenCL call of the process: the loader reads its folder once."""
    if env.get("OCL_ICD_VENDORS") or env.get("OPENCL_VENDOR_PATH"):
        return None
    wanted = {}  # file name -> text: the system's .icd files as they are
    for icd in sorted(system.glob("*.icd")) if system.is_dir() else []:
        try:
            wanted[icd.name] = icd.read_text()
        except OSError:
            continue
    listed = {text.strip() for text in wanted.values()}
    libs = [lib for lib in pip_runtimes(prefix) if str(lib) not in listed]  # else registered
    if not libs:
        return None
    folder = folder or _vendors_folder(Path(prefix))
    for lib in libs:
        wanted[f"{_OWN_PREFIX}{lib.name.split('.')[0]}.icd"] = f"{lib}\n"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.icd"):  # a system runtime removed since, a runtime uninstalled
        if stale.name not in wanted:
            stale.unlink(missing_ok=True)
    for name, text in wanted.items():
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            write_text(path, text)
    env["OCL_ICD_VENDORS"] = str(folder)
    return folder
