// Element-wise operations, column reductions, dropout and the sparseness penalty.

extern "C" __global__ void fill(float* x, unsigned int n, float value) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = value;
}

extern "C" __global__ void axpy(unsigned int n, float alpha, const float* x, float* y) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] += alpha * x[i];
}

extern "C" __global__ void add_bias(unsigned int rows, unsigned int cols, const float* bias, float* out) {
    unsigned long long n = (unsigned long long)rows * cols;
    for (unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] += bias[i % cols];
}

// grad[c] += alpha * sum_r delta[r, c]; one thread per column, rows in order.
extern "C" __global__ void bias_gradient(unsigned int rows, unsigned int cols, const float* delta, float alpha, float* grad) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float sum = 0.0f;
    for (unsigned int r = 0; r < rows; ++r) sum += delta[(unsigned long long)r * cols + c];
    grad[c] += alpha * sum;
}

// grad[c] += alpha * sum_r [z <= 0] z * delta.
extern "C" __global__ void slope_gradient(unsigned int rows, unsigned int cols, const float* z, const float* delta, float alpha, float* grad) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float sum = 0.0f;
    for (unsigned int r = 0; r < rows; ++r) {
        unsigned long long i = (unsigned long long)r * cols + c;
        sum += z[i] > 0.0f ? 0.0f : z[i] * delta[i];
    }
    grad[c] += alpha * sum;
}

extern "C" __global__ void dropout(unsigned int n, float p, unsigned long long seed, float* x) {
    float keep = 1.0f / (1.0f - p);
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] = uniform(seed, i) < p ? 0.0f : x[i] * keep;
}

// One thread per column: its mean activation rho, the penalty's gradient added to every
// row's delta, and rows * beta * KL(p || rho) added to the loss.
extern "C" __global__ void sparseness_penalty(unsigned int rows, unsigned int cols, const float* a, float p, float beta, float* delta, float* loss) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    float kl = 0.0f;
    if (c < cols) {
        float sum = 0.0f;
        for (unsigned int r = 0; r < rows; ++r) sum += a[(unsigned long long)r * cols + c];
        float rho = fminf(fmaxf(sum / rows, 1e-7f), 1.0f - 1e-7f);
        float g = beta * (-p / rho + (1.0f - p) / (1.0f - rho));
        for (unsigned int r = 0; r < rows; ++r) delta[(unsigned long long)r * cols + c] += g;
        if (p > 0.0f) kl += p * logf(p / rho);
        if (p < 1.0f) kl += (1.0f - p) * logf((1.0f - p) / (1.0f - rho));
    }
    float total = block_sum(kl);
    if (threadIdx.x == 0) atomicAdd(loss, (float)rows * beta * total);
}

// Scales each column of rows x cols w whose norm exceeds max_norm down to it.
extern "C" __global__ void max_norm(unsigned int rows, unsigned int cols, float limit, float* w) {
    unsigned int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float squares = 0.0f;
    for (unsigned int r = 0; r < rows; ++r) { float v = w[(unsigned long long)r * cols + c]; squares += v * v; }
    float norm = sqrtf(squares);
    if (norm > limit) {
        float scale = limit / norm;
        for (unsigned int r = 0; r < rows; ++r) w[(unsigned long long)r * cols + c] *= scale;
    }
}
