"""A load generator: GEMMs on one device back to back until killed (for `bench --load`)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clgemm.bench.load")
    p.add_argument("--device", required=True)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=600.0)
    args = p.parse_args(argv)
    from .. import matmul, to_device

    rng = np.random.default_rng()
    a = rng.standard_normal((args.size, args.size), dtype=np.float32)
    a_d, b_d = to_device(a, args.device), to_device(a.T.copy(), args.device)
    c_d = matmul(a_d, b_d, device=args.device)
    c_d.queue.finish()
    print("ready", flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for _ in range(4):
            matmul(a_d, b_d, C=c_d, device=args.device)
        c_d.queue.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
