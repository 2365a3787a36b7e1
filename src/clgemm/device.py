"""OpenCL devices: discovery, a stable fingerprint, and what each can do."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field

from .errors import NoDeviceError

_INSTALL_HINT = (
    "install an OpenCL driver: on a machine without a GPU, "
    "`pip install pocl-binary-distribution` gives a CPU device"
)


@dataclass(frozen=True)
class Capabilities:
    local_mem_bytes: int
    subgroups: bool
    fp16: bool
    fp64: bool
    # NVIDIA only: (major, minor) compute capability, and whether inline PTX compiled there.
    nv_compute_capability: tuple[int, int] | None = None
    inline_ptx: bool | None = None


@dataclass(frozen=True)
class DeviceInfo:
    index: int  # position in clgemm.devices(); not stable across machines, the fingerprint is
    platform: str
    platform_version: str
    name: str
    vendor: str
    version: str
    driver_version: str
    type: str  # "GPU", "CPU", "ACCELERATOR" or "OTHER"
    compute_units: int
    clock_mhz: int
    global_mem_bytes: int
    max_alloc_bytes: int
    local_mem_bytes: int
    max_work_group_size: int
    extensions: tuple[str, ...] = field(repr=False)
    capabilities: Capabilities = field(repr=False)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of what decides kernel behaviour: the same device and driver give the same one.

        Global memory size is left out: PoCL reports the host's free memory there, which moves
        between processes, and it changes no kernel's behaviour."""
        parts = [
            self.platform, self.platform_version, self.name, self.vendor, self.version,
            self.driver_version, str(self.compute_units), str(self.local_mem_bytes),
            str(self.max_work_group_size), " ".join(self.extensions),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    @property
    def slug(self) -> str:
        """File-name-friendly device name (tables, benchmark folders)."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    @property
    def is_nvidia(self) -> bool:
        return "nvidia" in self.platform.lower() or "nvidia" in self.vendor.lower()

    def summary(self) -> dict:
        return {
            "index": self.index, "platform": self.platform, "name": self.name,
            "vendor": self.vendor, "driver_version": self.driver_version, "type": self.type,
            "version": self.version, "compute_units": self.compute_units,
            "clock_mhz": self.clock_mhz, "global_mem_bytes": self.global_mem_bytes,
            "max_alloc_bytes": self.max_alloc_bytes, "local_mem_bytes": self.local_mem_bytes,
            "max_work_group_size": self.max_work_group_size, "fingerprint": self.fingerprint,
            "capabilities": {
                "local_mem_bytes": self.capabilities.local_mem_bytes,
                "subgroups": self.capabilities.subgroups, "fp16": self.capabilities.fp16,
                "fp64": self.capabilities.fp64,
                "nv_compute_capability": self.capabilities.nv_compute_capability,
                "inline_ptx": self.capabilities.inline_ptx,
            },
        }


def _cl():
    try:
        import pyopencl as cl
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise NoDeviceError(f"pyopencl is not importable ({exc}); `pip install pyopencl`") from exc
    return cl


def _type_name(cl, device_type: int) -> str:
    for name in ("GPU", "CPU", "ACCELERATOR"):
        if device_type & getattr(cl.device_type, name):
            return name
    return "OTHER"


def _describe(cl, index: int, platform, dev) -> DeviceInfo:
    extensions = tuple(sorted(dev.extensions.split()))
    cc = None
    if "cl_nv_device_attribute_query" in extensions:
        try:
            cc = (int(dev.compute_capability_major_nv), int(dev.compute_capability_minor_nv))
        except cl.Error:
            cc = None
    subgroups = "cl_khr_subgroups" in extensions or "cl_intel_subgroups" in extensions
    if not subgroups:
        try:
            subgroups = int(dev.max_num_sub_groups) > 0
        except (cl.Error, AttributeError):
            subgroups = False
    caps = Capabilities(
        local_mem_bytes=int(dev.local_mem_size),
        subgroups=bool(subgroups),
        fp16="cl_khr_fp16" in extensions,
        fp64="cl_khr_fp64" in extensions,
        nv_compute_capability=cc,
        inline_ptx=None,  # probed lazily: it costs a compile (see runtime.probe_inline_ptx)
    )
    return DeviceInfo(
        index=index,
        platform=platform.name.strip(),
        platform_version=platform.version.strip(),
        name=dev.name.strip(),
        vendor=dev.vendor.strip(),
        version=dev.version.strip(),
        driver_version=dev.driver_version.strip(),
        type=_type_name(cl, dev.type),
        compute_units=int(dev.max_compute_units),
        clock_mhz=int(dev.max_clock_frequency),
        global_mem_bytes=int(dev.global_mem_size),
        max_alloc_bytes=int(dev.max_mem_alloc_size),
        local_mem_bytes=int(dev.local_mem_size),
        max_work_group_size=int(dev.max_work_group_size),
        extensions=extensions,
        capabilities=caps,
    )


@functools.lru_cache(maxsize=1)
def _discover() -> tuple[tuple[DeviceInfo, object], ...]:
    from .icd import register

    register()  # runtimes pip installed (the [intel] extra), before the loader reads its folder
    cl = _cl()
    try:
        platforms = cl.get_platforms()
    except cl.Error:
        platforms = []
    found = []
    for platform in platforms:
        try:
            devs = platform.get_devices()
        except cl.Error:
            continue
        for dev in devs:
            found.append((_describe(cl, len(found), platform, dev), dev))
    return tuple(found)


def devices() -> list[DeviceInfo]:
    """Every OpenCL device on this machine, in a stable order."""
    return [info for info, _ in _discover()]


def cl_device(info: DeviceInfo):
    """The pyopencl device object behind a DeviceInfo."""
    for known, dev in _discover():
        if known.fingerprint == info.fingerprint and known.index == info.index:
            return dev
    raise NoDeviceError(f"device {info.name!r} is no longer present; call clgemm.devices() again")


def get_device(spec: "DeviceInfo | int | str | None" = None) -> DeviceInfo:
    """Resolve a device: None (CLGEMM_DEVICE, else the first GPU, else the first device),
    an index into devices(), a fingerprint, or a case-insensitive substring of
    "platform: name"."""
    found = devices()
    if not found:
        raise NoDeviceError(f"no OpenCL device found; {_INSTALL_HINT}")
    if isinstance(spec, DeviceInfo):
        return spec
    if spec is None:
        spec = os.environ.get("CLGEMM_DEVICE") or None
    if spec is None:
        return _default_device(found)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        if not 0 <= index < len(found):
            raise NoDeviceError(
                f"device index {index} out of range: {len(found)} device(s); "
                "see `clgemm devices`"
            )
        return found[index]
    needle = str(spec).lower()
    for d in found:
        if d.fingerprint == needle:
            return d
    matches = [d for d in found if needle in f"{d.platform}: {d.name}".lower()]
    if not matches:
        names = "; ".join(f"[{d.index}] {d.platform}: {d.name}" for d in found)
        raise NoDeviceError(f"no device matches {spec!r}; available: {names}")
    return matches[0]


_PROBE_SOURCE = "__kernel void clgemm_probe(__global float* x) { x[0] = 1.0f; }"


@functools.lru_cache(maxsize=None)
def compile_blocker(info: DeviceInfo) -> str | None:
    """Why this device's OpenCL compiler cannot build a trivial kernel (None: it can); asked
    once per device and process. (PoCL's LLVM refuses host CPUs it does not know: every
    kernel then fails with 'unknown target CPU'.)"""
    cl = _cl()
    try:
        dev = cl_device(info)
        cl.Program(cl.Context([dev]), _PROBE_SOURCE).build()
    except cl.Error as exc:
        return _build_failure(str(exc))
    return None


def _build_failure(text: str) -> str:
    """One line saying why a build failed: the compiler's last error line, else the build
    log's last line that is not pyopencl's framing (an invalid option says so there)."""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    errors = [x for x in lines if "error" in x.lower()]
    framing = ("clBuildProgram failed", "Build on", "(options:")
    said = [x for x in lines if not x.startswith(framing)]
    why = errors[-1] if errors else said[-1] if said else (lines[0] if lines else "no message")
    return " ".join(why.split())[:200]


def _default_device(found: list[DeviceInfo]) -> DeviceInfo:
    """The first GPU, else the other device whose own shipped table measured most GFLOPS (then
    discovery order), whose compiler builds a kernel; a device passed over is named on stderr
    once, with the reason (a first run must not end in a compile error when another device
    works). (On one CPU, Rusticl's llvmpipe ran 10-80x slower than PoCL and Intel's runtime,
    records/*/2026-12-06-pipeline; the ICD loader may list it first.)"""
    ordered = ([d for d in found if d.type == "GPU"]
               + sorted((d for d in found if d.type != "GPU"), key=lambda d: -_tuned_gflops(d)))
    skipped = []
    for d in ordered:
        why = compile_blocker(d)
        if why is None:
            if skipped:
                _notice_once(f"clgemm: using {d.platform}: {d.name}; passed over "
                             + "; ".join(skipped) + " (CLGEMM_DEVICE chooses a device)")
            return d
        skipped.append(f"{d.platform}: {d.name} (its compiler fails: {why})")
    raise NoDeviceError("no OpenCL device here compiles a kernel: " + "; ".join(skipped)
                        + f". {_INSTALL_HINT}")


def _tuned_gflops(info: DeviceInfo) -> float:
    """What the device's shipped table measured, where the table is its own or its
    implementation's on another device of the type (PoCL's table came from an EPYC host: on a
    Xeon the exact match alone left PoCL at 0 and put Rusticl's llvmpipe, with a table of its
    own, first); 0 for a vendor-level, type-level or built-in table."""
    from .select.table import load_table, tuned_gflops

    table = load_table(info)
    return tuned_gflops(table) if table.match in ("exact", "implementation") else 0.0


@functools.lru_cache(maxsize=None)
def _notice_once(text: str) -> None:
    import sys

    print(text, file=sys.stderr)
