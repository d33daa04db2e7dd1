// The output layer, fused: error, loss and dE/dz in one pass over the outputs, then a small
// pass over the stored entries of a sparse target; no dense target is built. Mirrors
// destiny_core::math::error_function. Errors: 0 L1, 1 L2, 2 CrossEntropy,
// 3 ScaledMarginalCrossEntropy, 4 DataScaledMarginalCrossEntropy, 5 Hinge, 6 L2Hinge.
// Forms: 0 sigmoid with a cross entropy, 2 chain rule through the activation.

struct Margins { float one_target, zero_target, one_scale, zero_scale; };

__device__ __forceinline__ float clamp_output(float a) { return fminf(fmaxf(a, 1e-7f), 1.0f - 1e-7f); }
__device__ __forceinline__ float label(float t) { return t > 0.0f ? 1.0f : -1.0f; }

__device__ float unit_error(int error, Margins m, float a, float t) {
    switch (error) {
    case 0: return fabsf(a - t);
    case 1: return 0.5f * (a - t) * (a - t);
    case 2: return -((t != 0.0f ? t * logf(clamp_output(a)) : 0.0f) + (t != 1.0f ? (1.0f - t) * logf(1.0f - clamp_output(a)) : 0.0f));
    case 3: {
        float one = (a < m.one_target && t != 0.0f) ? -m.one_scale * t * logf(clamp_output(a)) : 0.0f;
        float zero = (a > m.zero_target && t != 1.0f) ? -m.zero_scale * (1.0f - t) * logf(1.0f - clamp_output(a)) : 0.0f;
        return one + zero;
    }
    case 4:
        if (t > 0.0f) return a < m.one_target ? -m.one_scale * t * logf(clamp_output(a)) : 0.0f;
        return a > m.zero_target ? -m.zero_scale * logf(1.0f - clamp_output(a)) : 0.0f;
    case 5: return fmaxf(1.0f - label(t) * a, 0.0f);
    default: { float margin = fmaxf(1.0f - label(t) * a, 0.0f); return margin * margin; }
    }
}

// dE/da.
__device__ float unit_gradient(int error, Margins m, float a, float t) {
    switch (error) {
    case 0: return a > t ? 1.0f : (a < t ? -1.0f : 0.0f);
    case 1: return a - t;
    case 2: { float c = clamp_output(a); return (c - t) / (c * (1.0f - c)); }
    case 3: {
        float one = a < m.one_target ? -m.one_scale * t / clamp_output(a) : 0.0f;
        float zero = a > m.zero_target ? m.zero_scale * (1.0f - t) / (1.0f - clamp_output(a)) : 0.0f;
        return one + zero;
    }
    case 4:
        if (t > 0.0f) return a < m.one_target ? -m.one_scale * t / clamp_output(a) : 0.0f;
        return a > m.zero_target ? m.zero_scale / (1.0f - clamp_output(a)) : 0.0f;
    case 5: return 1.0f - label(t) * a > 0.0f ? -label(t) : 0.0f;
    default: return -2.0f * label(t) * fmaxf(1.0f - label(t) * a, 0.0f);
    }
}

// dE/dz of a sigmoid unit with a cross entropy.
__device__ float fused_sigmoid_delta(int error, Margins m, float a, float t) {
    switch (error) {
    case 2: return a - t;
    case 3: {
        float one = a < m.one_target ? m.one_scale * t * (a - 1.0f) : 0.0f;
        float zero = a > m.zero_target ? m.zero_scale * (1.0f - t) * a : 0.0f;
        return one + zero;
    }
    default:
        if (t > 0.0f) return a < m.one_target ? m.one_scale * t * (a - 1.0f) : 0.0f;
        return a > m.zero_target ? m.zero_scale * a : 0.0f;
    }
}

// The element-wise activation derivative is applied here when `chain_kind` >= 0 (an
// element-wise activation); row-wise ones are applied afterwards by rowwise_backward.
__device__ __forceinline__ float unit_delta(int form, int error, Margins m, int chain_kind, float p1, float p2, float z, float a, float t) {
    if (form == 0) return fused_sigmoid_delta(error, m, a, t);
    float g = unit_gradient(error, m, a, t);
    return chain_kind >= 0 ? g * act_derivative(chain_kind, z, a, p1, p2, 0.0f) : g;
}

extern "C" __global__ void output_dense(unsigned int n, int form, int error, Margins m, int chain_kind, float p1, float p2,
                                        const float* z, const float* a, const float* target, int has_target,
                                        float* delta, float* loss) {
    float sum = 0.0f;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float t = has_target ? target[i] : 0.0f;
        delta[i] = unit_delta(form, error, m, chain_kind, p1, p2, z[i], a[i], t);
        sum += unit_error(error, m, a[i], t);
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) atomicAdd(loss, sum);
}

// Corrects the stored entries of a sparse target, one block per row.
extern "C" __global__ void output_sparse_entries(unsigned int cols, int form, int error, Margins m, int chain_kind, float p1, float p2,
                                                 const float* z, const float* a, const unsigned int* offsets,
                                                 const unsigned int* indices, const float* values, int has_values,
                                                 float* delta, float* loss) {
    unsigned long long base = (unsigned long long)blockIdx.x * cols;
    float sum = 0.0f;
    for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x) {
        unsigned long long i = base + indices[e];
        float t = has_values ? values[e] : 1.0f;
        delta[i] = unit_delta(form, error, m, chain_kind, p1, p2, z[i], a[i], t);
        sum += unit_error(error, m, a[i], t) - unit_error(error, m, a[i], 0.0f);
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) atomicAdd(loss, sum);
}

// SoftMax with cross entropy, one block per row: E = -sum t ln a, dE/dz = a * sum(t) - t.
extern "C" __global__ void output_softmax_cross_entropy(unsigned int cols, const float* a, const float* target, int has_target,
                                                        const unsigned int* offsets, const unsigned int* indices,
                                                        const float* values, int has_values, int sparse,
                                                        float* delta, float* loss) {
    unsigned long long base = (unsigned long long)blockIdx.x * cols;
    float target_sum = 0.0f, error = 0.0f;
    if (sparse) {
        for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x) {
            float t = has_values ? values[e] : 1.0f;
            target_sum += t;
            error += -t * logf(clamp_output(a[base + indices[e]]));
        }
    } else {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
            float t = target[base + c];
            target_sum += t;
            error += t != 0.0f ? -t * logf(clamp_output(a[base + c])) : 0.0f;
        }
    }
    target_sum = block_sum(target_sum);
    error = block_sum(error);
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x)
        delta[base + c] = a[base + c] * target_sum - (sparse ? 0.0f : target[base + c]);
    __syncthreads();
    if (sparse) {
        for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x)
            delta[base + indices[e]] -= has_values ? values[e] : 1.0f;
    }
    if (threadIdx.x == 0) atomicAdd(loss, error);
}
