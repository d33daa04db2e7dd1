// Local response normalisation across channels (src/local_response.rs), cuDNN's and DSSTNE's:
// y_c = x_c / s_c^beta, s_c = k + alpha / n * sum of x_c'^2 over the channels
// c - (n - 1) / 2 ..= c + n / 2 that exist, at the same position.

struct Response {
    float k, alpha, beta;
    unsigned int n;
};

// s_c, `at` pointing to channel 0 of a sample at one position.
__device__ float response_sum(const Response& r, const float* at, unsigned int channels, unsigned int positions, int c) {
    int from = max(c - (int)(r.n - 1) / 2, 0), to = min(c + (int)(r.n / 2), (int)channels - 1);
    float sum = 0.0f;
    for (int i = from; i <= to; ++i) {
        float v = at[i * positions];
        sum += v * v;
    }
    return r.k + r.alpha / (float)r.n * sum;
}

// y (overwritten) over n units.
extern "C" __global__ void local_response_forward(Response r, unsigned int n, unsigned int channels, unsigned int positions, const float* x, float* y) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int c = i / positions % channels;
        const float* at = x + (i / positions / channels * channels) * positions + i % positions;
        y[i] = x[i] * powf(response_sum(r, at, channels, positions, c), -r.beta);
    }
}

// Adds dE/dx to dx over n units: dy_j s_j^-beta - 2 alpha beta / n x_j sum_c dy_c y_c / s_c,
// over the channels c whose windows hold j (c - n / 2 ..= c + (n - 1) / 2).
extern "C" __global__ void local_response_backward(Response r, unsigned int n, unsigned int channels, unsigned int positions, const float* x, const float* y, const float* dy, float* dx) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int j = i / positions % channels;
        unsigned int base = (i / positions / channels * channels) * positions + i % positions;
        int from = max(j - (int)(r.n / 2), 0), to = min(j + (int)(r.n - 1) / 2, (int)channels - 1);
        float sum = 0.0f;
        for (int c = from; c <= to; ++c) {
            unsigned int at = base + c * positions;
            sum += dy[at] * y[at] / response_sum(r, x + base, channels, positions, c);
        }
        float s = response_sum(r, x + base, channels, positions, j);
        dx[i] += dy[i] * powf(s, -r.beta) - 2.0f * r.alpha * r.beta / (float)r.n * x[i] * sum;
    }
}
