// Convolutions as matrix products (src/convolution.rs): the input unrolled into columns and
// rolled back, the deltas reordered for the filter gradient, and the channel bias.

// Unrolls `samples` samples from `first` on into the columns of one matrix: row
// c * K + k (input channel, window offset), column s * P + p (sample, output position) holds
// the input that the window at p reads at offset k, zero outside the input. Each sample's
// columns are a matrix of their own, P columns apart, for batched products; together they are
// the whole chunk's, for the filter gradient.
extern "C" __global__ void im2col(Geometry g, unsigned long long first, unsigned int samples, const float* x, float* columns) {
    unsigned int P = positions(g.output), K = positions(g.kernel), Q = positions(g.input);
    unsigned int n = g.input_channels * K * samples * P;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int p = i % P, t = i / P;
        unsigned int s = t % samples;
        t /= samples;
        unsigned int k = t % K, c = t / K;
        int o[3], w[3], at[3];
        coordinates(p, g.output, o);
        coordinates(k, g.kernel, w);
        bool inside = true;
        for (int d = 0; d < 3; ++d) {
            at[d] = o[d] * (int)g.stride[d] - (int)g.padding[d] + w[d];
            inside = inside && at[d] >= 0 && at[d] < (int)g.input[d];
        }
        columns[i] = inside ? x[((first + s) * g.input_channels + c) * Q + at[0] + g.input[0] * (at[1] + g.input[1] * at[2])] : 0.0f;
    }
}

// Rolls the columns of im2col's layout back onto the input, adding to dx: each input unit
// gathers the columns that read it (a gather rather than a scatter, so that no two threads
// write one unit and the sums need no atomics).
extern "C" __global__ void col2im(Geometry g, unsigned long long first, unsigned int samples, const float* columns, float* dx) {
    unsigned int P = positions(g.output), K = positions(g.kernel), Q = positions(g.input);
    unsigned int n = samples * g.input_channels * Q;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int q = i % Q, t = i / Q;
        unsigned int c = t % g.input_channels, s = t / g.input_channels;
        int at[3], lo[3], hi[3];
        coordinates(q, g.input, at);
        for (int d = 0; d < 3; ++d) windows_holding(g, d, at[d], &lo[d], &hi[d]);
        float sum = 0.0f;
        for (int oz = lo[2]; oz <= hi[2]; ++oz) {
            int wz = at[2] + (int)g.padding[2] - oz * (int)g.stride[2];
            for (int oy = lo[1]; oy <= hi[1]; ++oy) {
                int wy = at[1] + (int)g.padding[1] - oy * (int)g.stride[1];
                for (int ox = lo[0]; ox <= hi[0]; ++ox) {
                    int wx = at[0] + (int)g.padding[0] - ox * (int)g.stride[0];
                    unsigned int k = wx + g.kernel[0] * (wy + g.kernel[1] * wz);
                    unsigned int p = ox + g.output[0] * (oy + g.output[1] * oz);
                    sum += columns[((c * K + k) * samples + s) * P + p];
                }
            }
        }
        dx[first * g.input_channels * Q + i] += sum;
    }
}

// Copies `samples` samples from `first` on of [sample][channel][position] into
// [channel][sample][position]: the deltas as the filter gradient's one product over the whole
// chunk reads them.
extern "C" __global__ void channel_major(unsigned long long first, unsigned int samples, unsigned int channels, unsigned int positions, const float* x, float* out) {
    unsigned int n = samples * channels * positions;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int p = i % positions, t = i / positions;
        unsigned int s = t % samples, c = t / samples;
        out[i] = x[((first + s) * channels + c) * positions + p];
    }
}

// z[r][c][p] += bias[c] over n units.
extern "C" __global__ void channel_bias(unsigned int n, unsigned int channels, unsigned int positions, const float* bias, float* z) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        z[i] += bias[(i / positions) % channels];
    }
}

// grad[c] += alpha * the sum of channel c's deltas over every sample and position: one block
// per channel, so that the sum is a deterministic tree.
extern "C" __global__ void channel_bias_gradient(unsigned int rows, unsigned int channels, unsigned int positions, const float* delta, float alpha, float* grad) {
    unsigned int c = blockIdx.x;
    unsigned int n = rows * positions;
    float sum = 0.0f;
    for (unsigned int m = threadIdx.x; m < n; m += blockDim.x) sum += delta[group_value(channels * positions, positions, c, m)];
    sum = block_sum(sum);
    if (threadIdx.x == 0) grad[c] += alpha * sum;
}
