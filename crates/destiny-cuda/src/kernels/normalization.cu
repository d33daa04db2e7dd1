// Batch normalisation (src/normalization.rs). Samples of `len` units hold the groups one
// after another, `inner` units each (a channel's positions, or 1 when each unit is its own
// group); a group's N = rows * inner values are reduced by one block, in float through a
// tree, so that the sums are deterministic.

// One block per group: the batch's mean and 1 / sqrt(biased variance + epsilon), saved for
// the backward pass, and the running statistics moved towards the batch's with the variance
// unbiased. The variance is the mean squared deviation from the mean found first, not the
// difference of means of squares, which cancels.
extern "C" __global__ void batch_norm_statistics(unsigned int rows, unsigned int len, unsigned int inner, float epsilon, float factor, const float* x, float* running_mean, float* running_variance, float* saved_mean, float* saved_inverse) {
    unsigned int g = blockIdx.x;
    unsigned int n = rows * inner;
    float sum = 0.0f;
    for (unsigned int m = threadIdx.x; m < n; m += blockDim.x) sum += x[group_value(len, inner, g, m)];
    float mean = block_sum(sum) / (float)n;
    float squares = 0.0f;
    for (unsigned int m = threadIdx.x; m < n; m += blockDim.x) {
        float d = x[group_value(len, inner, g, m)] - mean;
        squares += d * d;
    }
    float variance = block_sum(squares) / (float)n;
    if (threadIdx.x == 0) {
        saved_mean[g] = mean;
        saved_inverse[g] = 1.0f / sqrtf(variance + epsilon);
        float unbiased = n > 1 ? variance * (float)n / (float)(n - 1) : variance;
        running_mean[g] = (1.0f - factor) * running_mean[g] + factor * mean;
        running_variance[g] = (1.0f - factor) * running_variance[g] + factor * unbiased;
    }
}

// y = scale * x_hat + shift (overwritten) over n units, x_hat = (x - mean) * inverse, where
// `deviation` holds the inverse deviations, or the variances when `from_variance` (the running
// statistics of inference).
extern "C" __global__ void batch_norm_forward(unsigned int n, unsigned int len, unsigned int inner, const float* x, const float* scale, const float* shift, const float* mean, const float* deviation, int from_variance, float epsilon, float* y) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int g = i % len / inner;
        float inverse = from_variance ? 1.0f / sqrtf(deviation[g] + epsilon) : deviation[g];
        y[i] = scale[g] * ((x[i] - mean[g]) * inverse) + shift[g];
    }
}

// One block per group: sum(dy) and sum(dy * x_hat) into sums[2g] and sums[2g + 1] for
// batch_norm_backward, alpha times them added to the shift's and the scale's gradients.
extern "C" __global__ void batch_norm_gradients(unsigned int rows, unsigned int len, unsigned int inner, const float* x, const float* dy, const float* mean, const float* inverse, float alpha, float* scale_gradient, float* shift_gradient, float* sums) {
    unsigned int g = blockIdx.x;
    unsigned int n = rows * inner;
    float m_g = mean[g], inverse_g = inverse[g];
    float delta = 0.0f, scaled = 0.0f;
    for (unsigned int m = threadIdx.x; m < n; m += blockDim.x) {
        unsigned int i = group_value(len, inner, g, m);
        delta += dy[i];
        scaled += dy[i] * ((x[i] - m_g) * inverse_g);
    }
    delta = block_sum(delta);
    scaled = block_sum(scaled);
    if (threadIdx.x == 0) {
        sums[2 * g] = delta;
        sums[2 * g + 1] = scaled;
        shift_gradient[g] += alpha * delta;
        scale_gradient[g] += alpha * scaled;
    }
}

// dx (overwritten) over n units: scale * inverse / N * (N * dy - sum(dy) - x_hat * sum(dy * x_hat)).
extern "C" __global__ void batch_norm_backward(unsigned int n, unsigned int len, unsigned int inner, float count, const float* x, const float* dy, const float* scale, const float* mean, const float* inverse, const float* sums, float* dx) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int g = i % len / inner;
        float x_hat = (x[i] - mean[g]) * inverse[g];
        dx[i] = scale[g] * inverse[g] / count * (count * dy[i] - sums[2 * g] - x_hat * sums[2 * g + 1]);
    }
}
