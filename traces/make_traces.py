"""Writes the committed workload traces (deterministic; rerun to regenerate).

    python traces/make_traces.py

Each trace is JSON lines: {"m", "n", "k", "trans_a", "trans_b", "repeat", "name"} calls and
{"phase": "load_on" | "load_off"} markers. Calls of a workload are interleaved in a seeded
random order, in bursts (`repeat`), as a serving or training loop issues them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent


def call(name, m, n, k, repeat=1, ta=False, tb=False):
    return {"name": name, "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb, "repeat": repeat}


def interleave(shapes, rounds, burst, seed):
    """`rounds` passes over `shapes`, each pass shuffled, each shape issued `burst` times."""
    rnd = random.Random(seed)
    out = []
    for _ in range(rounds):
        order = shapes[:]
        rnd.shuffle(order)
        out += [dict(s, repeat=burst if isinstance(burst, int) else rnd.randint(*burst))
                for s in order]
    return out


def write(path, lines, header):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"# {header}\n")
        for line in lines:
            f.write(json.dumps(line) + "\n")


# ---- the H100 suite --------------------------------------------------------------------------
KPI = [call("kpi1400", 1400, 1400, 1400), call("kpi2048", 2048, 2048, 2048),
       call("kpi3072", 3072, 3072, 3072)]

TOKENS, D, FF, HEAD, SEQ = 2048, 1024, 4096, 64, 512
NN = [
    call("attn_qkv", TOKENS, 3 * D, D), call("attn_out", TOKENS, D, D),
    call("mlp_up", TOKENS, FF, D), call("mlp_down", TOKENS, D, FF),
    call("attn_scores", SEQ, SEQ, HEAD, tb=True),  # Q K^T, one head
    call("attn_values", SEQ, HEAD, SEQ),  # P V
    call("lm_head", 256, 8192, D, tb=True),  # logits of a short batch, weights stored N x K
    call("conv1_7x7_im2col", 12544, 64, 147),  # ResNet stem (unaligned K)
    call("conv3x3_56", 3136, 64, 576), call("conv3x3_28", 784, 128, 1152),
    call("conv1x1_56", 3136, 256, 64), call("conv3x3_14", 196, 256, 2304),
]

SMALL = [call("b64", 64, 64, 64), call("b96", 96, 96, 96), call("b128", 128, 128, 128),
         call("b256x64", 256, 256, 64), call("b32x256", 32, 256, 256),
         call("b256_16", 256, 16, 256), call("b192", 192, 192, 192)]

DRIFT = [call("kpi2048", 2048, 2048, 2048), call("attn_out", TOKENS, D, D),
         call("mlp_up", TOKENS, FF, D), call("conv3x3_28", 784, 128, 1152),
         call("b256x64", 256, 256, 64)]

TUNED = [call("sq1024", 1024, 1024, 1024), call("kpi2048", 2048, 2048, 2048),
         call("sq4096", 4096, 4096, 4096)]


def main():
    write(HERE / "kpi_square.jsonl", interleave(KPI, 12, (3, 8), 1),
          "KPI squares 1400/2048/3072, interleaved bursts")
    write(HERE / "nn_layers.jsonl", interleave(NN, 10, (2, 8), 2),
          "transformer layer (2048 tokens, d=1024, ff=4096, 1 attention head 512x64), "
          "LM head, ResNet conv-as-GEMM (im2col)")
    write(HERE / "small_batched.jsonl", interleave(SMALL, 16, (4, 16), 3),
          "small products issued in batches (one call per product)")
    drift = (interleave(DRIFT, 5, (3, 8), 4) + [{"phase": "load_on"}]
             + interleave(DRIFT, 5, (3, 8), 5) + [{"phase": "load_off"}]
             + interleave(DRIFT, 4, (3, 8), 6))
    write(HERE / "drift_load.jsonl", drift,
          "drift: quiet, then a second process loads the device (load_on..load_off), then quiet")
    write(HERE / "quiet_tuned.jsonl", interleave(TUNED, 12, (3, 8), 7),
          "quiet trace of the shapes the tables are tuned for (1024, 2048, 4096 squares)")

    # ---- tiny versions for PoCL tests (sizes 64-192, all multiples of 4: one layout) -----
    tiny = [call("t64", 64, 64, 64), call("t128", 128, 128, 128), call("t192x64", 192, 64, 128),
            call("t64x192", 64, 192, 96), call("t160", 160, 160, 160)]
    write(HERE / "tiny" / "mixed_tiny.jsonl", interleave(tiny, 6, (3, 6), 8),
          "tiny mixed trace for PoCL tests")
    td = tiny[:3]
    write(HERE / "tiny" / "drift_tiny.jsonl",
          interleave(td, 3, 4, 9) + [{"phase": "load_on"}] + interleave(td, 3, 4, 10)
          + [{"phase": "load_off"}] + interleave(td, 2, 4, 11),
          "tiny drift trace for PoCL tests (load phases)")


if __name__ == "__main__":
    main()
