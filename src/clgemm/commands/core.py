"""`clgemm devices` and `clgemm matmul`."""

from __future__ import annotations

import json

import numpy as np

from . import args as a


def register(sub) -> None:
    p = sub.add_parser("devices", help="list OpenCL devices with fingerprints and capabilities")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--probe", action="store_true",
                   help="also run a small product on each device (does it work here, and if "
                        "not why) and test-compile inline PTX (NVIDIA)")
    p.set_defaults(func=_devices)

    p = sub.add_parser("matmul", help="one product C = alpha*op(A)@op(B) + beta*C from .npy files")
    p.add_argument("a", type=a.npy_file, help="A as .npy (float32)")
    p.add_argument("b", type=a.npy_file, help="B as .npy (float32)")
    p.add_argument("-o", "--out", required=True, type=a.output_file,
                   help="where to write C (.npy, written as named)")
    p.add_argument("--c", type=a.npy_file, help="input C for beta != 0 (.npy)")
    p.add_argument("--alpha", type=a.finite, default=1.0)
    p.add_argument("--beta", type=a.finite, default=0.0)
    p.add_argument("--trans-a", action="store_true")
    p.add_argument("--trans-b", action="store_true")
    p.add_argument("--device", help="index, fingerprint or name substring (see `clgemm devices`)")
    p.add_argument("--rel-tol", type=a.fraction, default=None, help="error budget (default: exact)")
    p.add_argument("--check", action="store_true", help="verify with ABFT checksums")
    p.set_defaults(func=_matmul)


def _devices(args) -> int:
    from ..device import devices
    from ..runtime import get_runtime
    from ..select.table import load_table

    found = devices()
    rows = []
    for d in found:
        row = d.summary()
        table = load_table(d)  # its own, a fallback (the closest table), or the built-in default
        row["table"] = {"source": table.source, "match": table.match,
                        "arms": len(table.candidates())}
        if args.probe:
            row["product"] = _try_product(d)
            if row["product"] == "works":
                row["capabilities"]["inline_ptx"] = get_runtime(d).probe_inline_ptx()
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no OpenCL device found (pip install pocl-binary-distribution for a CPU device)")
        return 1
    for r in rows:
        caps = r["capabilities"]
        print(f"[{r['index']}] {r['platform']}: {r['name']}  ({r['type']}, {r['compute_units']} CU, "
              f"{r['global_mem_bytes'] / 2**30:.1f} GiB, local {r['local_mem_bytes'] // 1024} KiB)")
        print(f"     driver {r['driver_version']}  fingerprint {r['fingerprint']}")
        print(f"     subgroups={caps['subgroups']} fp16={caps['fp16']} fp64={caps['fp64']} "
              f"cc={caps['nv_compute_capability']} inline_ptx={caps['inline_ptx']}")
        t = r["table"]
        print(f"     table {t['source']} ({t['match']}, {t['arms']} schedule(s))")
        if "product" in r:
            print(f"     a product here: {r['product']}")
    return 0


def _try_product(d) -> str:
    """'works' when an odd-shaped product on the device matches float64, else why not."""
    import clgemm

    from ..device import compile_blocker
    from ..errors import ClgemmError

    why = compile_blocker(d)
    if why is not None:
        return f"fails: its compiler refuses a kernel ({why})"
    rng = np.random.default_rng(0)
    A = rng.standard_normal((9, 7), dtype=np.float32)
    B = rng.standard_normal((7, 11), dtype=np.float32)
    try:
        C = clgemm.matmul(A, B, device=d)
    except ClgemmError as exc:
        return f"fails: {str(exc)[:200]}"
    ref = A.astype(np.float64) @ B.astype(np.float64)
    return "works" if np.allclose(C, ref, rtol=1e-5, atol=1e-5) else "fails: a wrong result"


def _matmul(args) -> int:
    from ..api import matmul
    from ..atomic import replacing

    # a, b and c were loaded (allow_pickle=False) while the arguments were parsed
    result, info = matmul(args.a, args.b, C=args.c, alpha=args.alpha, beta=args.beta,
                          trans_a=args.trans_a, trans_b=args.trans_b, device=args.device,
                          rel_tol=args.rel_tol, check=args.check, return_info=True)
    with replacing(args.out, "wb") as f:  # to the path given (np.save(name) adds .npy)
        np.save(f, result)
    m, n, k = info.shape
    print(f"{m}x{n}x{k} on {info.device}: kernel {info.kernel_s * 1e3:.3f} ms "
          f"({info.gflops:.1f} GFLOPS), total {info.total_s * 1e3:.1f} ms, method {info.method}, "
          f"schedule {info.schedule} -> {args.out}")
    return 0
