"""The migration report's written sections: what is not measured here (the NVIDIA row the lead
fills from a GPU run, and ROCm/AMD on paper). Kept apart from migration.py, which only turns
artifacts into tables."""

GPU_PLACEHOLDER = (
    "No NVIDIA pipeline record yet: this section gives way to NVIDIA rows in every table above "
    "once records/nvidia-h100/<date>-pipeline (or nvidia-h200) exists. The H100's table is "
    "shipped from its tuning campaign, so the GPU runs stage 2 only. Locally `mkdir -p .carry "
    "&& cp -r ../shared/device/. .carry/`, then on the GPU machine (carry .carry), from the "
    "repository root: `source .carry/gpu-env.sh && POCL_DEVICES=cuda python3 -c 'import "
    "pyopencl as cl; print([(p.name, [d.name for d in p.get_devices()]) for p in "
    "cl.get_platforms()])'; SUSTAINED=10 IMPL=nvidia bash benchmarks/impls/bench.sh && "
    "IMPL=nvidia bash benchmarks/impls/record.sh && cp -r records/nvidia-h*/*-pipeline "
    "out/impls/nvidia $OUT/`; commit the record folder, then `clgemm report --migration -o "
    "docs --name migration`. Where the first command lists a PoCL CUDA device (the PyPI "
    "pyopencl wheel's PoCL has none), `IMPL=pocl-cuda bash benchmarks/impls/tune.sh && "
    "SUSTAINED=10 IMPL=pocl-cuda bash benchmarks/impls/bench.sh && IMPL=pocl-cuda bash "
    "benchmarks/impls/record.sh`, then the NVIDIA stage again so each carries the other's "
    "table (the cost of moving a table between NVIDIA's OpenCL and PoCL-CUDA)."
)

ROCM_ON_PAPER = [
    "Nothing here ran on an AMD GPU: this is what each part of clgemm would need there, and the "
    "check that would prove it. OpenCL on ROCm (the `rocm-opencl` runtime, platform 'AMD "
    "Accelerated Parallel Processing') compiles OpenCL C through the same LLVM AMDGPU backend "
    "as HIP, so the float32 family's generated kernels need no new form.",
    "Float32 family. A wavefront is 64 work-items (32 on RDNA in wave32 mode): the schedule "
    "space's work-group shapes (wg_m x wg_n) should be multiples of 64 on CDNA, and `SearchSpace` "
    "should read the wavefront width from `CL_DEVICE_WAVEFRONT_WIDTH_AMD` (cl_amd_device_"
    "attribute_query) as it reads the device limits today. Local memory is the LDS: 64 KiB per "
    "compute unit on CDNA (MI200/MI300), with 32 banks of 4 bytes, so `local_pad` keeps its "
    "meaning; staging A and B (stage_a, stage_b, double_buffer) is the form that pays there, "
    "the direct (CPU) form does not. Check: `clgemm tune --size 2048` then `distill` on the "
    "card, and `clgemm bench --suite kpi --baselines clblast` beside CLBlast's tuned AMD "
    "parameters and rocBLAS (a `rocblas` peer beside the `cublas` one): the tuned table at "
    "least at CLBlast's figure.",
    "Table fallback. An AMD GPU without a table falls back by vendor and type (canonical "
    "vendor 'amd', type GPU): with no AMD GPU table shipped it falls to the first GPU table, "
    "the H100's, whose schedules assume 32-wide warps and 228 KiB of shared memory; the "
    "search space drops those that exceed the LDS, and the built-in DEFAULT_GPU remains an "
    "arm. Check: the lookup test with a fake 'gfx90a' description (tests/test_table_fallback.py) "
    "and a KPI run comparing the fallback with a tuned table (the 'moving a table' section).",
    "Lanes. The tensor-core lanes (TF32, 3xTF32, wgmma, the Ozaki int8 lane) are inline PTX "
    "(`mma.sync`, `wgmma`), which only NVIDIA's OpenCL compiles: on AMD the probe "
    "(`probe_inline_ptx`) answers no and those lanes are absent, as they are on every CPU "
    "above. Their AMD counterpart is MFMA (v_mfma_f32_32x32x8f16, v_mfma_f32_32x32x2f32, "
    "v_mfma_i32_32x32x8i8 on CDNA; xf32 on MI300) reached from OpenCL C only through inline "
    "GCN assembly (`__asm__` with AMDGPU register constraints) or the "
    "`__builtin_amdgcn_mfma_*` builtins, which the ROCm OpenCL compiler accepts. A lane would "
    "need: a new kernel generator (MFMA tiles of 32x32 or 16x16 per wavefront, accumulators "
    "in AccVGPRs), a probe like the tensor-core probe (one product against float64 with "
    "`rel_error <= 1e-2` for xf32/bf16 inputs), and the 3-term split for an exact lane, passed "
    "through `clgemm gate` as the 3xTF32 lane was. The small-rows (gemv) lane, split-K, the "
    "online selector and the approximate methods are OpenCL C and carry over.",
    "Guards. ABFT's checksums accumulate in double where the device has cl_khr_fp64 (every "
    "CDNA card does, at full or half rate), so the guard's thresholds calibrated on the H100 "
    "apply after `clgemm abft-calibrate` on the card. Check: the guard's fault campaign "
    "(`clgemm abft-campaign`, injected faults) detects at the H100's rate with no false alarm on "
    "clean products.",
    "Compile cost. ROCm compiles OpenCL C to code objects through LLVM in-process (seconds "
    "cold) and caches binaries; clgemm's own binary cache serves the warm path. Check: the KPI "
    "artifact's build cost (cold and warm) within the gate's 30 s / 2 s bounds.",
]
