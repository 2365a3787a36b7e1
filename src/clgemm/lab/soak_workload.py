"""The soak's products and how each result is verified against float64.

Products: the model traces' distinct products, the KPI squares scaled to the device, a fixed
list of odd shapes and 16 random odd shapes drawn once from the seed (a set fixed after the
first cycle, so that memory can be flat after warm-up: a shape first met late would grow the
plan memos on purpose).

Verification of every product, in float64, with Gaussian probe vectors X (n x P):
  * every call: r = C X - (alpha op(A) (op(B) X) + beta C_old X), O((m + n) k P), against the
    contract's bound. A wrong result E = C - C_exact is seen unless E X = 0, which for
    Gaussian X happens with probability 0; its size is seen through |E X|.
    - exact (and check=True): per row, |r| <= gamma (|alpha| |op(A)| (|op(B)| |X|) +
      |beta| |C_old| |X|), gamma = EXACT_GAMMA_FACTOR (K + 16) u: a rigorous worst-case bound
      for any float32 lane (the float32 family needs (K + 2) u; the factor covers 3xTF32's
      dropped lo x lo terms and tensor-core accumulators that truncate). No clean result can
      fail it; garbage of a few ulps of |A||B| x K cannot pass it.
    - rel_tol: ||r||_F / sqrt(P) estimates ||C - C_exact||_F (E[||E x||^2] = ||E||_F^2 for
      a standard Gaussian x), set against ||C||_F; a violation is an estimate above
      REL_TOL_MARGIN x rel_tol: the estimate of P = 8 probes overshoots by 1.9x at most once
      in 10^4 calls (chi-squared with 8 degrees, an error of rank 1; more rank, less spread).
  * a share (the first call of each product and one call in FULL_EVERY after it): SAMPLE_ROWS
    rows of C against a float64 reference of those rows, element by element under the same
    bound: what a probe folds away (an error confined to a few cells of a big product sits
    beside the sums of whole rows) is seen there at full size. Full references on every call
    would cost a float64 product per call, more than the soak's products on a big shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..bench.suites import cases as suite_cases
from .guard_campaign import gen

U = 2.0**-24
EXACT_GAMMA_FACTOR = 4.0
REL_TOL_MARGIN = 2.0
PROBES = 8
SAMPLE_ROWS = 8
FULL_EVERY = 8
TINY = 1e-30  # underflow room in the bounds
# Operands of up to this many elements (A, B and C together) are drawn afresh for every
# call; bigger ones are drawn once per product and reused (with their probes' float64
# products), so that a GPU soak spends its time on the device, not in numpy's generator.
FRESH_LIMIT = 1 << 21
KINDS = ("normal", "uniform", "rowscaled", "colscaled", "int", "lowrank", "mixedsign", "sparse")

CPU_ODD = ((1, 1, 1), (7, 13, 5), (33, 65, 17), (127, 63, 255), (175, 129, 93), (1, 257, 129),
           (301, 3, 77), (2, 300, 301))
GPU_ODD = CPU_ODD + ((1023, 517, 263), (1399, 1401, 1403), (4097, 33, 129), (2047, 2049, 511),
                     (1, 4097, 4095))
CPU_KPI_SCALE = 0.125  # 1400, 2048, 3072 -> 175, 256, 384: seconds on two CPU cores


@dataclass(frozen=True)
class Product:
    name: str  # "<source>:<what>", e.g. "model_tiny:proj.qkv", "kpi:2048", "odd:7x13x5"
    m: int
    n: int
    k: int
    trans_a: bool
    trans_b: bool
    batch: int = 1  # a trace's batched product: `batch` products in one call (3-D operands)

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.batch

    @property
    def elements(self) -> int:
        return (self.m * self.k + self.k * self.n + self.m * self.n) * self.batch

    @property
    def lead(self) -> tuple[int, ...]:
        """The operands' leading dimension: (batch,) for a batch, () for one product."""
        return (self.batch,) if self.batch > 1 else ()


def default_traces(device) -> list[Path]:
    """The checkout's model traces: the tiny one on a CPU, every full one on a GPU (beside
    the package in a checkout, else in the working directory: an installed package)."""
    root = Path(__file__).resolve().parents[3] / "traces"
    if not root.is_dir():
        root = Path.cwd() / "traces"
    if device.type == "GPU":
        return sorted((root / "models").glob("*.jsonl"))
    tiny = root / "tiny" / "model_tiny.jsonl"
    return [tiny] if tiny.exists() else []


def products(device, traces: list[Path], seed: int) -> list[Product]:
    """Every product of the soak, without duplicates (the first name of a shape is kept)."""
    from ..bench.model import trace_calls

    out: list[Product] = []
    for path in traces:
        stem = Path(path).stem
        for c in trace_calls(path):
            out.append(Product(f"{stem}:{c.name or 'call'}", c.m, c.n, c.k, c.trans_a, c.trans_b,
                               max(int(c.batch), 1)))
    gpu = device.type == "GPU"
    for i, c in enumerate(suite_cases("kpi", scale=1.0 if gpu else CPU_KPI_SCALE)):
        out.append(Product(f"kpi:{c.m}", c.m, c.n, c.k, bool(i % 2), bool(i // 2 % 2)))
    rng = np.random.default_rng(seed)
    top = 4096 if gpu else 384
    odd = [tuple(int(x) | 1 for x in np.exp(rng.uniform(0, math.log(top), 3)))
           for _ in range(16)]
    for m, n, k in list(GPU_ODD if gpu else CPU_ODD) + odd:
        ta, tb = bool(rng.integers(2)), bool(rng.integers(2))
        out.append(Product(f"odd:{m}x{n}x{k}", m, n, k, ta, tb))
    seen, unique = set(), []
    for p in out:
        key = (p.m, p.n, p.k, p.trans_a, p.trans_b, p.batch)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


class Operands:
    """op(A), op(B), C_old of one product (float32, in the layout the call takes) and the
    float64 products of the probes X (n x PROBES) that every verification needs."""

    def __init__(self, p: Product, A: np.ndarray, B: np.ndarray, C0: np.ndarray,
                 probes: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str) -> None:
        self.product, self.kind = p, kind
        self.A, self.B, self.C0 = A, B, C0
        self.X, bx, abs_bx = probes  # X, op(B) X, |op(B)| |X|
        opa = A.T if p.trans_a else A
        self.abx = opa.astype(np.float64) @ bx  # op(A) op(B) X
        self.abs_abx = np.abs(opa).astype(np.float64) @ abs_bx
        self.cx = C0.astype(np.float64) @ self.X
        self.abs_cx = np.abs(C0).astype(np.float64) @ np.abs(self.X)
        self.device: tuple | None = None  # (A, B) on the device, for reused operands

    def op(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.product
        return (self.A.T if p.trans_a else self.A), (self.B.T if p.trans_b else self.B)


class Batch:
    """Operands of a batched product: the 3-D arrays the call takes and one Operands per
    product of the batch (views of them, with their own probes), each product verified on
    its own against float64 as a single one is."""

    def __init__(self, p: Product, A: np.ndarray, B: np.ndarray, C0: np.ndarray,
                 items: list[Operands], kind: str) -> None:
        self.product, self.kind = p, kind
        self.A, self.B, self.C0 = A, B, C0
        self.items = items
        self.device: tuple | None = None


def probes_of(rng: np.random.Generator, opb: np.ndarray) -> tuple:
    """Fresh Gaussian probes X for op(B) (k x n) and op(B) X, |op(B)| |X| in float64."""
    X = rng.standard_normal((opb.shape[1], PROBES))
    return X, opb.astype(np.float64) @ X, np.abs(opb).astype(np.float64) @ np.abs(X)


class OperandSource:
    """Operands for each call: drawn afresh for small products (every call sees new data of
    a random kind); for big ones (over FRESH_LIMIT elements) drawn once per matrix shape and
    shared by the products that use that shape (the LM head's weights serve decode and
    prefill), with their probes' float64 products kept."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._mats: dict[tuple[int, int], np.ndarray] = {}
        self._probes: dict[tuple[int, bool], tuple] = {}  # (id of B, trans_b) -> probes
        self._kept: dict[Product, Operands] = {}

    def _matrix(self, shape: tuple[int, ...]) -> np.ndarray:
        """A reused matrix: normal or uniform, drawn in float32 directly (the campaign's
        generator draws float64 and casts: seconds per GiB that a GPU soak's setup, which
        draws several GiB, cannot spare)."""
        if shape not in self._mats:
            if len(self._mats) % 2:
                self._mats[shape] = self.rng.random(shape, dtype=np.float32)
            else:
                self._mats[shape] = self.rng.standard_normal(shape, dtype=np.float32)
        return self._mats[shape]

    def get(self, p: Product) -> "Operands | Batch":
        kind = KINDS[int(self.rng.integers(len(KINDS)))]
        a_shape = (p.k, p.m) if p.trans_a else (p.m, p.k)
        b_shape = (p.n, p.k) if p.trans_b else (p.k, p.n)
        if p.batch > 1:
            return self._batch(p, kind, a_shape, b_shape)
        if p.elements <= FRESH_LIMIT:
            A, B = gen(self.rng, kind, a_shape), gen(self.rng, kind, b_shape)
            C0 = gen(self.rng, kind, (p.m, p.n))
            return Operands(p, A, B, C0, probes_of(self.rng, B.T if p.trans_b else B), kind)
        if p not in self._kept:
            A, B = self._matrix(a_shape), self._matrix(b_shape)
            key = (id(B), p.trans_b)
            if key not in self._probes:
                self._probes[key] = probes_of(self.rng, B.T if p.trans_b else B)
            self._kept[p] = Operands(p, A, B, self._matrix((p.m, p.n)), self._probes[key],
                                     "reused")
        return self._kept[p]

    def _batch(self, p: Product, kind: str, a_shape, b_shape) -> Batch:
        """A batch's operands: fresh of one kind for every call where small, else drawn once
        (as a single product's)."""
        if p.elements > FRESH_LIMIT and p in self._kept:
            return self._kept[p]
        if p.elements <= FRESH_LIMIT:
            def draw(shape):
                return np.stack([gen(self.rng, kind, shape) for _ in range(p.batch)])
        else:
            kind = "reused"

            def draw(shape):
                return self._matrix((p.batch,) + shape)
        A, B, C0 = draw(a_shape), draw(b_shape), draw((p.m, p.n))
        one = replace(p, batch=1)
        items = [Operands(one, A[t], B[t], C0[t],
                          probes_of(self.rng, B[t].T if p.trans_b else B[t]), kind)
                 for t in range(p.batch)]
        got = Batch(p, A, B, C0, items, kind)
        if kind == "reused":
            self._kept[p] = got
        return got

    def kept(self) -> list["Operands | Batch"]:
        return list(self._kept.values())

    def prepare(self, products: list[Product]) -> int:
        """Draw the reused operands of every big product now (before the clock starts);
        returns how many products reuse theirs."""
        big = [p for p in products if p.elements > FRESH_LIMIT]
        for p in big:
            self.get(p)
        return len(big)


@dataclass(frozen=True)
class Check:
    ok: bool
    ratio: float  # the worst |error| / bound (exact) or estimate / rel_tol (rel_tol)
    how: str  # "probe" or "rows"
    detail: str = ""


def exact_gamma(k: int) -> float:
    return EXACT_GAMMA_FACTOR * (k + 16) * U


def verify_probe(ops: Operands, C: np.ndarray, alpha: float, beta: float,
                 rel_tol: float | None) -> Check:
    """The random-probe test of every call (see the module's docstring)."""
    if not np.isfinite(C).all():
        return Check(False, math.inf, "probe", "non-finite entries in the result")
    cx = C.astype(np.float64) @ ops.X
    want = alpha * ops.abx + (beta * ops.cx if beta != 0.0 else 0.0)
    r = cx - want
    if rel_tol is not None:
        # ||E X||_F^2 / P estimates ||E||_F^2 (E = C - C_exact); the denominator is the
        # result's own norm, exact, >= (1 - rel_tol) ||C_exact||_F where the contract holds.
        err = float(np.linalg.norm(r)) / math.sqrt(PROBES)
        est = err / max(float(np.linalg.norm(C.astype(np.float64))) * (1.0 - rel_tol), TINY)
        ratio = est / rel_tol
        return Check(ratio <= REL_TOL_MARGIN, ratio, "probe",
                     f"estimated relative error {est:.3g} for rel_tol {rel_tol:g}")
    bound = exact_gamma(ops.product.k) * (abs(alpha) * ops.abs_abx
                                          + (abs(beta) * ops.abs_cx if beta != 0.0 else 0.0))
    ratio = float(np.max(np.abs(r) / (bound + TINY))) if r.size else 0.0
    return Check(ratio <= 1.0, ratio, "probe", f"largest |C x - ref| / bound {ratio:.3g}")


def verify_rows(ops: Operands, C: np.ndarray, alpha: float, beta: float,
                rel_tol: float | None, rng: np.random.Generator) -> Check:
    """SAMPLE_ROWS rows of C against float64, element by element (exact contracts) or by
    their relative Frobenius error (rel_tol: the contract bounds the whole matrix, so the
    rows' figure is reported, and judged with the probe's margin)."""
    p = ops.product
    rows = np.sort(rng.choice(p.m, size=min(p.m, SAMPLE_ROWS), replace=False))
    opa, opb = ops.op()
    a64, b64 = opa[rows].astype(np.float64), opb.astype(np.float64)
    ref = alpha * (a64 @ b64)
    if beta != 0.0:
        ref += beta * ops.C0[rows].astype(np.float64)
    got = C[rows].astype(np.float64)
    if not np.isfinite(got).all():
        return Check(False, math.inf, "rows", "non-finite entries in the result")
    err = np.abs(got - ref)
    if rel_tol is not None:
        # The contract bounds the whole matrix: a few rows may carry more of the error than
        # their share, so their figure is reported (ratio), not judged.
        est = float(np.linalg.norm(err) / max(np.linalg.norm(ref), TINY))
        return Check(True, est / rel_tol, "rows",
                     f"relative error {est:.3g} of {len(rows)} rows for rel_tol {rel_tol:g}")
    bound = abs(alpha) * (np.abs(a64) @ np.abs(b64))
    if beta != 0.0:
        bound += abs(beta) * np.abs(ops.C0[rows].astype(np.float64))
    bound = exact_gamma(p.k) * bound + TINY
    ratio = float(np.max(err / bound)) if err.size else 0.0
    i, j = np.unravel_index(int(np.argmax(err / bound)), err.shape) if err.size else (0, 0)
    return Check(ratio <= 1.0, ratio, "rows",
                 f"largest |C - ref| / bound {ratio:.3g} at ({int(rows[i])}, {int(j)})")
