// Top-K per row, skipping excluded columns: one block per row, a radix select of the K-th
// largest score (four 8-bit passes over order-preserving integer keys), a collection pass,
// and a bitonic sort of the K winners by (score descending, column ascending), as the CPU
// backend orders them. Excluded columns are marked in a shared-memory bitmap.
// Dynamic shared memory: ceil(cols / 32) words of bitmap, then `padded` 64-bit candidates.

__device__ __forceinline__ unsigned int order_key(float s) {
    if (s != s) s = -INFINITY; // NaN ranks with -inf, as on the CPU
    unsigned int u = __float_as_uint(s);
    // Above 0 always: 0 marks an excluded column.
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

extern "C" __global__ void top_k(unsigned int cols, unsigned int k, unsigned int padded, const float* scores,
                                 const unsigned int* offsets, const unsigned int* indices, int has_exclude,
                                 unsigned int* out_columns, float* out_scores) {
    extern __shared__ unsigned int shared[];
    unsigned int words = (cols + 31) / 32;
    unsigned int* excluded = shared;
    unsigned long long* candidates = (unsigned long long*)(shared + ((words + 1) & ~1u));
    __shared__ unsigned int histogram[256];
    __shared__ unsigned int prefix, mask, remaining, valid, above, taken;
    unsigned int row = blockIdx.x;
    const float* s = scores + (unsigned long long)row * cols;

    for (unsigned int w = threadIdx.x; w < words; w += blockDim.x) excluded[w] = 0;
    if (threadIdx.x == 0) { prefix = 0; mask = 0; valid = 0; above = 0; taken = 0; }
    __syncthreads();
    if (has_exclude)
        for (unsigned int e = offsets[row] + threadIdx.x; e < offsets[row + 1]; e += blockDim.x)
            atomicOr(&excluded[indices[e] >> 5], 1u << (indices[e] & 31));
    __syncthreads();
#define KEY(c) ((excluded[(c) >> 5] >> ((c) & 31)) & 1u ? 0u : order_key(s[c]))
    unsigned int count = 0;
    for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) count += KEY(c) != 0;
    atomicAdd(&valid, count);
    __syncthreads();
    unsigned int take = min(k, valid);
    if (threadIdx.x == 0) remaining = take;

    // Radix select: after the passes, prefix is the key of the take-th largest and
    // `remaining` how many of the keys equal to it belong to the top.
    for (int shift = 24; shift >= 0 && take > 0; shift -= 8) {
        for (unsigned int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
        __syncthreads();
        // Scores share their leading bits, so lanes of a warp with the same bin add once,
        // together, instead of queueing on one shared-memory counter.
        for (unsigned int base = 0; base < cols; base += blockDim.x) {
            unsigned int c = base + threadIdx.x;
            unsigned int key = c < cols ? KEY(c) : 0u;
            bool counted = key != 0 && (key & mask) == prefix;
            unsigned int lane = threadIdx.x & 31;
            unsigned int bin = counted ? ((key >> shift) & 255u) : 256u + lane;
            unsigned int peers = __match_any_sync(0xffffffff, bin);
            if (counted && lane == (unsigned int)(__ffs(peers) - 1)) atomicAdd(&histogram[bin], (unsigned int)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned int higher = 0;
            for (int b = 255; b >= 0; --b) {
                if (higher + histogram[b] >= remaining) {
                    prefix |= (unsigned int)b << shift;
                    mask |= 255u << shift;
                    remaining -= higher;
                    break;
                }
                higher += histogram[b];
            }
        }
        __syncthreads();
    }
    unsigned int threshold = prefix;
    if (take > 0) {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
            unsigned int key = KEY(c);
            if (key > threshold) candidates[atomicAdd(&above, 1u)] = ((unsigned long long)key << 32) | (~c);
        }
        __syncthreads();
        // Keys equal to the threshold: the lowest columns first, in order, chunk by chunk.
        __shared__ unsigned int warp_counts[32];
        for (unsigned int start = 0; start < cols && taken < remaining; start += blockDim.x) {
            unsigned int c = start + threadIdx.x;
            bool tie = c < cols && KEY(c) == threshold;
            unsigned int ballot = __ballot_sync(0xffffffff, tie);
            unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
            if (lane == 0) warp_counts[warp] = __popc(ballot);
            __syncthreads();
            unsigned int before = taken;
            for (unsigned int w = 0; w < warp; ++w) before += warp_counts[w];
            before += __popc(ballot & ((1u << lane) - 1));
            if (tie && before < remaining) candidates[above + before] = ((unsigned long long)threshold << 32) | (~c);
            __syncthreads();
            if (threadIdx.x == 0) {
                unsigned int chunk = 0;
                for (unsigned int w = 0; w < (blockDim.x + 31) / 32; ++w) chunk += warp_counts[w];
                taken = min(remaining, taken + chunk);
            }
            __syncthreads();
        }
    }
    for (unsigned int i = take + threadIdx.x; i < padded; i += blockDim.x) candidates[i] = 0ull;
    __syncthreads();
    // Bitonic sort, descending.
    for (unsigned int size = 2; size <= padded; size <<= 1) {
        for (unsigned int stride = size >> 1; stride > 0; stride >>= 1) {
            for (unsigned int i = threadIdx.x; i < padded; i += blockDim.x) {
                unsigned int j = i ^ stride;
                if (j > i) {
                    bool descending = (i & size) == 0;
                    unsigned long long a = candidates[i], b = candidates[j];
                    if ((a < b) == descending) { candidates[i] = b; candidates[j] = a; }
                }
            }
            __syncthreads();
        }
    }
    for (unsigned int i = threadIdx.x; i < k; i += blockDim.x) {
        unsigned long long o = (unsigned long long)row * k + i;
        if (i < take) {
            unsigned int c = ~(unsigned int)(candidates[i] & 0xffffffffull);
            out_columns[o] = c;
            out_scores[o] = s[c];
        } else {
            out_columns[o] = 0xffffffffu;
            out_scores[o] = -INFINITY;
        }
    }
#undef KEY
}
