# Source with IMPL=pocl|rusticl|intel (this CPU) or nvidia|pocl-cuda (the GPU machine, after
# its gpu-env.sh): selects one OpenCL implementation for clgemm (CLGEMM_DEVICE plus what the
# ICD loader needs), as .ci/run does, and sets what the pipeline's stages read:
#   TABLE     the implementation's shipped table (file name in src/clgemm/data/tables)
#   REC       its records folder (records/$REC)
#   KIND      CPU or GPU (the untuned default is DEFAULT_CPU or DEFAULT_GPU)
#   SCALE     the KPI suite's --scale (0.5 on this CPU: 700, 1024, 1536); MIDDLE its middle size
#   REPEATS, WARMUP, HOST_REPEATS  the harness's counts
#   TRANSFER  the tables of the other implementations on the same hardware (the migration)
#   PEERS     the model suite's peers; BASELINES the KPI run's
# Intel's runtime: `pip install --prefix $INTEL_OCL intel-opencl-rt intel-cmplr-lib-rt` and an
# .icd file in $INTEL_OCL/vendors naming $INTEL_OCL/lib/libintelocl.so (see .ci/run).
# Rusticl: Debian's mesa-opencl-icd.
INTEL_OCL=${INTEL_OCL:-/tmp/clgemm-intel-ocl}
CPU_TABLES="pthread-amd-epyc.json intel-opencl-amd-epyc.json rusticl-llvmpipe.json"
KIND=CPU; SCALE=0.5; MIDDLE=1024; PEERS=numpy; BASELINES=numpy
REPEATS=10; WARMUP=3; HOST_REPEATS=5
case "${IMPL:?set IMPL=pocl|rusticl|intel|nvidia|pocl-cuda}" in
  pocl)    unset RUSTICL_ENABLE OCL_ICD_VENDORS
           export CLGEMM_DEVICE="Portable Computing Language" POCL_MEMORY_LIMIT=4
           TABLE=pthread-amd-epyc.json; REC=cpu-pocl-amd-epyc ;;
  rusticl) unset OCL_ICD_VENDORS
           export RUSTICL_ENABLE=llvmpipe CLGEMM_DEVICE="rusticl"
           REPEATS=3; WARMUP=1; HOST_REPEATS=1  # llvmpipe runs ~1 GFLOPS: 1536^3 takes seconds
           TABLE=rusticl-llvmpipe.json; REC=cpu-rusticl-llvmpipe ;;
  intel)   unset RUSTICL_ENABLE
           export OCL_ICD_VENDORS="$INTEL_OCL/vendors" CLGEMM_DEVICE="intel(r) opencl"
           export LD_LIBRARY_PATH="$INTEL_OCL/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
           TABLE=intel-opencl-amd-epyc.json; REC=cpu-intel-ocl ;;
  nvidia)  export CLGEMM_DEVICE="nvidia cuda"
           # the H100's table; an H200 (no table of its own) falls back to it
           TABLE=nvidia-h100-80gb-hbm3.json; KIND=GPU; SCALE=1; MIDDLE=2048
           REC=$(PYTHONPATH="$PWD/src" python3 -c "from clgemm.device import get_device as g
print('nvidia-h200' if 'H200' in g().name else 'nvidia-h100')")
           PEERS=torch,numpy; BASELINES=numpy,clblast,cublas; CPU_TABLES="" ;;
  pocl-cuda) export POCL_DEVICES=cuda CLGEMM_DEVICE="portable computing language"
           TABLE=pocl-cuda-h100.json; REC=nvidia-h100-pocl-cuda; KIND=GPU; SCALE=1; MIDDLE=2048
           PEERS=torch,numpy; BASELINES=numpy,clblast,cublas; CPU_TABLES="" ;;
  *) echo "IMPL must be pocl, rusticl, intel, nvidia or pocl-cuda, not $IMPL" >&2; return 2 ;;
esac
TRANSFER=""
for f in $CPU_TABLES; do [ "$f" = "$TABLE" ] || TRANSFER="$TRANSFER $f"; done
# on the GPU: NVIDIA's table on PoCL-CUDA and back, where PoCL has a CUDA device
if [ "$KIND" = GPU ] && [ "$IMPL" = pocl-cuda ]; then TRANSFER=nvidia-h100-80gb-hbm3.json; fi
if [ "$KIND" = GPU ] && [ "$IMPL" = nvidia ] && [ -e src/clgemm/data/tables/pocl-cuda-h100.json ]; then
  TRANSFER=pocl-cuda-h100.json
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
