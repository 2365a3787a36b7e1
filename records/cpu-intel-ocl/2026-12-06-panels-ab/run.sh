# Intel's CPU runtime from PyPI (as .ci/run installs it under /tmp/clgemm-intel-ocl); old =
# 65009a1 (a worktree at /work/wt-old), new = this commit; two rounds, alternating.
INTEL_OCL=/tmp/clgemm-intel-ocl
for round in 1 2; do for tree in old new; do
  src=/work/main/src; [ $tree = old ] && src=/work/wt-old/src
  uptime >> load.txt
  env -u RUSTICL_ENABLE OCL_ICD_VENDORS="$INTEL_OCL/vendors" LD_LIBRARY_PATH="$INTEL_OCL/lib" \
    CLGEMM_DEVICE="intel(r) opencl" PYTHONPATH=$src python3 ab_small.py $tree-$round >> ab.txt 2>/dev/null
done; done
