// Products with a sparse batch (CSR: offsets, indices, and values, null when all ones).

// out = beta * out + x * w, w of m x n: each block holds one row and a slice of columns,
// summing only the weight rows the sample touches (coalesced over the columns).
extern "C" __global__ void sparse_matmul(unsigned int n, const unsigned int* offsets, const unsigned int* indices,
                                         const float* values, const float* w, float beta, float* out) {
    unsigned int row = blockIdx.x;
    unsigned int j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float sum = 0.0f;
    for (unsigned int e = offsets[row]; e < offsets[row + 1]; ++e)
        sum += (values ? values[e] : 1.0f) * w[(unsigned long long)indices[e] * n + j];
    unsigned long long o = (unsigned long long)row * n + j;
    out[o] = beta == 0.0f ? sum : beta * out[o] + sum;
}

// grad += alpha * x^T * delta: only the rows of grad the batch touches change; samples
// sharing an item add into its row atomically.
extern "C" __global__ void sparse_transpose_matmul(unsigned int n, const unsigned int* offsets, const unsigned int* indices,
                                                   const float* values, const float* delta, float alpha, float* grad) {
    unsigned int row = blockIdx.x;
    unsigned int j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float d = alpha * delta[(unsigned long long)row * n + j];
    for (unsigned int e = offsets[row]; e < offsets[row + 1]; ++e)
        atomicAdd(&grad[(unsigned long long)indices[e] * n + j], (values ? values[e] : 1.0f) * d);
}

// Gathers a batch from a dataset's entries resident on the device, one block per row: row r
// is the offsets[r + 1] - offsets[r] entries from sources[r] on. values (null: all ones);
// with p > 0, entry e is zeroed when uniform(seed, e) < p and the others scaled by
// 1 / (1 - p), as destiny_core's gather does. out_values is null when there are neither.
extern "C" __global__ void gather_rows(const unsigned int* offsets, const unsigned long long* sources,
                                       const unsigned int* indices, const float* values, float p,
                                       unsigned long long seed, unsigned int* out_indices, float* out_values) {
    unsigned int first = offsets[blockIdx.x], len = offsets[blockIdx.x + 1] - first;
    unsigned long long source = sources[blockIdx.x];
    float scale = 1.0f / (1.0f - p);
    for (unsigned int k = threadIdx.x; k < len; k += blockDim.x) {
        unsigned int e = first + k;
        out_indices[e] = indices[source + k];
        if (out_values) {
            float v = values ? values[source + k] : 1.0f;
            out_values[e] = p > 0.0f ? (uniform(seed, e) < p ? 0.0f : scale * v) : v;
        }
    }
}
