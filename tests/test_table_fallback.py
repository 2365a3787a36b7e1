"""The table lookup order on fake device descriptions (no OpenCL needed): exact name (and
platform), then the same implementation and type, the same vendor and type, the same type,
then the built-in default; a fallback always offers several arms, and a tensor-core lane only
from a table of the same implementation and architecture."""

from __future__ import annotations

import pytest

from clgemm.device import Capabilities, DeviceInfo
from clgemm.schedule import Schedule
from clgemm.select import table as table_mod
from clgemm.select.table import (
    DEFAULT_CPU,
    DEFAULT_GPU,
    Table,
    TableDevice,
    TcLane,
    canonical_vendor,
    load_table,
)

POCL, INTEL, RUSTICL, NV = ("Portable Computing Language", "Intel(R) OpenCL", "rusticl",
                            "NVIDIA CUDA")


def fake_device(name: str, platform: str, vendor: str, type_: str = "CPU",
                cc: tuple[int, int] | None = None) -> DeviceInfo:
    return DeviceInfo(index=0, platform=platform, platform_version="OpenCL 3.0", name=name,
                      vendor=vendor, version="OpenCL 3.0", driver_version="1", type=type_,
                      compute_units=2, clock_mhz=1000, global_mem_bytes=1 << 30,
                      max_alloc_bytes=1 << 28, local_mem_bytes=1 << 15,
                      max_work_group_size=256, extensions=(),
                      capabilities=Capabilities(1 << 15, False, False, False, cc))


def sched(i: int) -> Schedule:
    return Schedule(wg_m=4, wg_n=8, out_m=2 + i, out_n=8, direct=1)


def table_json(name, platform, vendor, type_, default, alternates=(), tensorcore=False,
               arch=""):
    t = Table(name, {"m3n3k3": default}, default, "x", alternates=tuple(alternates),
              device=TableDevice(name, platform, vendor, type_, arch))
    if tensorcore:
        t.tensorcore = TcLane({}, {})
    return t.to_json()


SHIPPED = [
    ("a-intel-cpu.json", table_json("AMD EPYC", INTEL, "intel", "CPU", sched(1), [sched(2)])),
    ("b-pocl-cpu.json", table_json("pthread-AMD EPYC", POCL, "amd", "CPU", sched(3))),
    ("c-rusticl.json", table_json("llvmpipe (LLVM 15.0.6, 256 bits)", RUSTICL, "mesa", "CPU",
                                  sched(4))),
    ("d-h100.json", table_json("NVIDIA H100 80GB HBM3", NV, "nvidia", "GPU", DEFAULT_GPU,
                               tensorcore=True, arch="sm_90")),
    ("e-old.json", {"schema": "clgemm.table/1", "device": {"name": "Old Device"},
                    "default": sched(5).as_dict(), "entries": {}}),
]


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setattr(table_mod, "_shipped_tables", lambda: list(SHIPPED))
    table_mod._shipped_table.cache_clear()
    yield
    table_mod._shipped_table.cache_clear()


@pytest.mark.parametrize("device, source, match", [
    # exact: name and platform
    (fake_device("AMD EPYC", INTEL, "Intel(R) Corporation"), "a-intel-cpu.json", "exact"),
    (fake_device("pthread-AMD EPYC", POCL, "AuthenticAMD"), "b-pocl-cpu.json", "exact"),
    # an old table (name only) serves its name on any platform
    (fake_device("Old Device", "Whatever", "Acme"), "e-old.json", "exact"),
    # the same name on another implementation is not the same table: same vendor+type first
    (fake_device("AMD EPYC", POCL, "AuthenticAMD"), "b-pocl-cpu.json", "implementation"),
    # PoCL on another CPU: the PoCL table (same implementation and type)
    (fake_device("pthread-Intel Xeon", POCL, "GenuineIntel"), "b-pocl-cpu.json",
     "implementation"),
    # an unknown implementation on an Intel CPU: the Intel table (vendor + type)
    (fake_device("Xeon", "Other CL", "GenuineIntel"), "a-intel-cpu.json", "vendor"),
    # an unknown implementation on an AMD CPU: the PoCL table (vendor amd + CPU)
    (fake_device("Ryzen", "Other CL", "Advanced Micro Devices, Inc."), "b-pocl-cpu.json",
     "vendor"),
    # an unknown vendor's CPU: the first CPU table by file name (same type)
    (fake_device("Some RISC-V", "Other CL", "Acme"), "a-intel-cpu.json", "type"),
    # another NVIDIA GPU whose architecture is not known: the H100's table (same
    # implementation and type) but not its tensor-core lane
    (fake_device("NVIDIA H200", NV, "NVIDIA Corporation", "GPU"), "d-h100.json",
     "implementation"),
])
def test_lookup_order(shipped, device, source, match):
    t = load_table(device)
    assert t.source.split(" ")[0] == source, t.source
    assert t.match == match
    if match != "exact":
        assert "fallback" in t.source and t.tensorcore is None
        assert len(t.candidates()) >= 2  # never a single arm


def test_an_unknown_type_gets_the_builtin_default(shipped):
    t = load_table(fake_device("FPGA", "Other CL", "Acme", "ACCELERATOR"))
    assert t.match == "builtin" and t.source == "builtin default" and t.default == DEFAULT_CPU
    g = load_table(fake_device("Some GPU", "Other CL", "Acme", "GPU"))
    assert g.match == "type" and g.source.startswith("d-h100.json")


def test_a_fallback_offers_its_levels_schedules_and_the_builtin_default(shipped):
    t = load_table(fake_device("Some RISC-V", "Other CL", "Acme"))
    # the first CPU table's own schedules, then the other CPU tables', then the default
    assert t.default == sched(1)
    assert list(t.candidates()) == [sched(1), sched(2), sched(3), sched(4), DEFAULT_CPU,
                                    DEFAULT_GPU]
    assert t.lookup(1024, 1024, 1024) == sched(1)  # static choice: the closest table's


@pytest.mark.parametrize("platform, cc, keeps", [
    (NV, (9, 0), True),  # the H200: same driver, same sm_90 tensor-core instructions
    (NV, (8, 0), False),  # an A100: another architecture
    (NV, (10, 0), False),  # a newer one
    ("Other CL", (9, 0), False),  # same architecture, another implementation (vendor level)
])
def test_a_fallback_keeps_the_tensor_core_lane_only_on_the_same_architecture(
        shipped, platform, cc, keeps):
    t = load_table(fake_device("NVIDIA H200", platform, "NVIDIA Corporation", "GPU", cc))
    assert t.source.startswith("d-h100.json") and "fallback" in t.source
    assert (t.tensorcore is not None) is keeps
    assert ("architecture sm_90" in t.source) is keeps
    assert len(t.candidates()) >= 2


def test_a_table_of_the_same_architecture_is_preferred(monkeypatch):
    """Two tables of the implementation: the one compiled for the device's architecture
    serves, whatever the file order."""
    older = ("a-a100.json", table_json("NVIDIA A100", NV, "nvidia", "GPU", sched(6),
                                       tensorcore=True, arch="sm_80"))
    monkeypatch.setattr(table_mod, "_shipped_tables", lambda: [older] + SHIPPED)
    table_mod._shipped_table.cache_clear()
    try:
        t = load_table(fake_device("NVIDIA H200", NV, "NVIDIA Corporation", "GPU", (9, 0)))
        a = load_table(fake_device("NVIDIA A30", NV, "NVIDIA Corporation", "GPU", (8, 0)))
    finally:
        table_mod._shipped_table.cache_clear()
    assert t.source.startswith("d-h100.json") and t.tensorcore is not None
    assert a.source.startswith("a-a100.json") and a.tensorcore is not None


def test_a_table_names_its_architecture():
    dev = fake_device("NVIDIA H200", NV, "NVIDIA Corporation", "GPU", (9, 0))
    d = TableDevice.of(dev)
    assert d.arch == "sm_90" and TableDevice.from_json(d.to_json()) == d
    assert TableDevice.of(fake_device("cpu", POCL, "amd")).arch == ""
    assert "arch" not in TableDevice.of(fake_device("cpu", POCL, "amd")).to_json()


def test_the_exact_table_keeps_its_tensor_core_lane(shipped):
    t = load_table(fake_device("NVIDIA H100 80GB HBM3", NV, "NVIDIA Corporation", "GPU"))
    assert t.match == "exact" and t.tensorcore is not None


def test_without_shipped_tables_the_builtin_default(monkeypatch):
    monkeypatch.setattr(table_mod, "_shipped_tables", lambda: [])
    table_mod._shipped_table.cache_clear()
    try:
        t = load_table(fake_device("pthread-AMD EPYC", POCL, "AuthenticAMD"))
    finally:
        table_mod._shipped_table.cache_clear()
    assert t.source == "builtin default" and t.candidates() == [DEFAULT_CPU]


@pytest.mark.parametrize("vendor, word", [
    ("AuthenticAMD", "amd"), ("Advanced Micro Devices, Inc.", "amd"), ("GenuineIntel", "intel"),
    ("Intel(R) Corporation", "intel"), ("NVIDIA Corporation", "nvidia"), ("Mesa/X.org", "mesa"),
    ("Acme Chips Ltd.", "acme-chips-ltd"),
])
def test_canonical_vendor(vendor, word):
    assert canonical_vendor(vendor) == word


def test_every_shipped_table_names_its_implementation_vendor_and_type():
    """The fallback needs these three on every shipped table (a table naming only its device
    serves only that name)."""
    for name, data in table_mod._shipped_tables():
        d = data["device"]
        assert d.get("platform") and d.get("vendor") and d.get("type") in ("CPU", "GPU"), name
        assert d["vendor"] == canonical_vendor(d["vendor"]), name
