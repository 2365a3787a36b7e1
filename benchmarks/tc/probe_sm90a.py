"""Can NVIDIA's OpenCL run Hopper-only (sm_90a) instructions such as wgmma?

Its compiler targets sm_90, where `wgmma` is refused; but a program can be created from a
binary, and the binary of an NVIDIA OpenCL program is PTX text. This probe compiles a tiny
kernel whose inline assembly leaves a marker comment, replaces the marker with
`wgmma.fence.sync.aligned;` (sm_90a only), and builds the result twice from PTX: with the
target raised to sm_90a (the question) and left at sm_90 (the control, which must fail if the
driver really compiles the PTX it is given). Prints one JSON line per build.

    source .carry/gpu-env.sh; PYTHONPATH=src CLGEMM_DEVICE=NVIDIA python3 benchmarks/tc/probe_sm90a.py
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyopencl as cl

SOURCE = """__kernel void probe(__global float* x) {
  asm volatile("// CLGEMM_MARKER" ::: "memory");
  x[get_global_id(0)] = 1.0f;
}"""


def main() -> None:
    from clgemm.runtime import get_runtime

    rt = get_runtime()
    ptx = cl.Program(rt.context, SOURCE).build().binaries[0].rstrip(b"\x00").decode()
    assert "CLGEMM_MARKER" in ptx, "the marker did not survive into the PTX"
    body = ptx.replace("// CLGEMM_MARKER", "wgmma.fence.sync.aligned;")
    for target in ("sm_90a", "sm_90"):
        text = re.sub(r"\.target sm_90\b", f".target {target}", body)
        result = {"target": target, "built": False}
        try:
            prog = cl.Program(rt.context, [rt.cl_device], [text.encode() + b"\x00"]).build()
            result["built"] = True
            x = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, 4 * 128)
            prog.probe(rt.queue, (128,), (128,), x)
            out = np.zeros(128, np.float32)
            cl.enqueue_copy(rt.queue, out, x)
            result["ran"] = bool((out == 1.0).all())
        except cl.Error as exc:
            result["error"] = str(exc)[:600]
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
