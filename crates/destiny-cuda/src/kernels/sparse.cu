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
