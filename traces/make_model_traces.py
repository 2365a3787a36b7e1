"""Writes the model-workload traces of `clgemm bench --suite model` (deterministic; rerun to
regenerate):

    python traces/make_model_traces.py

Each product of one layer (or block) of a public model, from its published dimensions, as a
framework issues it one call at a time: PyTorch's Linear computes y = x W^T (B stored out x in,
trans_b), its weight gradient x^T dy (trans_a); attention runs per (sequence, head); a CNN's
convolutions as im2col GEMMs (M = batch x output pixels, N = output channels, K = kernel
pixels x input channels). `name` is "<class>.<product>": the class groups the report.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def call(name, m, n, k, ta=False, tb=False, repeat=1, batch=1):
    out = {"name": name, "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb, "repeat": repeat}
    if batch > 1:  # one batched call, as frameworks make attention's per-head products
        out["batch"] = batch
    return out


def linear(cls, name, tokens, d_in, d_out, backward=False):
    """y = x W^T; with backward, dx = dy W and dW = dy^T x."""
    out = [call(f"{cls}.{name}", tokens, d_out, d_in, tb=True)]
    if backward:
        out += [call(f"{cls}-bwd.{name}.dx", tokens, d_in, d_out),
                call(f"{cls}-bwd.{name}.dw", d_out, d_in, tokens, ta=True)]
    return out


def transformer_block(tokens, seq, d, ff, heads, backward):
    """BERT-style encoder block: fused QKV, attention (one batched product over every
    sequence and head, as torch.matmul on (batch, heads, seq, hd) tensors makes it),
    output projection, MLP."""
    hd = d // heads
    per = (tokens // seq) * heads  # (sequence, head) pairs
    out = linear("proj", "qkv", tokens, d, 3 * d, backward)
    out += [call("attn.scores", seq, seq, hd, tb=True, batch=per),
            call("attn.context", seq, hd, seq, batch=per)]
    if backward:
        out += [call("attn-bwd.dprobs", seq, seq, hd, tb=True, batch=per),
                call("attn-bwd.dv", seq, hd, seq, ta=True, batch=per),
                call("attn-bwd.dq", seq, hd, seq, batch=per),
                call("attn-bwd.dk", seq, hd, seq, ta=True, batch=per)]
    out += linear("proj", "out", tokens, d, d, backward)
    out += linear("mlp", "up", tokens, d, ff, backward)
    out += linear("mlp", "down", tokens, ff, d, backward)
    return out


def llama_layer(m, d, ff, heads, kv_heads, context, vocab):
    """One decoder layer of a LLaMA-style model for m new tokens over `context` cached ones,
    and the LM head: q/k/v/o projections, attention (one batched product over the heads),
    SwiGLU MLP."""
    hd = d // heads
    kv = kv_heads * hd
    cls = "decode" if m <= 16 else "prefill"
    out = [call(f"{cls}.q", m, d, d, tb=True), call(f"{cls}.k", m, kv, d, tb=True),
           call(f"{cls}.v", m, kv, d, tb=True),
           call(f"{cls}-attn.scores", m, context, hd, tb=True, batch=heads),
           call(f"{cls}-attn.context", m, hd, context, batch=heads),
           call(f"{cls}.o", m, d, d, tb=True),
           call(f"{cls}.gate", m, ff, d, tb=True), call(f"{cls}.up", m, ff, d, tb=True),
           call(f"{cls}.down", m, d, ff, tb=True),
           call(f"{cls}.lm_head", m, vocab, d, tb=True)]
    return out


def resnet50(batch):
    """ResNet-50's convolutions (one bottleneck shape per stage, repeated as the stage
    repeats it) and its classifier, NHWC im2col."""
    out = [call("conv.stem7x7", batch * 112 * 112, 64, 7 * 7 * 3)]
    for hw, c, blocks in ((56, 64, 3), (28, 128, 4), (14, 256, 6), (7, 512, 3)):
        m = batch * hw * hw
        out += [call(f"conv.{hw}.reduce1x1", m, c, 4 * c, repeat=blocks),
                call(f"conv.{hw}.3x3", m, c, 9 * c, repeat=blocks),
                call(f"conv.{hw}.expand1x1", m, 4 * c, c, repeat=blocks)]
    out.append(call("fc.classifier", batch, 1000, 2048, tb=True))
    return out


# Published dimensions: BERT-base (d 768, 12 heads, MLP 3072); LLaMA-7B (d 4096, 32 heads,
# MLP 11008, vocabulary 32000); TinyLlama-1.1B (d 2048, 32 heads, 4 KV heads, MLP 5632,
# vocabulary 32000); ResNet-50 (He et al. 2016).
TRACES = {
    "models/bert-base-train.jsonl": (
        "BERT-base encoder block, 2 sequences of 512 tokens, forward and backward",
        transformer_block(1024, 512, 768, 3072, 12, backward=True)),
    "models/llama-7b-decode.jsonl": (
        "LLaMA-7B decoder layer + LM head, decode: 1 and 16 new tokens over a 1024-token cache",
        llama_layer(1, 4096, 11008, 32, 32, 1024, 32000)
        + llama_layer(16, 4096, 11008, 32, 32, 1024, 32000)),
    "models/llama-7b-prefill.jsonl": (
        "LLaMA-7B decoder layer + LM head, prefill of 512 tokens",
        llama_layer(512, 4096, 11008, 32, 32, 512, 32000)),
    "models/tinyllama-1.1b.jsonl": (
        "TinyLlama-1.1B decoder layer + LM head: decode (1 and 16 tokens over 1024) and "
        "prefill (512 tokens)",
        llama_layer(1, 2048, 5632, 32, 4, 1024, 32000)
        + llama_layer(16, 2048, 5632, 32, 4, 1024, 32000)
        + llama_layer(512, 2048, 5632, 32, 4, 512, 32000)),
    "models/resnet50-im2col.jsonl": (
        "ResNet-50 convolutions as im2col GEMMs and the classifier, batch 32",
        resnet50(32)),
    # The same structure at sizes a 2-core CPU runs in seconds (CI, the CPU device).
    "tiny/model_tiny.jsonl": (
        "tiny model trace for CPU tests: a transformer block forward and backward, decode, "
        "and im2col convolutions at small sizes",
        transformer_block(96, 48, 40, 72, 2, backward=True)
        + llama_layer(1, 64, 96, 4, 2, 40, 300)[:7]
        + [call("conv.3x3", 2 * 9 * 9, 24, 9 * 8), call("conv.1x1", 2 * 9 * 9, 32, 24)]),
}


def main() -> None:
    for rel, (title, calls) in TRACES.items():
        path = HERE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# {title} (traces/make_model_traces.py)"] + [json.dumps(c) for c in calls]
        path.write_text("\n".join(lines) + "\n")
        print(f"wrote {path} ({len(calls)} products)")


if __name__ == "__main__":
    main()
