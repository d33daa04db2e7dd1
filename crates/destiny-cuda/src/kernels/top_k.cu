// Top-K per row, skipping excluded columns: one block per row, a radix select of the K-th
// largest score (four 8-bit passes over order-preserving integer keys), a collection pass,
// and a bitonic sort of the K winners by (score descending, column ascending), as the CPU
// backend orders them.
//
// Two variants. top_k_cached reads the row once into shared memory as keys (0 marks an
// excluded column) and makes every pass there; its dynamic shared memory is `cols` keys
// (rounded up to an even count) then `padded` 64-bit candidates. top_k, for rows too wide
// for shared memory, reads the scores at each pass and marks excluded columns in a bitmap of
// ceil(cols / 32) words (rounded up to even) before the candidates.

__device__ __forceinline__ unsigned int order_key(float s) {
    if (s != s) s = -INFINITY; // NaN ranks with -inf, as on the CPU
    unsigned int u = __float_as_uint(s);
    // Above 0 always: 0 marks an excluded column.
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <bool CACHED>
__device__ __forceinline__ void top_k_row(unsigned int cols, unsigned int k, unsigned int padded, const float* scores,
                                          const unsigned int* offsets, const unsigned int* indices,
                                          unsigned int* out_columns, float* out_scores) {
    extern __shared__ __align__(16) unsigned int shared[];
    unsigned int words = CACHED ? cols : (cols + 31) / 32;
    unsigned int* table = shared; // keys, or the bitmap of excluded columns
    unsigned long long* candidates = (unsigned long long*)(shared + ((words + 1) & ~1u));
    __shared__ unsigned int histogram[256];
    __shared__ unsigned int prefix, mask, remaining, take, above, taken;
    __shared__ unsigned int warp_counts[32];
    unsigned int row = blockIdx.x;
    const float* s = scores + (unsigned long long)row * cols;

    if (CACHED && (cols & 3) == 0) {
        // 16-byte loads, several in flight per thread: this pass is the only one that
        // reads the scores from device memory.
        const float4* s4 = (const float4*)s;
        uint4* table4 = (uint4*)table;
#pragma unroll 4
        for (unsigned int q = threadIdx.x; q < cols / 4; q += blockDim.x) {
            float4 v = s4[q];
            table4[q] = make_uint4(order_key(v.x), order_key(v.y), order_key(v.z), order_key(v.w));
        }
    } else {
        for (unsigned int w = threadIdx.x; w < words; w += blockDim.x) table[w] = CACHED ? order_key(s[w]) : 0u;
    }
    if (threadIdx.x == 0) { prefix = 0; mask = 0; above = 0; taken = 0; }
    __syncthreads();
    if (offsets) {
        for (unsigned int e = offsets[row] + threadIdx.x; e < offsets[row + 1]; e += blockDim.x) {
            unsigned int c = indices[e];
            if (CACHED) table[c] = 0u;
            else atomicOr(&table[c >> 5], 1u << (c & 31));
        }
    }
    __syncthreads();
    auto key = [&](unsigned int c) -> unsigned int {
        if (CACHED) return table[c];
        return (table[c >> 5] >> (c & 31)) & 1u ? 0u : order_key(s[c]);
    };

    // Radix select: after the passes, prefix is the key of the take-th largest and
    // `remaining` how many of the keys equal to it belong to the top. The first pass counts
    // every candidate, which fixes `take`.
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (unsigned int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
        __syncthreads();
        // Scores share their leading bits, so lanes of a warp with the same bin add once,
        // together, instead of queueing on one shared-memory counter.
        for (unsigned int start = 0; start < cols; start += blockDim.x) {
            unsigned int c = start + threadIdx.x;
            unsigned int value = c < cols ? key(c) : 0u;
            bool counted = value != 0 && (value & mask) == prefix;
            unsigned int lane = threadIdx.x & 31;
            unsigned int bin = counted ? ((value >> shift) & 255u) : 256u + lane;
            unsigned int peers = __match_any_sync(0xffffffff, bin);
            if (counted && lane == (unsigned int)(__ffs(peers) - 1)) atomicAdd(&histogram[bin], (unsigned int)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            if (shift == 24) {
                unsigned int valid = 0;
                for (int b = 0; b < 256; ++b) valid += histogram[b];
                take = min(k, valid);
                remaining = take;
            }
            unsigned int higher = 0;
            for (int b = 255; b >= 0 && remaining > 0; --b) {
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
        if (take == 0) break;
    }
    unsigned int threshold = prefix;
    if (take > 0) {
        for (unsigned int c = threadIdx.x; c < cols; c += blockDim.x) {
            unsigned int value = key(c);
            if (value > threshold) candidates[atomicAdd(&above, 1u)] = ((unsigned long long)value << 32) | (~c);
        }
        __syncthreads();
        // Keys equal to the threshold: the lowest columns first, in order, chunk by chunk.
        for (unsigned int start = 0; start < cols && taken < remaining; start += blockDim.x) {
            unsigned int c = start + threadIdx.x;
            bool tie = c < cols && key(c) == threshold;
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
}

// `offsets` and `indices` (the excluded columns of each row) may be null.
extern "C" __global__ void __launch_bounds__(512, 2) top_k_cached(unsigned int cols, unsigned int k, unsigned int padded, const float* scores,
                                        const unsigned int* offsets, const unsigned int* indices,
                                        unsigned int* out_columns, float* out_scores) {
    top_k_row<true>(cols, k, padded, scores, offsets, indices, out_columns, out_scores);
}

extern "C" __global__ void top_k(unsigned int cols, unsigned int k, unsigned int padded, const float* scores,
                                 const unsigned int* offsets, const unsigned int* indices,
                                 unsigned int* out_columns, float* out_scores) {
    top_k_row<false>(cols, k, padded, scores, offsets, indices, out_columns, out_scores);
}
