// The first round of top-K over rows too wide for shared memory (top_k.cu defines
// order_key, radix_select and the later rounds).
//
// A block takes a tile of WIDE_COLUMNS columns of a row and holds its keys in registers:
// each thread loads WIDE_VECTORS groups of four adjacent columns, all of its loads in flight
// at once, and the tile is read from device memory once and never stored. The tile only
// needs to pass on a superset of its K best, not the K best themselves: the K-th largest of
// the threads' maxima is a lower bound of the tile's K-th largest key (K threads hold a key
// at least that large), so the keys at or above it, usually little more than K, are written
// out in column order, without a sort, into the tile's `region` of the next round's row.
// Only when more than `region` keys pass (many ties, or fewer than K groups with a key) does
// the block select its K best exactly, by radix select, keeping the lowest columns of the
// ties. Unused slots of a region are marked absent.
//
// Instructions, not bandwidth, bound this kernel: the activation is chosen once for all the
// thread's keys (with_activation), the K-th largest maximum is found by a radix select with
// one shared-memory add a thread and eight barriers (not a barrier a bit), and the ranks in
// column order are scanned once a block by one warp.
//
// Column order within a region keeps the next round's tie rule: a candidate's position there
// ranks ties as its column would.

#define WIDE_THREADS 512
#define WIDE_VECTORS 4
#define WIDE_KEYS (4 * WIDE_VECTORS)
#define WIDE_WARPS (WIDE_THREADS / 32)
#define WIDE_COLUMNS (WIDE_THREADS * WIDE_KEYS)

// Where each flagged key goes in column order, where bit 4q + j of `flags` is the key of
// column 4 * (q * WIDE_THREADS + thread) + j: `offset[q]` is the rank of the thread's first
// flagged key of group q. Returns how many keys the block flagged. Two barriers.
__device__ __forceinline__ unsigned int column_ranks(unsigned int flags, unsigned int* warp_counts,
                                                     unsigned long long* warp_offsets,
                                                     unsigned int offset[WIDE_VECTORS]) {
    // A byte a group: at most 4 a thread, 128 a warp.
    unsigned int packed = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) packed |= (unsigned int)__popc((flags >> (4 * q)) & 15u) << (8 * q);
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned int inclusive = packed;
    for (int d = 1; d < 32; d <<= 1) {
        unsigned int before = __shfl_up_sync(0xffffffff, inclusive, d);
        if (lane >= (unsigned int)d) inclusive += before;
    }
    if (lane == 31) warp_counts[warp] = inclusive;
    __syncthreads();
    if (warp == 0) {
        // Across the warps, 16 bits a group (at most 2,048): the warps before each one, and
        // in slot WIDE_WARPS all of them.
        unsigned int c = lane < WIDE_WARPS ? warp_counts[lane] : 0u;
        unsigned long long wide = 0;
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q) wide |= (unsigned long long)((c >> (8 * q)) & 255u) << (16 * q);
        unsigned long long sum = wide;
        for (int d = 1; d < 32; d <<= 1) {
            unsigned long long before = __shfl_up_sync(0xffffffff, sum, d);
            if (lane >= (unsigned int)d) sum += before;
        }
        if (lane < WIDE_WARPS) warp_offsets[lane] = sum - wide;
        if (lane == WIDE_WARPS - 1) warp_offsets[WIDE_WARPS] = sum;
    }
    __syncthreads();
    unsigned long long mine = warp_offsets[warp], all = warp_offsets[WIDE_WARPS];
    unsigned int exclusive = inclusive - packed, running = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
        offset[q] = running + (unsigned int)((mine >> (16 * q)) & 0xffffu) + ((exclusive >> (8 * q)) & 255u);
        running += (unsigned int)((all >> (16 * q)) & 0xffffu);
    }
    return running;
}

// Which keys `flags_where` flags, against a key `than`.
#define KEYS_AT_LEAST 0 // valid keys (not 0) at or above it
#define KEYS_EQUAL 1
#define KEYS_ABOVE 2

// Bit i set where key[i] compares to `than` as `test` says.
__device__ __forceinline__ unsigned int flags_where(const unsigned int (&key)[WIDE_KEYS], int test, unsigned int than) {
    unsigned int flags = 0;
#pragma unroll
    for (int i = 0; i < WIDE_KEYS; ++i) {
        unsigned int u = key[i];
        bool keep = test == KEYS_EQUAL ? u == than : test == KEYS_ABOVE ? u > than : u != 0 && u >= than;
        flags |= (unsigned int)keep << i;
    }
    return flags;
}

// Columns c to c + 3 of `p` (zero past `len`), in one 16-byte load where `vector` says the
// row is aligned.
__device__ __forceinline__ void load_group(const float* p, unsigned int c, unsigned int len, bool vector, float* v) {
    if (vector && c + 4 <= len) {
        float4 f = *(const float4*)(p + c);
        v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) v[j] = c + j < len ? p[c + j] : 0.0f;
    }
}

// `offsets` and `indices` (each row's excluded columns), `bias` and `slope` may be null;
// `kind` is ACTIVATION_PRECOMPUTED for scores taken as they are. The scores are the columns
// from `first_column` on of a wider output, which exclusions and results index. Results go
// to `region` slots from (row * tiles + tile) * region on; `region` >= k.
extern "C" __global__ void __launch_bounds__(WIDE_THREADS, 2)
    top_k_wide(unsigned int cols, unsigned int k, unsigned int region, const float* scores, const unsigned int* offsets,
               const unsigned int* indices, unsigned int first_column, int kind, float p1, float p2, const float* bias,
               const float* slope, unsigned int* out_columns, float* out_scores) {
    __shared__ unsigned int excluded[WIDE_COLUMNS / 32];
    __shared__ unsigned int warp_counts[WIDE_WARPS];
    __shared__ unsigned long long warp_offsets[WIDE_WARPS + 1];
    __shared__ RadixSelect select;
    unsigned int row = blockIdx.x, tile = blockIdx.y;
    unsigned int start = tile * WIDE_COLUMNS;
    unsigned int len = min((unsigned int)WIDE_COLUMNS, cols - start);
    unsigned long long row_start = (unsigned long long)row * cols + start;
    const float* s = scores + row_start;
    unsigned int base = 4 * threadIdx.x; // the thread's first column of each group, less q * WIDE_THREADS * 4

    unsigned int excluding = offsets ? offsets[row + 1] - offsets[row] : 0;
    if (excluding) {
        for (unsigned int w = threadIdx.x; w < WIDE_COLUMNS / 32; w += WIDE_THREADS) excluded[w] = 0;
    }
    for (unsigned int b = threadIdx.x; b < 256; b += WIDE_THREADS) select.histogram[0][b] = 0;
    __syncthreads();
    if (excluding) {
        for (unsigned int e = offsets[row] + threadIdx.x; e < offsets[row + 1]; e += WIDE_THREADS) {
            unsigned int c = indices[e] - first_column - start; // wraps above len when before the tile
            if (c < len) atomicOr(&excluded[c >> 5], 1u << (c & 31));
        }
        __syncthreads();
    }

    // Every load in flight before any key is computed; then the keys, through the
    // activation the kernel was given, chosen once.
    unsigned int key[WIDE_KEYS];
    float v[WIDE_KEYS];
    bool vector = (row_start & 3) == 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) load_group(s, q * WIDE_THREADS * 4 + base, len, vector, v + 4 * q);
    with_activation(kind, [&](auto activation) {
        constexpr int KIND = decltype(activation)::value;
        if (KIND == ACTIVATION_PRECOMPUTED) return;
        if (bias) {
            bool bias_vector = ((unsigned long long)(bias + start) & 15) == 0;
            float b[WIDE_KEYS];
#pragma unroll
            for (int q = 0; q < WIDE_VECTORS; ++q) load_group(bias + start, q * WIDE_THREADS * 4 + base, len, bias_vector, b + 4 * q);
#pragma unroll
            for (int i = 0; i < WIDE_KEYS; ++i) v[i] += b[i];
        }
#pragma unroll
        for (int i = 0; i < WIDE_KEYS; ++i) {
            unsigned int c = (i / 4) * WIDE_THREADS * 4 + base + i % 4;
            int computed = kind_of(activation, kind);
            float unit_slope = computed == ACTIVATION_PARAMETRIC_RECTIFIED_LINEAR && slope && c < len ? slope[start + c] : 0.0f;
            v[i] = act_forward(computed, v[i], p1, p2, unit_slope);
        }
    });
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
        unsigned int c = q * WIDE_THREADS * 4 + base;
        unsigned int gone = excluding ? (excluded[c >> 5] >> (c & 31)) & 15u : 0u;
#pragma unroll
        for (int j = 0; j < 4; ++j)
            key[4 * q + j] = c + j < len && !((gone >> j) & 1u) ? order_key(v[4 * q + j]) : 0u;
    }

    // A lower bound of the tile's K-th largest key: the K-th largest of the threads' maxima,
    // or, for a K above the threads, of the groups' maxima; 0 when fewer than K hold a key.
    unsigned int bound;
    if (k <= WIDE_THREADS) {
        unsigned int best[1] = {0};
#pragma unroll
        for (int i = 0; i < WIDE_KEYS; ++i) best[0] = max(best[0], key[i]);
        bound = radix_select(best, k, select);
    } else {
        unsigned int best[WIDE_VECTORS];
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q)
            best[q] = max(max(key[4 * q], key[4 * q + 1]), max(key[4 * q + 2], key[4 * q + 3]));
        bound = radix_select(best, k, select);
    }
    if (select.valid < k) bound = 0;

    unsigned long long out = ((unsigned long long)row * gridDim.y + tile) * region;
    // Writes the `count` flagged keys at their ranks and marks the rest of the region absent.
    auto write = [&](unsigned int flags, const unsigned int offset[WIDE_VECTORS], unsigned int count) {
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q) {
            unsigned int slot = offset[q];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if ((flags >> (4 * q + j)) & 1u) {
                    unsigned int c = q * WIDE_THREADS * 4 + base + j;
                    out_columns[out + slot] = first_column + start + c;
                    // The key is the score in order, except NaN, which it ranks as -inf.
                    unsigned int u = key[4 * q + j];
                    float value = __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
                    if (value == -INFINITY && kind != ACTIVATION_PRECOMPUTED) {
                        float z = bias ? s[c] + bias[start + c] : s[c];
                        value = act_forward(kind, z, p1, p2, slope ? slope[start + c] : 0.0f);
                    } else if (value == -INFINITY) {
                        value = s[c];
                    }
                    out_scores[out + slot] = value;
                    ++slot;
                }
            }
        }
        for (unsigned int i = count + threadIdx.x; i < region; i += WIDE_THREADS) {
            out_columns[out + i] = 0xffffffffu;
            out_scores[out + i] = -INFINITY;
        }
    };

    unsigned int offset[WIDE_VECTORS];
    unsigned int passing = flags_where(key, KEYS_AT_LEAST, bound);
    unsigned int count = column_ranks(passing, warp_counts, warp_offsets, offset);
    if (count <= region) {
        write(passing, offset, count);
        return;
    }

    // The K best exactly: every key above the K-th largest, and the lowest columns of the
    // keys equal to it.
    unsigned int threshold = radix_select(key, k, select);
    unsigned int ties = select.ties;
    if (ties == 0) {
        // No valid key at all: the region stays absent.
        write(0u, offset, 0u);
        return;
    }
    unsigned int tied = flags_where(key, KEYS_EQUAL, threshold);
    column_ranks(tied, warp_counts, warp_offsets, offset);
    unsigned int taken = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
        unsigned int rank = offset[q];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            unsigned int bit = 4 * q + j;
            if ((tied >> bit) & 1u) {
                if (rank < ties) taken |= 1u << bit;
                ++rank;
            }
        }
    }
    unsigned int chosen = taken | flags_where(key, KEYS_ABOVE, threshold);
    count = column_ranks(chosen, warp_counts, warp_offsets, offset);
    write(chosen, offset, count);
}
