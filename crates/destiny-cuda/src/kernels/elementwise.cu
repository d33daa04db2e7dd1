// Element-wise operations, column reductions, dropout and the sparseness penalty.

extern "C" __global__ void fill(float* x, unsigned int n, float value) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = value;
}

extern "C" __global__ void axpy(unsigned int n, float alpha, const float* x, float* y) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] += alpha * x[i];
}

// Column sums of a rows x cols matrix: out[c] += alpha * sum_r f(x[r, c], y[r, c]) with
// f = x (COLUMN_SUMS_SUM), x * x (COLUMN_SUMS_SQUARES) or [x <= 0] x * y (COLUMN_SUMS_SLOPE,
// PReLU slopes). Blocks of 32 columns x 8 row lanes, each block over a band of rows, partial
// sums added atomically: enough parallel work for a batch of 256 rows (a thread per column
// would wait on 256 dependent loads).
#define COLUMN_BAND 64
extern "C" __global__ void column_sums(unsigned int rows, unsigned int cols, const float* x, const float* y, int mode, float alpha, float* out) {
    __shared__ float partial[8][33];
    unsigned int c = blockIdx.x * 32 + (threadIdx.x & 31);
    unsigned int lane = threadIdx.x >> 5;
    unsigned int first = blockIdx.y * COLUMN_BAND, last = min(rows, first + COLUMN_BAND);
    float sum = 0.0f;
    if (c < cols) {
        for (unsigned int r = first + lane; r < last; r += 8) {
            unsigned long long i = (unsigned long long)r * cols + c;
            float v = x[i];
            sum += mode == COLUMN_SUMS_SUM ? v : (mode == COLUMN_SUMS_SQUARES ? v * v : (v > 0.0f ? 0.0f : v * y[i]));
        }
    }
    partial[lane][threadIdx.x & 31] = sum;
    __syncthreads();
    if (lane == 0 && c < cols) {
        float total = 0.0f;
        for (int l = 0; l < 8; ++l) total += partial[l][threadIdx.x];
        atomicAdd(&out[c], alpha * total);
    }
}

// Dropout over rows x cols, the columns offset.. of a matrix total wide: the mask is drawn
// by the index in the whole matrix, so that a layer split across GPUs drops what it would whole.
extern "C" __global__ void dropout(unsigned int n, unsigned int cols, unsigned long long offset, unsigned long long total, float p, unsigned long long seed, float* x) {
    float keep = 1.0f / (1.0f - p);
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned long long whole = (unsigned long long)(i / cols) * total + offset + i % cols;
        x[i] = uniform(seed, whole) < p ? 0.0f : x[i] * keep;
    }
}

// dst[to + r * to_stride + c] (+)= src[from + r * from_stride + c] over rows x cols.
extern "C" __global__ void copy_matrix(unsigned int n, unsigned int cols, const float* src, unsigned long long from, unsigned long long from_stride, float* dst, unsigned long long to, unsigned long long to_stride, int accumulate) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned long long r = i / cols, c = i % cols;
        float v = src[from + r * from_stride + c];
        float* target = dst + to + r * to_stride + c;
        *target = accumulate ? *target + v : v;
    }
}

// The sparseness penalty from the column means (computed by column_sums): adds
// beta * (-p / rho + (1 - p) / (1 - rho)) to every delta of the column.
extern "C" __global__ void sparseness_gradient(unsigned int n, unsigned int cols, const float* means, float p, float beta, float* delta) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float rho = fminf(fmaxf(means[i % cols], 1e-7f), 1.0f - 1e-7f);
        delta[i] += beta * (-p / rho + (1.0f - p) / (1.0f - rho));
    }
}

// rows * beta * sum_c KL(p || rho_c) added to the loss; one block.
extern "C" __global__ void sparseness_loss(unsigned int rows, unsigned int cols, const float* means, float p, float beta, float* loss) {
    float kl = 0.0f;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
        float rho = fminf(fmaxf(means[c], 1e-7f), 1.0f - 1e-7f);
        if (p > 0.0f) kl += p * logf(p / rho);
        if (p < 1.0f) kl += (1.0f - p) * logf((1.0f - p) / (1.0f - rho));
    }
    float total = block_sum(kl);
    if (threadIdx.x == 0) atomicAdd(loss, (float)rows * beta * total);
}

// Scales column c of rows x cols w by limit / norm[c] where the norm exceeds the limit
// (norms hold squared sums from column_sums).
extern "C" __global__ void scale_long_columns(unsigned int n, unsigned int cols, const float* squares, float limit, float* w) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float norm = sqrtf(squares[i % cols]);
        if (norm > limit) w[i] *= limit / norm;
    }
}
