"""The tails of clean residuals, for choosing the judge's Gaussian-tail rule offline
(tail_rules.py): check every clean product once and keep, per product, its kind, shape, block
rows, the number of non-zero |r| / scale, their exact 75th percentile and 32 largest values,
and the same for the ratios centred per block row (abft's centred rule).

    python benchmarks/guard/clean_tails.py OUT.json SEED COUNT [--big]

Products: alternately m, n log-uniform in [256, 2048] with K in [512, 4096], and
campaign.deep_case (m, n up to 1024, K 512-8191); `--big`: m, n in [1024, 3072] and K in
[512, 4096] only (blocks of 32 and 128 rows). Every kind, transposes, alpha and beta.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    import pyopencl as cl

    import clgemm
    from clgemm.guard import abft
    from clgemm.lab import guard_campaign as campaign
    from clgemm.runtime import get_runtime

    out, seed, count = argv[0], int(argv[1]), int(argv[2])
    big = "--big" in argv
    rt = get_runtime()
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    lo, hi = (1024, 3072) if big else (256, 2048)
    for t in range(count):
        if big or t % 2 == 0:
            A, B, C0, alpha, beta, ta, tb, kind = campaign.sized_case(rng, lo, hi)
        else:
            A, B, C0, alpha, beta, ta, tb, kind = campaign.deep_case(
                rng, int(rng.integers(9, 13)), max_dim=1024)
        C = clgemm.matmul(A, B, C=None if C0 is None else C0.copy(), alpha=alpha, beta=beta,
                          trans_a=ta, trans_b=tb)
        m, n = C.shape
        k = A.shape[0] if ta else A.shape[1]
        keep: list = []
        a = abft._as_view(rt, "A", A, ta, keep)
        b = abft._as_view(rt, "B", B, tb, keep)
        o = abft._as_view(rt, "O", C0, False, keep) if beta != 0 else None
        v, _ = abft.check_views(rt, a, b, abft._as_view(rt, "C", C, False, keep), alpha, beta,
                                o, abft.DEFAULT_C, locate_cells=False)
        ck = abft.block_check(abft.guard_device(rt), m, n, k)
        got = {}
        for name in ("R", "SC", "RG"):
            got[name] = np.empty(ck.nb * n, ck.gd.rdtype)
            cl.enqueue_copy(ck.gd.queue, got[name], getattr(ck, name), is_blocking=True)
        ok = np.isfinite(got["RG"])
        ratio = got["R"].astype(np.float64) / got["SC"]
        z = np.abs(ratio[ok])
        nz = np.sort(z[z > 0])
        if nz.size < 100:
            continue
        centred = None
        if ok.all():
            zz = ratio.reshape(ck.nb, n)
            d = np.abs(zz - np.median(zz, axis=1, keepdims=True)).ravel()
            d = np.sort(d[d > 0])
            if d.size > 100:
                centred = {"n": int(d.size), "p75": float(np.percentile(d, 75)),
                           "top": d[-32:][::-1].tolist()}
        rows.append({"kind": kind, "shape": [m, n, k], "bs": ck.bs, "nb": ck.nb,
                     "sums": int(nz.size), "p75": float(np.percentile(nz, 75)),
                     "top": nz[-32:][::-1].tolist(), "centred": centred, "ok": v.ok,
                     "T": v.threshold})
        if t % 100 == 0:
            print(t, len(rows), flush=True)
    doc = {"device": rt.device.name, "seed": seed, "count": count, "big": big,
           "fp64_sums": abft.guard_device(rt).fp64, "products": rows}
    with open(out, "w") as f:
        json.dump(doc, f)
    print("products kept", len(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
