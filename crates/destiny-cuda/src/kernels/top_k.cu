// Top-K per row, skipping excluded columns; the winners are sorted by (score descending,
// column ascending), as the CPU backend orders them.
//
// A block takes one tile of a row (the grid is rows x tiles) and reads it once into shared
// memory as order-preserving keys (0 marks an excluded column). For K up to the block size
// it filters: the K-th largest of the threads' maxima (radix_select, eight barriers) bounds
// the K-th largest key from below (K threads hold a key at least that large), so the keys at
// or above it, usually little more than K, hold the answer, and each one's place is the count
// of larger ones. When they overflow `capacity`, a radix select finds the K-th largest key in
// four 8-bit passes, then the winners are collected and sorted.
//
// A row too wide for shared memory is cut into tiles: each block writes its tile's K best
// as candidates, and a row's candidates, `tiles * K` of them, are selected again by the same
// kernel, which reads their columns through `columns_of` (as many rounds as the width
// needs). Within a tile the candidates are in (score, column) order and the tiles are in
// column order, so a candidate's position breaks ties as its column would.
//
// In the first round the scores may be an output layer's products: unless `kind` is
// ACTIVATION_PRECOMPUTED, the score of a column is act_forward(kind, product + bias) (activation.cuh), as the
// activation kernel would have written it, so the activations never go to memory.
//
// Dynamic shared memory: `tile_cols` keys (rounded up to even), then `capacity` 64-bit
// candidates.

// Sorts data[0, size) descending; size a power of two; the whole block takes part.
template <typename T>
__device__ __forceinline__ void bitonic_descending(T* data, unsigned int size) {
    for (unsigned int span = 2; span <= size; span <<= 1) {
        for (unsigned int stride = span >> 1; stride > 0; stride >>= 1) {
            for (unsigned int i = threadIdx.x; i < size; i += blockDim.x) {
                unsigned int j = i ^ stride;
                if (j > i) {
                    bool descending = (i & span) == 0;
                    T a = data[i], b = data[j];
                    if ((a < b) == descending) { data[i] = b; data[j] = a; }
                }
            }
            __syncthreads();
        }
    }
}

__device__ __forceinline__ unsigned int order_key(float s) {
    if (s != s) s = -INFINITY; // NaN ranks with -inf, as on the CPU
    unsigned int u = __float_as_uint(s);
    // Above 0 always: 0 marks an excluded column.
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Shared memory of a radix select: two histograms, one counted while the other is cleared.
struct RadixSelect {
    unsigned int histogram[2][256];
    unsigned int prefix, ties, valid;
};

// The rank-th largest of the valid (nonzero) keys the block's threads hold, N a thread, where
// rank = min(k, valid keys), in four passes of 8 bits: returns its key, and leaves in `ties`
// how many of the keys equal to it rank among the rank largest and in `valid` the count of
// valid keys (the key and both counts are 0 when there is none). histogram[0] must be zero
// on entry; it is zero again on exit. Eight barriers; one shared-memory add a key at most.
template <int N>
__device__ __forceinline__ unsigned int radix_select(const unsigned int (&keys)[N], unsigned int k, RadixSelect& select) {
    unsigned int lane = threadIdx.x & 31;
    unsigned int prefix = 0, mask = 0, remaining = 0; // `remaining`: warp 0's
    for (int pass = 0; pass < 4; ++pass) {
        int shift = 24 - 8 * pass;
        unsigned int* histogram = select.histogram[pass & 1];
#pragma unroll
        for (int i = 0; i < N; ++i) {
            unsigned int u = keys[i];
            bool counted = u != 0 && (u & mask) == prefix;
            // Lanes with the same bin add once, together (ties would queue otherwise).
            unsigned int bin = counted ? ((u >> shift) & 255u) : 256u + lane;
            unsigned int peers = __match_any_sync(0xffffffff, bin);
            if (counted && lane == (unsigned int)(__ffs(peers) - 1)) atomicAdd(&histogram[bin], (unsigned int)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            // Lane l holds bins 8l to 8l + 7; `from` counts the keys in bin 8l and above.
            unsigned int h[8], own = 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                h[i] = histogram[8 * lane + i];
                own += h[i];
            }
            unsigned int from = own;
            for (int d = 1; d < 32; d <<= 1) {
                unsigned int v = __shfl_down_sync(0xffffffff, from, d);
                if (lane + d < 32) from += v;
            }
            if (pass == 0) {
                unsigned int valid = __shfl_sync(0xffffffff, from, 0);
                remaining = min(k, valid);
                if (lane == 0) select.valid = valid;
            }
            unsigned int above = from - own;
            unsigned int holder = __ballot_sync(0xffffffff, above < remaining && remaining <= from);
            unsigned int digit = 0;
            if (holder) {
                unsigned int source = __ffs(holder) - 1, left = 0;
                if (lane == source) {
                    unsigned int higher = above;
                    for (int i = 7; i >= 0; --i) {
                        if (higher + h[i] >= remaining) {
                            digit = 8 * lane + i;
                            left = remaining - higher;
                            break;
                        }
                        higher += h[i];
                    }
                }
                digit = __shfl_sync(0xffffffff, digit, source);
                remaining = __shfl_sync(0xffffffff, left, source);
            }
            if (lane == 0) {
                select.prefix = prefix | (digit << shift);
                select.ties = remaining;
            }
        }
        // The next pass's histogram, unread since the pass before, is cleared meanwhile.
        for (unsigned int b = threadIdx.x; b < 256; b += blockDim.x) select.histogram[(pass + 1) & 1][b] = 0;
        __syncthreads();
        prefix = select.prefix;
        mask |= 255u << shift;
    }
    return prefix;
}

// One tile of a row. `scores` (and `columns_of`, when given) are rows of `cols`; the results
// go to (row * tiles + tile) * k onwards. `bias` and `slope` (either may be null) have `cols`
// entries. Candidates that `columns_of` marks absent
// (0xffffffff: a tile had fewer than K columns left) are skipped like excluded columns.
__device__ __forceinline__ void top_k_tile(unsigned int cols, unsigned int tile_cols, unsigned int k, unsigned int padded,
                                           unsigned int capacity, const float* scores, const unsigned int* columns_of,
                                           const unsigned int* offsets, const unsigned int* indices, unsigned int first_column,
                                           int kind, float p1, float p2, const float* bias, const float* slope,
                                           unsigned int* out_columns, float* out_scores) {
    extern __shared__ __align__(16) unsigned int shared[];
    unsigned int* table = shared; // the tile's keys
    unsigned long long* candidates = (unsigned long long*)(shared + ((tile_cols + 1) & ~1u)); // `capacity` of them
    __shared__ RadixSelect select;
    unsigned int* histogram = select.histogram[0]; // the fallback's
    __shared__ unsigned int prefix, mask, remaining, take, above, taken, found;
    __shared__ unsigned int warp_counts[32];
    unsigned int row = blockIdx.x, tile = blockIdx.y;
    unsigned int start_column = tile * tile_cols;
    unsigned int len = min(tile_cols, cols - start_column);
    unsigned long long row_start = (unsigned long long)row * cols + start_column;
    const float* s = scores + row_start;
    const unsigned int* of = columns_of ? columns_of + row_start : nullptr;
    // The score of column c from its product, the activation known at compile time.
    auto score_as = [&](auto activation, unsigned int c, float product) -> float {
        constexpr int KIND = decltype(activation)::value;
        if (KIND == ACTIVATION_PRECOMPUTED) return product;
        unsigned int unit = start_column + c;
        return act_forward(kind_of(activation, kind), bias ? product + bias[unit] : product, p1, p2,
                           slope ? slope[unit] : 0.0f);
    };
    auto score = [&](unsigned int c, float product) {
        float value;
        with_activation(kind, [&](auto activation) { value = score_as(activation, c, product); });
        return value;
    };

    with_activation(kind, [&](auto activation) {
        if (!of && (len & 3) == 0 && (row_start & 3) == 0) {
            // 16-byte loads, several in flight per thread: this pass is the only one that
            // reads the scores from device memory.
            const float4* s4 = (const float4*)s;
            uint4* table4 = (uint4*)table;
#pragma unroll 4
            for (unsigned int q = threadIdx.x; q < len / 4; q += blockDim.x) {
                float4 v = s4[q];
                unsigned int c = 4 * q;
                table4[q] = make_uint4(order_key(score_as(activation, c, v.x)), order_key(score_as(activation, c + 1, v.y)),
                                       order_key(score_as(activation, c + 2, v.z)),
                                       order_key(score_as(activation, c + 3, v.w)));
            }
        } else {
            for (unsigned int c = threadIdx.x; c < len; c += blockDim.x)
                table[c] = of && of[c] == 0xffffffffu ? 0u : order_key(score_as(activation, c, s[c]));
        }
    });
    if (threadIdx.x == 0) { prefix = 0; mask = 0; above = 0; taken = 0; found = 0; }
    for (unsigned int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
    __syncthreads();
    if (offsets) {
        for (unsigned int e = offsets[row] + threadIdx.x; e < offsets[row + 1]; e += blockDim.x) {
            unsigned int c = indices[e] - first_column - start_column; // wraps above len when before the tile
            if (c < len) table[c] = 0u;
        }
    }
    __syncthreads();
    auto key = [&](unsigned int c) -> unsigned int { return table[c]; };

    // Writes a candidate as the tile's result `rank`.
    auto write_result = [&](unsigned int rank, unsigned long long candidate) {
        unsigned long long o = ((unsigned long long)row * gridDim.y + tile) * k + rank;
        unsigned int c = ~(unsigned int)(candidate & 0xffffffffull);
        out_columns[o] = of ? of[c] : first_column + start_column + c;
        out_scores[o] = score(c, s[c]);
    };

    if (k <= blockDim.x) {
        unsigned int best[1] = {0};
        for (unsigned int c = threadIdx.x; c < len; c += blockDim.x) best[0] = max(best[0], key(c));
        unsigned int bound = radix_select(best, k, select);
        // With K threads holding a key, at least K keys pass.
        if (select.valid >= k) {
            unsigned int lane = threadIdx.x & 31;
            for (unsigned int start = 0; start < len; start += blockDim.x) {
                unsigned int c = start + threadIdx.x;
                unsigned int value = c < len ? key(c) : 0u;
                bool keep = value >= bound;
                unsigned int ballot = __ballot_sync(0xffffffff, keep);
                unsigned int base = 0;
                if (lane == 0 && ballot) base = atomicAdd(&found, (unsigned int)__popc(ballot));
                base = __shfl_sync(0xffffffff, base, 0);
                unsigned int slot = base + __popc(ballot & ((1u << lane) - 1));
                if (keep && slot < capacity) candidates[slot] = ((unsigned long long)value << 32) | (~c);
            }
            __syncthreads();
            unsigned int count = found;
            if (count <= capacity) {
                // A candidate's rank is the count of larger ones (no two are equal: their
                // columns differ), so no sort and no barrier.
                for (unsigned int i = threadIdx.x; i < count; i += blockDim.x) {
                    unsigned long long mine = candidates[i];
                    unsigned int rank = 0;
                    for (unsigned int j = 0; j < count; ++j) rank += candidates[j] > mine;
                    if (rank < k) write_result(rank, mine);
                }
                return;
            }
        }
    }

    // Radix select: after the passes, prefix is the key of the take-th largest and
    // `remaining` how many of the keys equal to it belong to the top. The first pass counts
    // every candidate, which fixes `take`.
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (unsigned int b = threadIdx.x; b < 256; b += blockDim.x) histogram[b] = 0;
        __syncthreads();
        // Scores share their leading bits, so lanes of a warp with the same bin add once,
        // together, instead of queueing on one shared-memory counter.
        for (unsigned int start = 0; start < len; start += blockDim.x) {
            unsigned int c = start + threadIdx.x;
            unsigned int value = c < len ? key(c) : 0u;
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
        for (unsigned int c = threadIdx.x; c < len; c += blockDim.x) {
            unsigned int value = key(c);
            if (value > threshold) candidates[atomicAdd(&above, 1u)] = ((unsigned long long)value << 32) | (~c);
        }
        __syncthreads();
        // Keys equal to the threshold: the lowest columns first, in order, chunk by chunk.
        for (unsigned int start = 0; start < len && taken < remaining; start += blockDim.x) {
            unsigned int c = start + threadIdx.x;
            bool tie = c < len && key(c) == threshold;
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
    bitonic_descending(candidates, padded);
    for (unsigned int i = threadIdx.x; i < k; i += blockDim.x) {
        if (i < take) {
            write_result(i, candidates[i]);
        } else {
            unsigned long long o = ((unsigned long long)row * gridDim.y + tile) * k + i;
            out_columns[o] = 0xffffffffu;
            out_scores[o] = -INFINITY;
        }
    }
}

// `offsets` and `indices` (the excluded columns of each row), `columns_of`, `bias` and `slope`
// may be null; `kind` is ACTIVATION_PRECOMPUTED for scores taken as they are.
// The scores are the columns from `first_column` on of a wider output, which exclusions and
// results index.
extern "C" __global__ void __launch_bounds__(512, 2) top_k(unsigned int cols, unsigned int tile_cols, unsigned int k, unsigned int padded,
                                                           unsigned int capacity, const float* scores, const unsigned int* columns_of,
                                                           const unsigned int* offsets, const unsigned int* indices,
                                                           unsigned int first_column, int kind, float p1, float p2,
                                                           const float* bias, const float* slope, unsigned int* out_columns,
                                                           float* out_scores) {
    top_k_tile(cols, tile_cols, k, padded, capacity, scores, columns_of, offsets, indices, first_column, kind, p1, p2, bias,
               slope, out_columns, out_scores);
}
