// Prepended to every kernel file. Shared device helpers: the counter-based random numbers of destiny_core::backend::random
// (bit for bit), and block-wide reductions.

// NVRTC has no <math.h>.
#define INFINITY __int_as_float(0x7f800000)

__device__ __forceinline__ unsigned long long mix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

__device__ __forceinline__ float uniform(unsigned long long seed, unsigned long long index) {
    return (float)(mix64(seed ^ mix64(index)) >> 40) * (1.0f / 16777216.0f);
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    v = (threadIdx.x < (unsigned)warps) ? partial[lane] : 0.0f;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
        if (lane == 0) partial[0] = v;
    }
    __syncthreads();
    float total = partial[0];
    __syncthreads();
    return total;
}

// Value m of group g among samples of `len` units, each sample holding the groups one after
// another, `inner` units each (a channel's positions; 1 for groups of single units): a
// group's values go sample by sample, and its consecutive values are adjacent units.
__device__ __forceinline__ unsigned int group_value(unsigned int len, unsigned int inner, unsigned int g, unsigned int m) {
    return m / inner * len + g * inner + m % inner;
}
