"""OpenCL C kernels generated from schedules."""
