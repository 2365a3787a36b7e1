"""The one definition of a GEMM kernel's parameters (`Schedule`) and of which are valid (`SearchSpace`).

The validity rules are data (`CONSTRAINTS`, small integer expressions over the parameters and
the device limits) so that the Rust search engine evaluates exactly the rules written here,
and never keeps a second copy of them.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import operator
from dataclasses import dataclass, fields
from typing import Iterator, Mapping

from .errors import ScheduleError


@dataclass(frozen=True, order=True)
class Schedule:
    """Parameters of one generated kernel.

    A work-group computes a `tile_m x tile_n` block of C, stepping through K by `tile_k`.
    It has `wg_m x wg_n` work-items, each computing `out_m x out_n` outputs, so
    `tile_m = wg_m * out_m` and `tile_n = wg_n * out_n` by construction.
    """

    wg_m: int = 16  # work-items along M
    wg_n: int = 16  # work-items along N
    out_m: int = 4  # outputs per work-item along M
    out_n: int = 4  # outputs per work-item along N
    tile_k: int = 16  # depth of one K step
    vec_a: int = 4  # vector width of global loads of A
    vec_b: int = 4  # vector width of global loads of B
    vec_c: int = 1  # vector width of stores of C (contiguous mapping only)
    stage_a: int = 1  # stage A through local memory (else read from global in the loop)
    stage_b: int = 1  # stage B through local memory
    unroll_k: int = 4  # unroll factor of the inner K loop
    double_buffer: int = 0  # two local buffers, next tile prefetched through registers
    strided: int = 0  # 1: a work-item's outputs are wg apart (conflict-free); 0: contiguous
    local_pad: int = 0  # extra floats per local row, against bank conflicts
    # K elements summed into a fresh partial before it joins the running total. Blocked
    # summation keeps float32 roundoff near blocked BLAS's: one sequential FMA chain over all
    # of K errs 2.2x numpy's at K=2048 on the H100 host, outside the exact contract, so the
    # generator's 0 (no blocking) is not a valid schedule. Costs a second set of accumulators.
    acc_chunk: int = 256
    # Kernel form. 0: the work-group form above (tiles staged through local memory, barriers).
    # 1: the direct (CPU-shaped) form: no local memory and no barriers; each work-item reads
    # its operands from global memory into `out_m` rows of C held as float`out_n` vectors,
    # with whole-vector loads of B rows and no per-element bounds checks inside the matrix (a
    # clamped edge path handles the borders). For CPU OpenCL (PoCL), where a work-group runs
    # as loops over work-items between barriers. Left out of `key()` when 0, so the keys of
    # every earlier schedule (databases, tables, artifacts) still name the same schedule.
    direct: int = 0

    @property
    def tile_m(self) -> int:
        return self.wg_m * self.out_m

    @property
    def tile_n(self) -> int:
        return self.wg_n * self.out_n

    @property
    def threads(self) -> int:
        return self.wg_m * self.wg_n

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, int]) -> "Schedule":
        names = {f.name for f in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ScheduleError(
                f"unknown schedule parameter(s) {sorted(unknown)}; known: {sorted(names)}"
            )
        return cls(**{k: int(v) for k, v in values.items()})

    def key(self) -> str:
        """A short, stable, human-readable name (used in databases and artifacts)."""
        return _key(self)

    @classmethod
    def from_key(cls, key: str) -> "Schedule":
        by_short = {v: k for k, v in _SHORT.items()}
        values = {}
        for part in key.split("-"):
            prefix = part.rstrip("0123456789")
            if prefix not in by_short:
                raise ScheduleError(f"bad schedule key part {part!r} in {key!r}")
            values[by_short[prefix]] = int(part[len(prefix):])
        return cls.from_dict(values)

    def local_bytes(self) -> int:
        return _eval(_LOCAL_BYTES_EXPR, self.as_dict())

    def accumulators(self) -> int:
        return self.out_m * self.out_n * (2 if self.acc_chunk else 1)


@functools.lru_cache(maxsize=4096)
def _key(schedule: Schedule) -> str:
    return "-".join(f"{_SHORT[f.name]}{getattr(schedule, f.name)}" for f in fields(schedule)
                    if f.name not in _OMITTED_AT_DEFAULT or getattr(schedule, f.name) != f.default)


# Parameters added after keys were first recorded: named in a key only away from their default.
_OMITTED_AT_DEFAULT = frozenset({"direct"})


_SHORT = {
    "wg_m": "wm", "wg_n": "wn", "out_m": "om", "out_n": "on", "tile_k": "tk",
    "vec_a": "va", "vec_b": "vb", "vec_c": "vc", "stage_a": "sa", "stage_b": "sb",
    "unroll_k": "uk", "double_buffer": "db", "strided": "st", "local_pad": "lp",
    "acc_chunk": "ac", "direct": "dr",
}

# The values each parameter may take in a search. Booleans are 0/1.
DOMAINS: dict[str, tuple[int, ...]] = {
    "wg_m": (4, 8, 16, 32),
    "wg_n": (4, 8, 16, 32),
    # 6 (last, so that the work-group form's neighbours stay 4 <-> 8) only in the direct form:
    # 6 rows of 16 floats are 12 AVX2 registers of accumulators, the classic CPU micro-tile.
    "out_m": (1, 2, 4, 8, 16, 6),
    "out_n": (1, 2, 4, 8, 16),
    "tile_k": (4, 8, 16, 32),
    "vec_a": (1, 2, 4),
    "vec_b": (1, 2, 4),
    "vec_c": (1, 2, 4),
    "stage_a": (0, 1),
    "stage_b": (0, 1),
    "unroll_k": (1, 2, 4, 8),
    "double_buffer": (0, 1),
    "strided": (0, 1),
    "local_pad": (0, 1, 4),
    "acc_chunk": (64, 128, 256, 512),
    "direct": (0, 1),
}
assert list(DOMAINS) == [f.name for f in fields(Schedule)]

_LOCAL_BYTES_EXPR = (
    "4 * (1 + double_buffer) * (stage_a * tile_k * (wg_m * out_m + local_pad)"
    " + stage_b * tile_k * (wg_n * out_n + local_pad))"
)

# Validity rules, each an integer expression that must be non-zero. Names are schedule
# parameters and the device limits of `DeviceLimits`. Operators: + - * // % and comparisons,
# `and`, `or`, `not`, parentheses. `//` and `%` are on non-negative integers.
CONSTRAINTS: tuple[tuple[str, str], ...] = (
    ("work-group size", "wg_m * wg_n <= max_work_group_size"),
    ("work-group at least a warp's worth", "wg_m * wg_n >= min_work_group_size"),
    ("local memory", _LOCAL_BYTES_EXPR + " <= local_mem_bytes"),
    ("registers", "direct == 1 or out_m * out_n * (1 + (acc_chunk > 0)) + out_m + out_n <= max_accumulators"),
    ("chunks are whole K steps", "acc_chunk % tile_k == 0"),
    ("blocked summation (exact contract)", "acc_chunk > 0"),
    ("A loads tile evenly", "stage_a == 0 or (wg_m * out_m * tile_k) % (wg_m * wg_n * vec_a) == 0"),
    ("B loads tile evenly", "stage_b == 0 or (wg_n * out_n * tile_k) % (wg_m * wg_n * vec_b) == 0"),
    ("A vector fits the tile", "tile_k % vec_a == 0 and (wg_m * out_m) % vec_a == 0"),
    ("B vector fits the tile", "tile_k % vec_b == 0 and (wg_n * out_n) % vec_b == 0"),
    ("unstaged A loads scalar", "stage_a == 1 or vec_a == 1"),
    ("unstaged B loads scalar", "stage_b == 1 or vec_b == 1"),
    ("C vectors need contiguous outputs", "vec_c == 1 or (strided == 0 and out_n % vec_c == 0)"),
    ("unroll divides the K step", "tile_k % unroll_k == 0"),
    ("double buffering needs staging", "double_buffer == 0 or stage_a + stage_b >= 1"),
    ("padding only when staged", "local_pad == 0 or stage_a + stage_b >= 1"),
    # The direct form ignores the work-group form's staging and store parameters: they are
    # pinned to one value so that each direct kernel has one schedule.
    ("direct form only on CPU devices", "direct == 0 or cpu_device == 1"),
    ("work-group form tiles are powers of two", "direct == 1 or out_m != 6"),
    # A direct work-item's partials are out_m vectors of out_n floats (totals are folded once
    # per chunk, outside the hot loop): 6 x 16 and 8 x 8 fill 12 and 8 AVX2 registers.
    ("direct form registers", "direct == 0 or out_m * out_n <= 128"),
    ("direct form has no local memory",
     "direct == 0 or (stage_a + stage_b + double_buffer + local_pad + strided == 0)"),
    ("direct form stores whole rows", "direct == 0 or vec_c == 1"),
)


@dataclass(frozen=True)
class DeviceLimits:
    """What a device allows, as the constraints see it."""

    max_work_group_size: int
    local_mem_bytes: int
    max_accumulators: int = 168  # register hint: above this, spills are near certain
    min_work_group_size: int = 1
    cpu_device: int = 0  # 1 on CPU devices: the direct kernel form is allowed

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class SearchSpace:
    """The schedules valid on one device: domains, constraints and limits together."""

    def __init__(
        self,
        limits: DeviceLimits,
        domains: Mapping[str, tuple[int, ...]] | None = None,
        constraints: tuple[tuple[str, str], ...] = CONSTRAINTS,
    ) -> None:
        self.limits = limits
        self.domains = dict(domains or DOMAINS)
        missing = set(DOMAINS) - set(self.domains)
        if missing:
            raise ScheduleError(f"domains missing for {sorted(missing)}")
        self.constraints = constraints
        self._compiled = [(name, _compile(expr)) for name, expr in constraints]
        # matmul asks about the same few schedules on every call; the rules cost ~100 us.
        self._verdicts: dict[Schedule, tuple[str, ...]] = {}

    def violations(self, schedule: Schedule) -> list[str]:
        verdict = self._verdicts.get(schedule)
        if verdict is None:
            env = {**schedule.as_dict(), **self.limits.as_dict()}
            verdict = tuple(name for name, tree in self._compiled if not _eval_tree(tree, env))
            if len(self._verdicts) < 65536:  # a search may ask about millions: bound the memo
                self._verdicts[schedule] = verdict
        return list(verdict)

    def is_valid(self, schedule: Schedule) -> bool:
        return not self.violations(schedule)

    def check(self, schedule: Schedule) -> None:
        broken = self.violations(schedule)
        if broken:
            raise ScheduleError(
                f"schedule {schedule.key()} is not valid on this device: breaks "
                + ", ".join(broken)
                + "; pick another schedule or let clgemm choose (schedule=None)"
            )

    def size(self) -> int:
        total = 1
        for values in self.domains.values():
            total *= len(values)
        return total

    def iter_valid(self) -> Iterator[Schedule]:
        """Brute-force enumeration (small domains and tests; the engine does this fast)."""
        names = list(DOMAINS)
        for combo in itertools.product(*(self.domains[n] for n in names)):
            schedule = Schedule(**dict(zip(names, combo)))
            if self.is_valid(schedule):
                yield schedule

    def engine_spec(self) -> dict:
        """What the Rust engine receives: parameter order, domains, limits, rules."""
        return {
            "params": [[name, list(self.domains[name])] for name in DOMAINS],
            "limits": self.limits.as_dict(),
            "constraints": [expr for _, expr in self.constraints],
        }


# A tiny evaluator for the constraint language: integer arithmetic only, no names beyond
# the environment, so a constraint cannot do anything but compute a number.
_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMPOPS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def _compile(expr: str) -> ast.AST:
    tree = ast.parse(expr, mode="eval").body
    for node in ast.walk(tree):
        allowed = (
            ast.BinOp, ast.BoolOp, ast.Compare, ast.UnaryOp, ast.Name, ast.Constant,
            ast.And, ast.Or, ast.Not, ast.USub, ast.Load, *_BINOPS, *_CMPOPS,
        )
        if not isinstance(node, allowed):
            raise ScheduleError(f"constraint {expr!r} uses {type(node).__name__}, not allowed")
    return tree


def _eval_tree(node: ast.AST, env: Mapping[str, int]) -> int:
    if isinstance(node, ast.Constant):
        return int(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval_tree(node.left, env), _eval_tree(node.right, env))
    if isinstance(node, ast.UnaryOp):
        value = _eval_tree(node.operand, env)
        return int(not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return int(all(_eval_tree(v, env) for v in node.values))
        return int(any(_eval_tree(v, env) for v in node.values))
    if isinstance(node, ast.Compare):
        left = _eval_tree(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval_tree(comparator, env)
            if not _CMPOPS[type(op)](left, right):
                return 0
            left = right
        return 1
    raise ScheduleError(f"cannot evaluate {ast.dump(node)}")


def _eval(expr: str, env: Mapping[str, int]) -> int:
    return _eval_tree(_compile(expr), env)
