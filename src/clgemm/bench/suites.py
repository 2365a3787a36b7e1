"""Named sets of product shapes (M, N, K), row-major, C = A @ B."""

from __future__ import annotations

from dataclasses import dataclass

KPI_SIZES = (1400, 2048, 3072)


@dataclass(frozen=True)
class Case:
    m: int
    n: int
    k: int
    tag: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.m, self.n, self.k)

    @property
    def name(self) -> str:
        return f"{self.m}x{self.n}x{self.k}"


SUITES: dict[str, tuple[Case, ...]] = {
    "kpi": tuple(Case(s, s, s, "kpi") for s in KPI_SIZES),
    "shapes": (
        Case(2048, 1024, 512, "rectangular"),
        Case(512, 2048, 1024, "rectangular"),
        Case(8192, 64, 1024, "tall-skinny"),
        Case(64, 8192, 1024, "short-wide"),
        Case(1024, 1024, 32, "small-k"),
        Case(64, 64, 64, "small"),
        Case(128, 128, 128, "small"),
        Case(1023, 517, 263, "odd"),
        Case(1399, 1401, 1403, "odd"),
    ),
}


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1024x512x256' -> (1024, 512, 256); 'N' -> (N, N, N)."""
    parts = text.lower().strip().split("x")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise ValueError(f"bad shape {text!r}: write MxNxK, e.g. 1024x512x256, or one size N")
    try:
        m, n, k = (int(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f"bad shape {text!r}: dimensions must be integers") from exc
    if min(m, n, k) < 1:
        raise ValueError(f"bad shape {text!r}: dimensions must be >= 1")
    return m, n, k


def _scaled(d: int, scale: float) -> int:
    if scale == 1.0:
        return d
    out = max(1, int(round(d * scale)))
    return out | 1 if d % 2 else out  # odd stays odd


def cases(suite: str | None, shapes: str | None = None, scale: float = 1.0) -> list[Case]:
    """The cases of a suite (scaled; `scale` keeps odd sizes odd) and user shapes, in order,
    without duplicates."""
    out: list[Case] = []
    if suite:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
        for c in SUITES[suite]:
            out.append(Case(_scaled(c.m, scale), _scaled(c.n, scale), _scaled(c.k, scale), c.tag))
    if shapes:
        for text in shapes.split(","):
            if text.strip():
                m, n, k = parse_shape(text)
                out.append(Case(m, n, k, "user"))
    seen, unique = set(), []
    for c in out:
        if c.shape not in seen:
            seen.add(c.shape)
            unique.append(c)
    return unique


def is_kpi(shape) -> bool:
    m, n, k = shape
    return m == n == k and m in KPI_SIZES
