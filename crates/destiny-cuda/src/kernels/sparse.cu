// Products with a sparse batch (CSR: offsets, indices, and values, null when all ones).

// Both products give each sample one block per 128 output columns: each lane takes four
// adjacent columns (one 16-byte load when n is a multiple of 4) and the block's warps (up to
// MAX_SPARSE_WARPS) split the sample's entries, so that the longest rows of a batch, which
// set its time, keep many loads in flight.
#define MAX_SPARSE_WARPS 16

// Four columns from j on, as far as n reaches.
__device__ __forceinline__ float4 load4(const float* p, unsigned int j, unsigned int n, bool vector) {
    if (vector) return *(const float4*)(p + j);
    return make_float4(p[j], j + 1 < n ? p[j + 1] : 0.0f, j + 2 < n ? p[j + 2] : 0.0f, j + 3 < n ? p[j + 3] : 0.0f);
}

// out = beta * out + x * w, w of m x n: sums only the weight rows the sample touches.
extern "C" __global__ void sparse_matmul(unsigned int n, const unsigned int* offsets, const unsigned int* indices,
                                         const float* values, const float* w, float beta, float* out) {
    __shared__ float4 partial[MAX_SPARSE_WARPS][32];
    unsigned int warps = blockDim.x >> 5;
    unsigned int row = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned int j = blockIdx.y * 128 + lane * 4;
    bool vector = (n & 3) == 0;
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (j < n) {
#pragma unroll 4
        for (unsigned int e = offsets[row] + warp; e < offsets[row + 1]; e += warps) {
            float v = values ? values[e] : 1.0f;
            float4 x = load4(w + (unsigned long long)indices[e] * n, j, n, vector);
            sum.x += v * x.x; sum.y += v * x.y; sum.z += v * x.z; sum.w += v * x.w;
        }
    }
    partial[warp][lane] = sum;
    __syncthreads();
    if (warp != 0 || j >= n) return;
    float total[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (unsigned int p = 0; p < warps; ++p) {
        total[0] += partial[p][lane].x; total[1] += partial[p][lane].y;
        total[2] += partial[p][lane].z; total[3] += partial[p][lane].w;
    }
    float* o = out + (unsigned long long)row * n + j;
    for (unsigned int i = 0; i < 4 && j + i < n; ++i) o[i] = beta == 0.0f ? total[i] : beta * o[i] + total[i];
}

// grad += alpha * x^T * delta: only the rows of grad the batch touches change; samples
// sharing an item add into its row atomically (four columns at a time when n allows).
extern "C" __global__ void sparse_transpose_matmul(unsigned int n, const unsigned int* offsets, const unsigned int* indices,
                                                   const float* values, const float* delta, float alpha, float* grad) {
    unsigned int row = blockIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    unsigned int j = blockIdx.y * 128 + lane * 4;
    if (j >= n) return;
    bool vector = (n & 3) == 0;
    float4 d = load4(delta + (unsigned long long)row * n, j, n, vector);
    d.x *= alpha; d.y *= alpha; d.z *= alpha; d.w *= alpha;
    for (unsigned int e = offsets[row] + warp; e < offsets[row + 1]; e += warps) {
        float v = values ? values[e] : 1.0f;
        float* g = grad + (unsigned long long)indices[e] * n + j;
        if (vector) {
            atomicAdd((float4*)g, make_float4(v * d.x, v * d.y, v * d.z, v * d.w));
        } else {
            atomicAdd(g, v * d.x);
            if (j + 1 < n) atomicAdd(g + 1, v * d.y);
            if (j + 2 < n) atomicAdd(g + 2, v * d.z);
            if (j + 3 < n) atomicAdd(g + 3, v * d.w);
        }
    }
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
