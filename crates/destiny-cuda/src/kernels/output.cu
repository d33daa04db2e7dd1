// The output layer, fused: bias, activation, error, loss and dE/dz in one pass over the
// outputs, then a small pass over the stored entries of a sparse target; neither the
// activations nor a dense target are stored. Mirrors destiny_core::math::error_function.
// Errors: ErrorCode (generated from codes.rs).
// The loss takes the fast hardware logarithm: it is summed over every output unit of every
// batch, where the exact one would cost more than the rest of the pass, and it only reports.

struct Margins { float one_target, zero_target, one_scale, zero_scale; };

__device__ __forceinline__ float clamp_output(float a) { return fminf(fmaxf(a, 1e-7f), 1.0f - 1e-7f); }
__device__ __forceinline__ float label(float t) { return t > 0.0f ? 1.0f : -1.0f; }

__device__ float unit_error(int error, Margins m, float a, float t) {
    switch (error) {
    case ERROR_L1: return fabsf(a - t);
    case ERROR_L2: return 0.5f * (a - t) * (a - t);
    case ERROR_CROSS_ENTROPY: return -((t != 0.0f ? t * __logf(clamp_output(a)) : 0.0f) + (t != 1.0f ? (1.0f - t) * __logf(1.0f - clamp_output(a)) : 0.0f));
    case ERROR_SCALED_MARGINAL_CROSS_ENTROPY: {
        float one = (a < m.one_target && t != 0.0f) ? -m.one_scale * t * __logf(clamp_output(a)) : 0.0f;
        float zero = (a > m.zero_target && t != 1.0f) ? -m.zero_scale * (1.0f - t) * __logf(1.0f - clamp_output(a)) : 0.0f;
        return one + zero;
    }
    case ERROR_DATA_SCALED_MARGINAL_CROSS_ENTROPY:
        if (t > 0.0f) return a < m.one_target ? -m.one_scale * t * __logf(clamp_output(a)) : 0.0f;
        return a > m.zero_target ? -m.zero_scale * __logf(1.0f - clamp_output(a)) : 0.0f;
    case ERROR_HINGE: return fmaxf(1.0f - label(t) * a, 0.0f);
    default: { float margin = fmaxf(1.0f - label(t) * a, 0.0f); return margin * margin; } // ERROR_L2_HINGE
    }
}

// dE/da.
__device__ float unit_gradient(int error, Margins m, float a, float t) {
    switch (error) {
    case ERROR_L1: return a > t ? 1.0f : (a < t ? -1.0f : 0.0f);
    case ERROR_L2: return a - t;
    case ERROR_CROSS_ENTROPY: { float c = clamp_output(a); return (c - t) / (c * (1.0f - c)); }
    case ERROR_SCALED_MARGINAL_CROSS_ENTROPY: {
        float one = a < m.one_target ? -m.one_scale * t / clamp_output(a) : 0.0f;
        float zero = a > m.zero_target ? m.zero_scale * (1.0f - t) / (1.0f - clamp_output(a)) : 0.0f;
        return one + zero;
    }
    case ERROR_DATA_SCALED_MARGINAL_CROSS_ENTROPY:
        if (t > 0.0f) return a < m.one_target ? -m.one_scale * t / clamp_output(a) : 0.0f;
        return a > m.zero_target ? m.zero_scale / (1.0f - clamp_output(a)) : 0.0f;
    case ERROR_HINGE: return 1.0f - label(t) * a > 0.0f ? -label(t) : 0.0f;
    default: return -2.0f * label(t) * fmaxf(1.0f - label(t) * a, 0.0f); // ERROR_L2_HINGE
    }
}

// dE/dz of a sigmoid unit with a cross entropy.
__device__ float fused_sigmoid_delta(int error, Margins m, float a, float t) {
    switch (error) {
    case ERROR_CROSS_ENTROPY: return a - t;
    case ERROR_SCALED_MARGINAL_CROSS_ENTROPY: {
        float one = a < m.one_target ? m.one_scale * t * (a - 1.0f) : 0.0f;
        float zero = a > m.zero_target ? m.zero_scale * (1.0f - t) * a : 0.0f;
        return one + zero;
    }
    default: // ERROR_DATA_SCALED_MARGINAL_CROSS_ENTROPY
        if (t > 0.0f) return a < m.one_target ? m.one_scale * t * (a - 1.0f) : 0.0f;
        return a > m.zero_target ? m.zero_scale * a : 0.0f;
    }
}

// The output unit, as codes.rs lays it out. form OUTPUT_FUSED_SIGMOID: sigmoid with a cross
// entropy, differentiated together; OUTPUT_CHAIN: the error's gradient times the activation's
// derivative. activation: the element-wise activation applied in the pass, or
// ACTIVATION_PRECOMPUTED (row-wise activations, whose derivative is applied afterwards).
// boost_one, boost_zero: DeltaBoost's weights of the error (and delta) of units whose target is
// non-zero and of the others.
struct OutputUnit { int form, error, activation; float p1, p2; Margins m; float boost_one, boost_zero; };

__device__ __forceinline__ float unit_delta(const OutputUnit& u, float z, float a, float t) {
    if (u.form == OUTPUT_FUSED_SIGMOID) return fused_sigmoid_delta(u.error, u.m, a, t);
    float g = unit_gradient(u.error, u.m, a, t);
    // `>`, not `!=`: every activation's code is above it, and `!=` compiles to a slower switch.
    return u.activation > ACTIVATION_PRECOMPUTED ? g * act_derivative(u.activation, z, a, u.p1, u.p2, 0.0f) : g;
}

// One block per row. z: the products (biased already when `a` is given); bias, slope, a,
// target (dense) and the sparse target (offsets, indices, values) are optional (null).
extern "C" __global__ void output_delta(unsigned int cols, OutputUnit u, const float* z, const float* bias,
                                        const float* slope, const float* a, const float* target,
                                        const unsigned int* offsets, const unsigned int* indices,
                                        const float* values, unsigned int first_column, float* delta, float* loss) {
    unsigned long long base = (unsigned long long)blockIdx.x * cols;
    const float* zr = z + base;
    const float* ar = a ? a + base : nullptr;
    const float* tr = target ? target + base : nullptr;
    float* dr = delta + base;
    float sum = 0.0f;
    // (z + bias, f(z + bias)) of column c.
    auto unit_input = [&](unsigned int c, float zc, float& ac) {
        zc += bias ? bias[c] : 0.0f;
        ac = ar ? ar[c] : act_forward(u.activation, zc, u.p1, u.p2, slope ? slope[c] : 0.0f);
        return zc;
    };
    auto unit = [&](unsigned int c, float zc, float t) {
        float ac;
        zc = unit_input(c, zc, ac);
        float w = t != 0.0f ? u.boost_one : u.boost_zero;
        sum += w * unit_error(u.error, u.m, ac, t);
        return w * unit_delta(u, zc, ac, t);
    };
    if ((cols & 3) == 0) {
        // Four units per load: rows start 16-byte aligned when cols is a multiple of 4.
        const float4* z4 = (const float4*)zr;
        const float4* t4 = (const float4*)tr;
        float4* d4 = (float4*)dr;
        for (unsigned int q = threadIdx.x; q < cols / 4; q += blockDim.x) {
            float4 zv = z4[q];
            float4 tv = t4 ? t4[q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            unsigned int c = 4 * q;
            d4[q] = make_float4(unit(c, zv.x, tv.x), unit(c + 1, zv.y, tv.y), unit(c + 2, zv.z, tv.z), unit(c + 3, zv.w, tv.w));
        }
    } else {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) dr[c] = unit(c, zr[c], tr ? tr[c] : 0.0f);
    }
    if (offsets) {
        __syncthreads(); // the entries overwrite what the pass above wrote
        for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x) {
            unsigned int c = indices[e] - first_column; // wraps above cols when before the block
            if (c >= cols) continue;
            float t = values ? values[e] : 1.0f;
            float ac;
            float zc = unit_input(c, zr[c], ac);
            dr[c] = u.boost_one * unit_delta(u, zc, ac, t);
            sum += u.boost_one * unit_error(u.error, u.m, ac, t) - u.boost_zero * unit_error(u.error, u.m, ac, 0.0f);
        }
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) atomicAdd(loss, sum);
}

// SoftMax with cross entropy, one block per row, from the products and bias:
// E = -sum w t ln a, dE/dz = a * sum(w t) - w t, with w = boost_one, DeltaBoost's weight of
// non-zero targets (zero targets add nothing). Dense target or sparse entries (optional).
extern "C" __global__ void output_softmax_cross_entropy(unsigned int cols, const float* z, const float* bias,
                                                        const float* target, const unsigned int* offsets,
                                                        const unsigned int* indices, const float* values,
                                                        unsigned int first_column, float boost_one,
                                                        float* delta, float* loss) {
    unsigned long long base = (unsigned long long)blockIdx.x * cols;
    const float* zr = z + base;
    float* dr = delta + base;
    auto biased = [&](unsigned int c) { return zr[c] + (bias ? bias[c] : 0.0f); };
    float best = -INFINITY;
    unsigned int where = 0;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x)
        if (biased(c) > best) { best = biased(c); where = c; }
    block_argmax(best, where);
    float total = 0.0f;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) total += __expf(biased(c) - best);
    float inverse = 1.0f / block_sum(total);
    auto activation = [&](unsigned int c) { return __expf(biased(c) - best) * inverse; };
    float target_sum = 0.0f, error = 0.0f;
    if (offsets) {
        for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x) {
            unsigned int c = indices[e] - first_column;
            if (c >= cols) continue;
            float t = boost_one * (values ? values[e] : 1.0f);
            target_sum += t;
            error += -t * logf(clamp_output(activation(c)));
        }
    } else {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
            float t = boost_one * target[base + c];
            target_sum += t;
            error += t != 0.0f ? -t * logf(clamp_output(activation(c))) : 0.0f;
        }
    }
    target_sum = block_sum(target_sum);
    error = block_sum(error);
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x)
        dr[c] = activation(c) * target_sum - (offsets ? 0.0f : boost_one * target[base + c]);
    __syncthreads();
    if (offsets) {
        for (unsigned int e = offsets[blockIdx.x] + threadIdx.x; e < offsets[blockIdx.x + 1]; e += blockDim.x) {
            unsigned int c = indices[e] - first_column;
            if (c < cols) dr[c] -= boost_one * (values ? values[e] : 1.0f);
        }
    }
    if (threadIdx.x == 0) atomicAdd(loss, error);
}
