"""Per-device static tables: shape class -> schedule, shipped as JSON in `clgemm/data/tables`.

A table is matched to a device by its name (and optionally platform); devices with no table
get a default chosen by device type. Tables are data written by `clgemm tune`'s distillation.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..device import DeviceInfo
from ..errors import ScheduleError
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


@dataclass
class Table:
    device_name: str
    entries: dict[str, Schedule]
    default: Schedule
    source: str  # where it came from (file name, or "builtin default")
    evidence: dict = field(default_factory=dict)

    def lookup(self, m: int, n: int, k: int) -> Schedule:
        """The schedule for a shape: its class's entry, else the nearest class's, else default."""
        if not self.entries:
            return self.default
        cls = shape_class(m, n, k)
        if cls in self.entries:
            return self.entries[cls]
        want = _class_coords(cls)
        nearest = min(
            self.entries,
            key=lambda c: (math.dist(_class_coords(c), want), c),
        )
        return self.entries[nearest]

    def candidates(self) -> list[Schedule]:
        """Every validated schedule this table ships (the online selector's arms)."""
        seen = {self.default: None}
        for schedule in self.entries.values():
            seen.setdefault(schedule, None)
        return list(seen)

    def to_json(self) -> dict:
        return {
            "schema": TABLE_SCHEMA,
            "device": {"name": self.device_name},
            "default": self.default.as_dict(),
            "entries": {c: s.as_dict() for c, s in sorted(self.entries.items())},
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict, source: str) -> "Table":
        if data.get("schema") != TABLE_SCHEMA:
            raise ScheduleError(f"{source}: not a clgemm table (schema {data.get('schema')!r})")
        return cls(
            device_name=data["device"]["name"],
            entries={c: Schedule.from_dict(s) for c, s in data.get("entries", {}).items()},
            default=Schedule.from_dict(data["default"]),
            source=source,
            evidence=data.get("evidence", {}),
        )


def _shipped_tables() -> list[tuple[str, dict]]:
    out = []
    folder = resources.files("clgemm") / "data" / "tables"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            out.append((item.name, json.loads(item.read_text())))
    return out


def default_table(device: DeviceInfo) -> Table:
    return _builtin_default(device.name, device.type)


def _builtin_default(device_name: str, device_type: str) -> Table:
    schedule = DEFAULT_GPU if device_type == "GPU" else DEFAULT_CPU
    return Table(device_name, {}, schedule, "builtin default")


def load_table(device: DeviceInfo, path: str | Path | None = None) -> Table:
    """The table for a device: an explicit file, else a shipped one matching its name."""
    if path is not None:
        return Table.from_json(json.loads(Path(path).read_text()), str(path))
    return _shipped_table(device.name, device.type)


@functools.lru_cache(maxsize=None)
def _shipped_table(device_name: str, device_type: str) -> Table:
    """Shipped tables are read once per process (matmul looks one up on every call)."""
    for name, data in _shipped_tables():
        if data.get("device", {}).get("name") == device_name:
            return Table.from_json(data, name)
    return _builtin_default(device_name, device_type)
