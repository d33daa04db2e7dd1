// Activations (act_forward, in activation.cuh) and their derivatives, mirroring
// destiny_core::math::activation.
// Kinds: ActivationCode (generated from codes.rs); SoftMax, ReluMax and LinearMax couple a row.

__device__ __forceinline__ float act_derivative(int kind, float z, float a, float p1, float p2, float slope) {
    switch (kind) {
    case ACTIVATION_SIGMOID: return a * (1.0f - a);
    case ACTIVATION_TANH: return 1.0f - a * a;
    case ACTIVATION_RECTIFIED_LINEAR: return z > 0.0f ? 1.0f : 0.0f;
    case ACTIVATION_LEAKY_RECTIFIED_LINEAR: return z > 0.0f ? 1.0f : p1;
    case ACTIVATION_PARAMETRIC_RECTIFIED_LINEAR: return z > 0.0f ? 1.0f : slope;
    case ACTIVATION_EXPONENTIAL_LINEAR: return z > 0.0f ? 1.0f : a + p1;
    case ACTIVATION_SCALED_EXPONENTIAL_LINEAR: return z > 0.0f ? p2 : a + p2 * p1;
    case ACTIVATION_SOFT_PLUS: return sigmoid(z);
    case ACTIVATION_SOFT_SIGN: { float d = 1.0f + fabsf(z); return 1.0f / (d * d); }
    default: return 1.0f; // ACTIVATION_LINEAR
    }
}

// z += bias (optional), then a = f(z).
extern "C" __global__ void activation_forward(unsigned int n, unsigned int cols, int kind, float p1, float p2,
                                              const float* bias, float* z, const float* slope, float* a) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = z[i];
        if (bias) { v += bias[i % cols]; z[i] = v; }
        a[i] = act_forward(kind, v, p1, p2, slope ? slope[i % cols] : 0.0f);
    }
}

extern "C" __global__ void activation_backward(unsigned int n, unsigned int cols, int kind, float p1, float p2,
                                               const float* z, const float* a, const float* slope, float* delta) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        delta[i] *= act_derivative(kind, z[i], a[i], p1, p2, slope ? slope[i % cols] : 0.0f);
}

// Block-wide maximum of v with the lowest index among equals; every thread gets both.
__device__ __forceinline__ void block_argmax(float& v, unsigned int& index) {
    __shared__ float values[32];
    __shared__ unsigned int indices[32];
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffff, v, o);
        unsigned int oi = __shfl_xor_sync(0xffffffff, index, o);
        if (ov > v || (ov == v && oi < index)) { v = ov; index = oi; }
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    __syncthreads();
    if (lane == 0) { values[warp] = v; indices[warp] = index; }
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? values[lane] : -INFINITY;
        index = lane < warps ? indices[lane] : 0xffffffffu;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffff, v, o);
            unsigned int oi = __shfl_xor_sync(0xffffffff, index, o);
            if (ov > v || (ov == v && oi < index)) { v = ov; index = oi; }
        }
        if (lane == 0) { values[0] = v; indices[0] = index; }
    }
    __syncthreads();
    v = values[0];
    index = indices[0];
    __syncthreads();
}

// Row-wise activations, one block per row, after z += bias (optional).
extern "C" __global__ void rowwise_forward(unsigned int cols, int kind, const float* bias, float* z, float* a) {
    float* zr = z + (unsigned long long)blockIdx.x * cols;
    float* ar = a + (unsigned long long)blockIdx.x * cols;
    if (bias) {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) zr[c] += bias[c];
        __syncthreads();
    }
    float best = kind == ACTIVATION_SOFT_MAX ? -INFINITY : 0.0f;
    unsigned int where = 0;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = kind == ACTIVATION_SOFT_MAX ? zr[c] : (kind == ACTIVATION_RELU_MAX ? fmaxf(zr[c], 0.0f) : fabsf(zr[c]));
        if (v > best) { best = v; where = c; }
    }
    block_argmax(best, where);
    if (kind == ACTIVATION_SOFT_MAX) {
        float sum = 0.0f;
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) { float e = __expf(zr[c] - best); ar[c] = e; sum += e; }
        sum = block_sum(sum);
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) ar[c] /= sum;
    } else {
        float inverse = best > 0.0f ? 1.0f / best : 0.0f;
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x)
            ar[c] = (kind == ACTIVATION_RELU_MAX ? fmaxf(zr[c], 0.0f) : zr[c]) * inverse;
    }
}

// delta (dE/da) to dE/dz for a row-wise activation, one block per row.
extern "C" __global__ void rowwise_backward(unsigned int cols, int kind, const float* z, const float* a, float* delta) {
    unsigned long long base = (unsigned long long)blockIdx.x * cols;
    const float* zr = z + base;
    const float* ar = a + base;
    float* dr = delta + base;
    float dot = 0.0f;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) dot += dr[c] * ar[c];
    dot = block_sum(dot);
    if (kind == ACTIVATION_SOFT_MAX) {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) dr[c] = ar[c] * (dr[c] - dot);
        return;
    }
    bool relu = kind == ACTIVATION_RELU_MAX;
    float best = 0.0f;
    unsigned int where = 0;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = relu ? fmaxf(zr[c], 0.0f) : fabsf(zr[c]);
        if (v > best) { best = v; where = c; }
    }
    block_argmax(best, where);
    if (best <= 0.0f) {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) dr[c] = 0.0f;
        return;
    }
    float inverse = 1.0f / best;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
        float step = relu ? (zr[c] > 0.0f ? 1.0f : 0.0f) : 1.0f;
        float d = dr[c] * step * inverse;
        if (c == where) d -= (zr[where] < 0.0f ? -1.0f : 1.0f) * dot * inverse;
        dr[c] = d;
    }
}
