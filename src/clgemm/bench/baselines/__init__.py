"""Peers measured in the same run: numpy on the CPU, CLBlast (OpenCL, through ctypes), cuBLAS
(through PyTorch). A peer that cannot run here is recorded as absent with the reason."""

BASELINES = ("numpy", "clblast", "cublas")
