"""Small OpenCL kernels of the guard's low-rank path: Gaussian draws on the device (split-K
slabs are summed by lanes/splitk.sum_slabs). The checksum kernels of check=True are in
abft_kernels.py."""

from __future__ import annotations

SOURCE = r"""
uint guard_hash(uint x) {
  x ^= x >> 16; x *= 0x7feb352dU; x ^= x >> 15; x *= 0x846ca68bU; x ^= x >> 16;
  return x;
}

// Standard normal variates (counter-based hash + Box-Muller), n of them from a 64-bit seed.
__kernel void guard_randn(const int n, const uint s0, const uint s1, __global float* out,
                          const int out_off)
{
  const int i = get_global_id(0);
  if (2 * i >= n) return;
  const uint h1 = guard_hash(guard_hash((uint)i * 2u + 0x68bc21ebU) ^ s0) ^ guard_hash(s1);
  const uint h2 = guard_hash(guard_hash((uint)i * 2u + 1u) ^ s1 ^ 0x02e5be93U) ^ guard_hash(s0 + 0x9e3779b9U);
  const float u1 = ((float)(h1 >> 8) + 1.0f) * (1.0f / 16777216.0f);
  const float u2 = (float)(h2 >> 8) * (1.0f / 16777216.0f);
  const float rad = sqrt(-2.0f * log(u1));
  const float ang = 6.283185307179586f * u2;
  out[out_off + 2 * i] = rad * cos(ang);
  if (2 * i + 1 < n) out[out_off + 2 * i + 1] = rad * sin(ang);
}
"""
