"""The check's two forms of its sums on one device (GuardDevice.rows_form): the work-group
kernels (a GPU's) against the rows form (a CPU device's with double sums).

    python benchmarks/guard/forms.py OUT [SIZES] [ROUNDS]     (defaults 512,1024,2048 and 2)

Per size and form, in turn within each round (the host's drift hits both alike):
- `commands`: device time of each of the check's commands alone (no product beside them),
  the best of 5 checks of a clean product;
- `calls`: the best of 10 walls of matmul on device arrays, plain and check=True (each waited
  for; profile_commands.profile, every command's device time recorded), the plain call's
  and the checked call's in turn, 5 each, twice;
- `overhead`: campaign.abft_overhead (the same two calls interleaved, medians of 9);
each in a fresh process with $CLGEMM_ABFT_FORM set.
Writes OUT/forms.jsonl, a line per (round, form, size, part).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FORMS = ("groups", "rows")


def commands(n: int) -> dict:
    import pyopencl as cl

    from clgemm.guard import abft
    from clgemm.guard.device import View, guard_device
    from clgemm.operands import upload
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    gd = guard_device(rt)
    rng = np.random.default_rng(n)
    A = rng.standard_normal((n, n), np.float32)
    B = rng.standard_normal((n, n), np.float32)
    C = A @ B
    a, _ = upload(rt, "A", A, False)
    b, _ = upload(rt, "B", B, False)
    c, _ = upload(rt, "C", C, False)
    bs = abft.block_rows(n, n, n)
    ck = abft.BlockCheck(gd, n, n, n, bs)
    best = None
    for _ in range(5):
        ck.events = []
        ck.expected(View.of(a, n, n), View.of(b, n, n))
        ck.result(View.of(c, n, n), 1.0, 0.0, 1.0)
        ok = ck.verdict(ck.read(), 1.0).ok
        kernels = [e for e in ck.events if e.command_type == cl.command_type.NDRANGE_KERNEL]
        each = [(f"{role} ({k.function_name})", rt.seconds(e))
                for e, (role, k) in zip(kernels, _kernels(ck))]
        total = sum(s for _, s in each)
        if best is None or total < best["total_s"]:
            best = {"total_s": total, "by_command": dict(each), "ok": ok}
    return {"block_rows": bs, "rows_form": ck.rows, **best}


def calls(n: int) -> dict:
    import clgemm
    from clgemm.runtime import get_runtime

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from profile_commands import profile

    rt = get_runtime()
    rng = np.random.default_rng(n)
    a, b, c = (clgemm.to_device(rng.standard_normal((n, n), np.float32), rt.device)
               for _ in range(3))
    out = {}
    for _ in range(2):  # in turn, twice: the best of each
        for name, kw in (("plain", {}), ("checked", {"check": True})):
            got = profile(lambda: clgemm.matmul(a, b, C=c, device=rt.device, return_info=True,
                                                **kw), rt)
            if name not in out or got["wall_s"] < out[name]["wall_s"]:
                out[name] = {"wall_s": got["wall_s"], "busy_s": got["busy_s"],
                             "by_name": got["by_name"]}
    out["overhead_vs_plain_wall"] = out["checked"]["wall_s"] / out["plain"]["wall_s"] - 1
    return out


def _kernels(ck) -> list:
    """The kernels of one check in the order it enqueues them (no C_old: beta = 0)."""
    return [("U", ck.k_u), ("E", ck.k_e), ("S", ck.k_c), ("judge1", ck.k_j1),
            ("judge2", ck.k_j2)]


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--one":  # a child: one part, one size, the form from the env
        part, n = argv[1], int(argv[2])
        if part == "commands":
            print(json.dumps(commands(n)))
        elif part == "calls":
            print(json.dumps(calls(n)))
        else:
            from clgemm.lab import guard_campaign as campaign

            print(json.dumps(campaign.abft_overhead(n, reps=9)))
        return 0
    out = Path(argv[0])
    sizes = [int(x) for x in (argv[1] if len(argv) > 1 else "512,1024,2048").split(",")]
    rounds = int(argv[2]) if len(argv) > 2 else 2
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "forms.jsonl", "w") as fh:
        for r in range(rounds):
            for form in FORMS:
                for n in sizes:
                    for part in ("commands", "calls", "overhead"):
                        env = dict(os.environ, CLGEMM_ABFT_FORM=form)
                        got = subprocess.run([sys.executable, __file__, "--one", part, str(n)],
                                             env=env, capture_output=True, text=True, check=True)
                        row = {"round": r, "form": form, "n": n, "part": part,
                               **json.loads(got.stdout.strip().splitlines()[-1])}
                        fh.write(json.dumps(row) + "\n")
                        fh.flush()
                        print(_line(row), flush=True)
    return 0


def _line(row: dict) -> str:
    head = f"round {row['round']} {row['form']:6s} {row['n']:5d}"
    if row["part"] == "commands":
        each = ", ".join(f"{k} {v * 1e3:.2f}" for k, v in row["by_command"].items())
        return f"{head} commands {row['total_s'] * 1e3:.2f} ms ({each}) ok={row['ok']}"
    if row["part"] == "calls":
        return (f"{head} calls, best of 10: plain {row['plain']['wall_s'] * 1e3:.2f} ms, "
                f"checked {row['checked']['wall_s'] * 1e3:.2f} ms: "
                f"+{row['overhead_vs_plain_wall']:.0%}")
    return (f"{head} plain {row['plain_wall_s'] * 1e3:.2f} ms, checked "
            f"{row['checked_wall_s'] * 1e3:.2f} ms: +{row['overhead_vs_plain_wall']:.0%}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
