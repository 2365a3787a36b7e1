"""Per-device static tables: shape class -> schedule, shipped as JSON in `clgemm/data/tables`.

A table names the device it was tuned on: its name, and the OpenCL implementation (platform),
vendor and device type. A device gets the table of its name (and platform, where the table
records one); without one, the closest table (`closest_table`: same implementation and type,
else same vendor and type, else same type, as CLBlast's database falls back by vendor and
type), else a built-in default by device type. Tables are data written by `clgemm tune`'s
distillation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..device import DeviceInfo
from ..errors import ScheduleError
from ..kernels.gemv import GemvSchedule
from ..kernels.tensorcore import MODES as TC_MODES
from ..kernels.tensorcore import TcSchedule
from ..schedule import Schedule

TABLE_SCHEMA = "clgemm.table/1"

# Size buckets per dimension (upper bounds, inclusive); the last bucket is open.
_BUCKETS = (16, 64, 256, 1024, 2560)

# Defaults for devices with no table: a moderate register tile that every OpenCL device we
# know of runs correctly, and that a GPU runs reasonably; the tuner does better.
DEFAULT_GPU = Schedule(wg_m=16, wg_n=16, out_m=8, out_n=8, tile_k=16, vec_a=4, vec_b=4,
                       vec_c=4, stage_a=1, stage_b=1, unroll_k=4, double_buffer=1,
                       strided=0, local_pad=4)
DEFAULT_CPU = Schedule(wg_m=8, wg_n=8, out_m=4, out_n=8, tile_k=16, vec_a=4, vec_b=4,
                       vec_c=4, stage_a=1, stage_b=1, unroll_k=4, double_buffer=0,
                       strided=0, local_pad=0)


def bucket(x: int) -> int:
    for i, bound in enumerate(_BUCKETS):
        if x <= bound:
            return i
    return len(_BUCKETS)


def shape_class(m: int, n: int, k: int) -> str:
    """Coarse class of a product's shape, e.g. 'm4n4k4' for 2048^3."""
    return f"m{bucket(m)}n{bucket(n)}k{bucket(k)}"


def _class_coords(name: str) -> tuple[int, int, int]:
    m, rest = name[1:].split("n")
    n, k = rest.split("k")
    return int(m), int(n), int(k)


@dataclass(frozen=True)
class TcChoice:
    """A tensor-core schedule and how many of its work-groups one compute unit holds at once
    (from its measured registers and local memory): what a wave of the device is."""

    schedule: TcSchedule
    groups_per_cu: int = 1


def wave_efficiency(tiles: int, slots: int) -> float:
    """Share of the last wave's slots that hold work (1.0 when the tiles fill whole waves).
    Under one wave the device is not full whatever the tile, so that counts as 1.0."""
    if tiles <= slots or slots <= 0:
        return 1.0
    waves = -(-tiles // slots)
    return tiles / (waves * slots)


@dataclass(frozen=True)
class TcRows:
    """3xTF32 for products of few rows against a large operand (decode's 16-32 token rows
    against a weight): `schedule` (tiles of 16 rows, the mma's own height) over K slices,
    where min_rows <= m <= max_rows, op(A) is stored row-major (rows along K) and n k is at
    least min_weights; the small-rows lane below that. Distilled from a plan campaign's
    `tc_rows` part by benchmarks/plan/tc_rows.py, its `evidence` naming the campaign."""

    schedule: TcSchedule
    min_rows: int
    max_rows: int
    min_weights: int
    evidence: dict = field(default_factory=dict, compare=False, hash=False)

    def serves(self, m: int, n: int, k: int, trans_a: bool) -> bool:
        return (not trans_a and self.min_rows <= m <= self.max_rows
                and n * k >= self.min_weights)

    def to_json(self) -> dict:
        return {"schedule": self.schedule.key(), "min_rows": self.min_rows,
                "max_rows": self.max_rows, "min_weights": self.min_weights,
                "evidence": self.evidence}

    @classmethod
    def from_json(cls, data: dict, source: str) -> "TcRows":
        try:
            out = cls(TcSchedule.from_key(data["schedule"]), int(data["min_rows"]),
                      int(data["max_rows"]), int(data["min_weights"]),
                      dict(data.get("evidence", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ScheduleError(f"{source}: tensorcore.rows needs schedule, min_rows, max_rows "
                                f"and min_weights ({exc})") from exc
        if not 1 <= out.min_rows <= out.max_rows:
            raise ScheduleError(f"{source}: tensorcore.rows needs 1 <= min_rows <= max_rows")
        return out


@dataclass
class TcLane:
    """The tensor-core kernels a device table ships: per mode and shape class, candidates in
    order of measured speed at full waves; a shape gets the first unless its tiles leave a
    mostly empty last wave that another candidate fills better (3072 on 132 SMs with
    128 x 128 tiles runs 2.18 waves; 96 x 128 tiles run 2.91).

    `exact` names the mode that serves the exact contract (rel_tol=None), "3xtf32" or None;
    it is set only when `clgemm gate` promoted the lane on this device, and `evidence` keeps
    that decision (artifact and criteria)."""

    modes: dict[str, dict[str, list[TcChoice]]]
    defaults: dict[str, TcSchedule]
    exact: str | None = None
    evidence: dict = field(default_factory=dict)
    # Below this many flops (2 m n k) the exact contract stays on the float32 family: the
    # lane's per-call check of its non-finite flag (a synchronous read) costs more than its
    # faster kernel saves on small products.
    min_flops: float = 0.0
    # Which 3xTF32 kernel serves the exact contract: "mma.sync" (kernels/tensorcore.py), or
    # "wgmma" (kernels/wgmma.py, sm_90 only) where `clgemm gate` promoted it over mma.sync on
    # this device.
    exact_kernel: str = "mma.sync"
    # 3xTF32 for decode's few-row products (TcRows), where the device's campaign found it
    rows: TcRows | None = None

    MIN_WAVE_EFFICIENCY = 0.85

    def lookup(self, mode: str, m: int, n: int, k: int,
               compute_units: int = 1) -> TcSchedule | None:
        entries = self.modes.get(mode, {})
        if not entries:
            return self.defaults.get(mode)
        choices = _nearest(entries, m, n, k)

        def eff(c: TcChoice) -> float:
            s = c.schedule
            tiles = -(-m // s.block_m) * -(-n // s.block_n)
            return wave_efficiency(tiles, compute_units * c.groups_per_cu)

        first = choices[0]
        if eff(first) >= self.MIN_WAVE_EFFICIENCY:
            return first.schedule
        return max(choices, key=lambda c: (eff(c), -choices.index(c))).schedule

    def to_json(self) -> dict:
        out = {}
        for mode in sorted(set(self.modes) | set(self.defaults)):
            out[mode] = {
                "default": self.defaults[mode].key() if mode in self.defaults else None,
                "entries": {c: [{"schedule": x.schedule.key(), "groups_per_cu": x.groups_per_cu}
                                for x in lst] for c, lst in sorted(self.modes.get(mode, {}).items())},
            }
        data = {"exact": self.exact, "exact_kernel": self.exact_kernel,
                "min_flops": self.min_flops, "evidence": self.evidence, "modes": out}
        if self.rows is not None:
            data["rows"] = self.rows.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict, source: str) -> "TcLane":
        modes, defaults = {}, {}
        for mode, spec in data.get("modes", {}).items():
            if mode not in TC_MODES:
                raise ScheduleError(f"{source}: unknown tensor-core mode {mode!r}")
            modes[mode] = {
                c: [TcChoice(TcSchedule.from_key(x["schedule"]), int(x.get("groups_per_cu", 1)))
                    for x in lst]
                for c, lst in spec.get("entries", {}).items() if lst}
            if spec.get("default"):
                defaults[mode] = TcSchedule.from_key(spec["default"])
        exact = data.get("exact")
        if exact not in (None, "3xtf32"):
            raise ScheduleError(f"{source}: only 3xtf32 may serve the exact contract, not {exact!r}")
        kernel = data.get("exact_kernel", "mma.sync")
        if kernel not in ("mma.sync", "wgmma"):
            raise ScheduleError(f"{source}: exact_kernel is mma.sync or wgmma, not {kernel!r}")
        rows = TcRows.from_json(data["rows"], source) if data.get("rows") else None
        return cls(modes, defaults, exact, data.get("evidence", {}),
                   float(data.get("min_flops", 0.0)), kernel, rows)


def tuned_gflops(table: "Table") -> float:
    """The best GFLOPS the table's distillation confirmed on its device (0.0 without
    evidence): how fast the device runs once tuned, comparable across devices of one host."""
    rates = [p.get("gflops") for p in table.evidence.get("problems", [])
             if isinstance(p, dict)]
    return max((float(r) for r in rates if isinstance(r, (int, float))), default=0.0)


def _nearest(entries: dict, m: int, n: int, k: int):
    """The entry of a shape's class, else of the nearest class."""
    cls = shape_class(m, n, k)
    if cls in entries:
        return entries[cls]
    want = _class_coords(cls)
    return entries[min(entries, key=lambda c: (math.dist(_class_coords(c), want), c))]


def canonical_vendor(vendor: str) -> str:
    """One word per hardware or driver vendor, whichever way a driver spells it: PoCL reports
    the CPU's (AuthenticAMD, GenuineIntel), Intel's runtime 'Intel(R) Corporation'."""
    v = vendor.lower()
    for word, needles in (("intel", ("intel",)), ("nvidia", ("nvidia",)),
                          ("amd", ("amd", "advanced micro devices")), ("mesa", ("mesa",)),
                          ("arm", ("arm",)), ("apple", ("apple",)),
                          ("qualcomm", ("qualcomm",))):
        if any(n in v for n in needles):
            return word
    return re.sub(r"[^a-z0-9]+", "-", v).strip("-")


@dataclass(frozen=True)
class TableDevice:
    """The device a table was tuned on, as far as the fallback needs it. Old tables name only
    the device; they match that name and serve no other device."""

    name: str
    platform: str = ""  # the OpenCL implementation, e.g. "Portable Computing Language"
    vendor: str = ""  # canonical_vendor() of the device's vendor string
    type: str = ""  # "CPU", "GPU", ...
    arch: str = ""  # the instruction set the kernels compile to where known, e.g. "sm_90"

    @classmethod
    def of(cls, device: DeviceInfo) -> "TableDevice":
        cc = device.capabilities.nv_compute_capability if device.capabilities else None
        arch = f"sm_{cc[0]}{cc[1]}" if cc else ""
        return cls(device.name, device.platform, canonical_vendor(device.vendor), device.type,
                   arch)

    def to_json(self) -> dict:
        out = {"name": self.name}
        out.update({k: v for k, v in (("platform", self.platform), ("vendor", self.vendor),
                                      ("type", self.type), ("arch", self.arch)) if v})
        return out

    @classmethod
    def from_json(cls, data: dict) -> "TableDevice":
        return cls(str(data["name"]), str(data.get("platform", "")),
                   str(data.get("vendor", "")), str(data.get("type", "")),
                   str(data.get("arch", "")))


@dataclass
class Table:
    device_name: str
    entries: dict[str, Schedule]
    default: Schedule
    source: str  # where it came from (file name, or "builtin default")
    evidence: dict = field(default_factory=dict)
    tensorcore: TcLane | None = None
    # The small-rows lane's launch shapes measured on this device (fields of GemvSchedule
    # over its default for the device type: benchmarks/plan campaign's gemv and gemv_axpy
    # sweeps); empty: the default
    gemv: dict = field(default_factory=dict)
    # Further validated schedules (near-best in distillation's replay, or other tables' on a
    # fallback): arms for the online selector and `clgemm replay`, never chosen statically.
    alternates: tuple[Schedule, ...] = ()
    device: TableDevice | None = None  # None: only device_name is known
    # How this table was matched to the device it serves: "exact", or the fallback level
    # ("implementation", "vendor", "type"); "builtin" for the default.
    match: str = "exact"

    def lookup(self, m: int, n: int, k: int) -> Schedule:
        """The schedule for a shape: its class's entry, else the nearest class's, else default."""
        if not self.entries:
            return self.default
        return _nearest(self.entries, m, n, k)

    def candidates(self) -> list[Schedule]:
        """Every validated schedule this table ships (the online selector's arms)."""
        seen = {self.default: None}
        for schedule in [*self.entries.values(), *self.alternates]:
            seen.setdefault(schedule, None)
        return list(seen)

    def to_json(self) -> dict:
        data = {
            "schema": TABLE_SCHEMA,
            "device": (self.device or TableDevice(self.device_name)).to_json(),
            "default": self.default.as_dict(),
            "entries": {c: s.as_dict() for c, s in sorted(self.entries.items())},
            "evidence": self.evidence,
        }
        if self.alternates:
            data["alternates"] = [s.as_dict() for s in self.alternates]
        if self.tensorcore is not None:
            data["tensorcore"] = self.tensorcore.to_json()
        if self.gemv:
            data["gemv"] = dict(self.gemv)
        return data

    def gemv_schedule(self, default: GemvSchedule) -> GemvSchedule:
        """The small-rows lane's schedule: `default` (the device type's) with this table's
        measured fields over it."""
        if not self.gemv:
            return default
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.gemv.items()}
        return dataclasses.replace(default, **fields)

    @classmethod
    def from_json(cls, data: dict, source: str) -> "Table":
        if data.get("schema") != TABLE_SCHEMA:
            raise ScheduleError(f"{source}: not a clgemm table (schema {data.get('schema')!r})")
        device = TableDevice.from_json(data["device"])
        return cls(
            device_name=device.name,
            entries={c: Schedule.from_dict(s) for c, s in data.get("entries", {}).items()},
            default=Schedule.from_dict(data["default"]),
            source=source,
            evidence=data.get("evidence", {}),
            tensorcore=(TcLane.from_json(data["tensorcore"], source)
                        if data.get("tensorcore") else None),
            alternates=tuple(Schedule.from_dict(s) for s in data.get("alternates", [])),
            device=device,
            gemv=_gemv_fields(data.get("gemv", {}), source),
        )


def _gemv_fields(data: dict, source: str) -> dict:
    """A table's small-rows lane fields, each a field of GemvSchedule (a misspelt one would
    otherwise be dropped silently, or fail on first use)."""
    known = {f.name for f in dataclasses.fields(GemvSchedule)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScheduleError(f"{source}: the gemv entry names no field {unknown} of the "
                            f"small-rows lane's schedule (fields: {', '.join(sorted(known))})")
    return dict(data)


def _shipped_tables() -> list[tuple[str, dict]]:
    """Every readable table in the tables folder. A file that is not a JSON object (torn by
    a crash, edited by hand) is skipped with a warning naming it: one bad table must not
    break the products of every other device."""
    out = []
    folder = resources.files("clgemm") / "data" / "tables"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".json"):
            continue
        try:
            data = json.loads(item.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
        except (OSError, ValueError) as exc:
            _skip(item.name, exc)
            continue
        out.append((item.name, data))
    return out


def _skip(name: str, exc: Exception) -> None:
    warnings.warn(f"clgemm: table {name} skipped: it cannot be read ({str(exc)[:160]}); "
                  "rewrite it with `clgemm distill` or delete it", RuntimeWarning, stacklevel=3)


def shipped_devices() -> list[str]:
    """Names of the devices the shipped tables are for."""
    return [d["device"]["name"] for _, d in _shipped_tables()
            if isinstance(d.get("device"), dict) and "name" in d["device"]]


def default_table(device: DeviceInfo) -> Table:
    return _builtin_default(device.name, device.type)


def _builtin_default(device_name: str, device_type: str) -> Table:
    schedule = DEFAULT_GPU if device_type == "GPU" else DEFAULT_CPU
    return Table(device_name, {}, schedule, "builtin default", match="builtin")


def load_table(device: DeviceInfo, path: str | Path | None = None) -> Table:
    """The table for a device: an explicit file, else the shipped one of its name, else the
    closest shipped one (see `closest_table`), else the built-in default of its type."""
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not an object")
            return Table.from_json(data, str(path))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ScheduleError):
                raise
            raise ScheduleError(f"{path} is not a readable clgemm table ({str(exc)[:160]}); "
                                "pass a table written by `clgemm distill`") from exc
    return _shipped_table(TableDevice.of(device))


# Fallback levels, closest first: the same implementation compiles the kernels the same way
# on other hardware; the same vendor's devices of a type share their architecture's shape.
FALLBACK_LEVELS = ("implementation", "vendor", "type")


def _level_matches(level: str, table: TableDevice, want: TableDevice) -> bool:
    if not table.type or table.type != want.type:
        return False
    if level == "implementation":
        return bool(table.platform) and table.platform == want.platform
    if level == "vendor":
        return bool(table.vendor) and table.vendor == want.vendor
    return True


def closest_table(want: TableDevice, tables: list[Table]) -> Table | None:
    """The table tuned on this device (its name, and its platform where the table names one),
    else the first table (by file name) of the closest fallback level, carrying as alternates
    the schedules of the other tables of the level and of the type, and the built-in defaults:
    a fallback must offer the online selector and `clgemm replay` several arms. A fallback
    carries the tensor-core lane only from a table of the same implementation and the same
    architecture (`arch`, e.g. sm_90: the same tensor-core instructions, compiled by the same
    driver); elsewhere that lane waits for `clgemm gate` on the device itself. The device's
    own capability probe still decides whether the lane runs."""
    for t in tables:
        d = t.device or TableDevice(t.device_name)
        if d.name == want.name and (not d.platform or d.platform == want.platform):
            return t
    for level in FALLBACK_LEVELS:
        near = [t for t in tables if t.device and _level_matches(level, t.device, want)]
        if not near:
            continue
        if level == "implementation" and want.arch:  # a table of the same architecture first
            near.sort(key=lambda t: t.device.arch != want.arch)
        first = near[0]
        # The level's tables first, then every table of the type, then the built-in defaults
        # (the type's first): even a lone table whose schedule is the default gives two arms.
        wider = [t for t in tables if t.device and t.device.type == want.type]
        builtins = [DEFAULT_GPU, DEFAULT_CPU] if want.type == "GPU" else [DEFAULT_CPU, DEFAULT_GPU]
        pool = [s for t in near + wider for s in t.candidates()] + builtins
        own = set(first.candidates())
        alternates = tuple(dict.fromkeys(s for s in pool if s not in own))
        # Why the lane may travel: the H200 met the H100's table without it (both sm_90
        # through NVIDIA's OpenCL; records/nvidia-h200/2026-12-07-plan-traces): 3xTF32 ran
        # 1.24-1.47x the float32 family from 1400 to 2048 there, while the traces' prefill
        # products took 1.5-1.65x torch's time on the float32 family alone.
        same_arch = (level == "implementation" and bool(want.arch)
                     and first.device.arch == want.arch)
        words = _LEVEL_WORDS[level] + (f", architecture {want.arch}" if same_arch else "")
        return dataclasses.replace(
            first, source=f"{first.source} (fallback: same {words})",
            tensorcore=first.tensorcore if same_arch else None,
            gemv=first.gemv if same_arch else {},
            alternates=first.alternates + alternates, match=level)
    return None


_LEVEL_WORDS = {"implementation": "implementation and device type",
                "vendor": "vendor and device type", "type": "device type"}


@functools.lru_cache(maxsize=None)
def _shipped_table(want: TableDevice) -> Table:
    """Shipped tables are read once per process (matmul looks one up on every call)."""
    tables = []
    for name, data in _shipped_tables():
        try:
            tables.append(Table.from_json(data, name))
        except (ScheduleError, KeyError, TypeError, ValueError, AttributeError) as exc:
            _skip(name, exc)  # a damaged table: the others still serve
    return closest_table(want, tables) or _builtin_default(want.name, want.type)
