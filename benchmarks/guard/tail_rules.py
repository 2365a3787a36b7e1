"""The judge's Gaussian-tail rule, evaluated offline on clean_tails.py's products: for each
candidate (minimum block rows, GAUSS_Z, factor on the 3rd largest ratio) how many clean
products it would flag where the branch engages (K >= 512, >= 2000 sums, their 10th largest
within GAUSS_TOP_MARGIN x the Gaussian 10-in-N level), and the worst margin. The rule as
abft_kernels applies it, on exact percentiles (the device interpolates them in a histogram).

    python benchmarks/guard/tail_rules.py TAILS.json [TAILS.json ...] > rules.txt
"""

from __future__ import annotations

import json
import sys
from statistics import NormalDist

_ND = NormalDist()


def z_top(sums: int) -> float:
    return 1.3 * _ND.inv_cdf(1 - 10 / sums / 2)


def worst_ratio(product: dict, min_block: int, gauss_z: float, f3: float,
                centred: bool = False) -> float | None:
    """Largest clean ratio over the branch's T, None where the branch stays off."""
    d = product["centred"] if centred else product
    if d is None:
        return None
    sums = d["n"] if centred else product["sums"]
    if product["shape"][2] < 512 or sums < 2000 or product["bs"] < min_block:
        return None
    sigma, top = d["p75"] / 1.1503, d["top"]
    if top[9] > z_top(sums) * sigma:
        return None
    return top[0] / max(gauss_z * sigma, 1.5 * top[9], f3 * top[2])


def main(paths: list[str]) -> int:
    products = []
    for p in paths:
        products += json.load(open(p))["products"]
    blocks = sorted({r["bs"] for r in products})
    print(f"{len(products)} clean products; blocks:",
          {b: sum(1 for r in products if r["bs"] == b) for b in blocks})
    for centred in (False, True):
        for min_block in (2, 8, 32, 128):
            for gauss_z, f3 in ((6.5, 0.0), (6.5, 1.5), (6.5, 1.75), (6.5, 2.0), (8.0, 0.0)):
                got = [worst_ratio(r, min_block, gauss_z, f3, centred) for r in products]
                got = [x for x in got if x is not None]
                print(f"{'centred' if centred else 'plain':8s} blocks >= {min_block:3d} "
                      f"z {gauss_z} x top3 {f3}: engaged {len(got):4d}, flagged "
                      f"{sum(x > 1 for x in got):3d}, worst {max(got, default=0):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
