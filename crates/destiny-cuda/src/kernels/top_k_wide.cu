// The first round of top-K over rows too wide for shared memory (top_k.cu defines
// order_key and the later rounds).
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
// Column order within a region keeps the next round's tie rule: a candidate's position there
// ranks ties as its column would.

#define WIDE_THREADS 512
#define WIDE_VECTORS 4
#define WIDE_WARPS (WIDE_THREADS / 32)
#define WIDE_COLUMNS (WIDE_THREADS * 4 * WIDE_VECTORS)

// The sum over the block of each thread's `value`; `sums` holds three counters in shared
// memory, zero on the first call, and `round` counts the calls: a counter is cleared two
// calls before its next use, when no thread can still be reading it, so one barrier a call
// suffices.
__device__ __forceinline__ unsigned int block_sum(unsigned int value, unsigned int* sums, unsigned int round) {
    for (int d = 16; d > 0; d >>= 1) value += __shfl_xor_sync(0xffffffff, value, d);
    if (threadIdx.x == 0) sums[(round + 1) % 3] = 0;
    if ((threadIdx.x & 31) == 0) atomicAdd(&sums[round % 3], value);
    __syncthreads();
    return sums[round % 3];
}

// Each flagged key's rank in column order, where bit 4q + j of `flags` is the key of column
// 4 * (q * WIDE_THREADS + thread) + j: `offset[q]` is the rank of the thread's first flagged
// key of group q. Returns how many keys the block flagged.
__device__ __forceinline__ unsigned int column_ranks(unsigned int flags, unsigned long long* warp_sums,
                                                     unsigned int offset[WIDE_VECTORS]) {
    // Eight counts of at most 4 a thread, 128 a warp: one byte each in a 64-bit word.
    unsigned long long packed = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q)
        packed |= (unsigned long long)__popc((flags >> (4 * q)) & 15u) << (8 * q);
    unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned long long inclusive = packed;
    for (int d = 1; d < 32; d <<= 1) {
        unsigned long long before = __shfl_up_sync(0xffffffff, inclusive, d);
        if (lane >= (unsigned int)d) inclusive += before;
    }
    if (lane == 31) warp_sums[warp] = inclusive;
    __syncthreads();
    unsigned long long exclusive = inclusive - packed;
    unsigned int running = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
        unsigned int earlier_warps = 0, all = 0;
        for (unsigned int w = 0; w < WIDE_WARPS; ++w) {
            unsigned int s = (unsigned int)(warp_sums[w] >> (8 * q)) & 255u;
            all += s;
            if (w < warp) earlier_warps += s;
        }
        offset[q] = running + earlier_warps + ((unsigned int)(exclusive >> (8 * q)) & 255u);
        running += all;
    }
    __syncthreads(); // warp_sums may be written again
    return running;
}

// Which keys `flags_where` flags, against a key `than`.
#define KEYS_AT_LEAST 0 // valid keys (not 0) at or above it
#define KEYS_EQUAL 1
#define KEYS_ABOVE 2

// Bit 4q + j set where key[q][j] compares to `than` as `test` says.
__device__ __forceinline__ unsigned int flags_where(const unsigned int (&key)[WIDE_VECTORS][4], int test, unsigned int than) {
    unsigned int flags = 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            unsigned int u = key[q][j];
            bool keep = test == KEYS_EQUAL ? u == than : test == KEYS_ABOVE ? u > than : u != 0 && u >= than;
            flags |= (unsigned int)keep << (4 * q + j);
        }
    }
    return flags;
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
    __shared__ unsigned long long warp_sums[WIDE_WARPS];
    __shared__ unsigned int sums[3];
    __shared__ unsigned int histogram[256];
    __shared__ unsigned int prefix, mask, remaining;
    unsigned int row = blockIdx.x, tile = blockIdx.y;
    unsigned int start = tile * WIDE_COLUMNS;
    unsigned int len = min((unsigned int)WIDE_COLUMNS, cols - start);
    unsigned long long row_start = (unsigned long long)row * cols + start;
    const float* s = scores + row_start;
    unsigned int base = 4 * threadIdx.x; // the thread's first column of each group, less q * WIDE_THREADS * 4
    auto score = [&](unsigned int c, float product) -> float {
        if (kind == ACTIVATION_PRECOMPUTED) return product;
        unsigned int unit = start + c;
        return act_forward(kind, bias ? product + bias[unit] : product, p1, p2, slope ? slope[unit] : 0.0f);
    };

    unsigned int excluding = offsets ? offsets[row + 1] - offsets[row] : 0;
    if (excluding) {
        for (unsigned int w = threadIdx.x; w < WIDE_COLUMNS / 32; w += WIDE_THREADS) excluded[w] = 0;
    }
    if (threadIdx.x < 3) sums[threadIdx.x] = 0;
    __syncthreads();
    if (excluding) {
        for (unsigned int e = offsets[row] + threadIdx.x; e < offsets[row + 1]; e += WIDE_THREADS) {
            unsigned int c = indices[e] - first_column - start; // wraps above len when before the tile
            if (c < len) atomicOr(&excluded[c >> 5], 1u << (c & 31));
        }
        __syncthreads();
    }

    unsigned int key[WIDE_VECTORS][4];
    bool aligned = (row_start & 3) == 0;
#pragma unroll
    for (int q = 0; q < WIDE_VECTORS; ++q) {
        unsigned int c = q * WIDE_THREADS * 4 + base;
        float v[4];
        if (aligned && c + 4 <= len) {
            float4 f = *(const float4*)(s + c);
            v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = c + j < len ? s[c + j] : 0.0f;
        }
        unsigned int gone = excluding ? (excluded[c >> 5] >> (c & 31)) & 15u : 0u;
#pragma unroll
        for (int j = 0; j < 4; ++j)
            key[q][j] = c + j < len && !((gone >> j) & 1u) ? order_key(score(c + j, v[j])) : 0u;
    }

    // A lower bound of the tile's K-th largest key, bit by bit from the top: the K-th
    // largest of the threads' maxima, counted by the barrier itself, or, for a K above the
    // threads, of the groups' maxima. 0 when fewer than K hold a key.
    unsigned int bound = 0, round = 0;
    if (k <= WIDE_THREADS) {
        unsigned int best = 0;
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q) best = max(best, max(max(key[q][0], key[q][1]), max(key[q][2], key[q][3])));
        for (int bit = 31; bit >= 0; --bit) {
            unsigned int trial = bound | (1u << bit);
            if ((unsigned int)__syncthreads_count(best >= trial) >= k) bound = trial;
        }
    } else {
        for (int bit = 31; bit >= 0; --bit) {
            unsigned int trial = bound | (1u << bit);
            unsigned int above = 0;
#pragma unroll
            for (int q = 0; q < WIDE_VECTORS; ++q) above += max(max(key[q][0], key[q][1]), max(key[q][2], key[q][3])) >= trial;
            if (block_sum(above, sums, round++) >= k) bound = trial;
        }
    }

    unsigned long long out = ((unsigned long long)row * gridDim.y + tile) * region;
    // Writes the flagged keys in column order and marks the rest of the region absent.
    auto write = [&](unsigned int flags) {
        unsigned int offset[WIDE_VECTORS];
        unsigned int count = column_ranks(flags, warp_sums, offset);
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q) {
            unsigned int slot = offset[q];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if ((flags >> (4 * q + j)) & 1u) {
                    unsigned int c = q * WIDE_THREADS * 4 + base + j;
                    out_columns[out + slot] = first_column + start + c;
                    // The key is the score in order, except NaN, which it ranks as -inf.
                    unsigned int u = key[q][j];
                    float value = __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
                    out_scores[out + slot] = value == -INFINITY ? score(c, s[c]) : value;
                    ++slot;
                }
            }
        }
        for (unsigned int i = count + threadIdx.x; i < region; i += WIDE_THREADS) {
            out_columns[out + i] = 0xffffffffu;
            out_scores[out + i] = -INFINITY;
        }
    };

    unsigned int passing = flags_where(key, KEYS_AT_LEAST, bound);
    if (block_sum(__popc(passing), sums, round++) <= region) {
        write(passing);
        return;
    }

    // Radix select of the K-th largest key: after the passes, `prefix` is its key and
    // `remaining` how many of the keys equal to it belong to the K best.
    unsigned int valid = block_sum(__popc(flags_where(key, KEYS_AT_LEAST, 1u)), sums, round++);
    if (threadIdx.x == 0) { prefix = 0; mask = 0; remaining = min(k, valid); }
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (unsigned int b = threadIdx.x; b < 256; b += WIDE_THREADS) histogram[b] = 0;
        __syncthreads();
        unsigned int lane = threadIdx.x & 31;
#pragma unroll
        for (int q = 0; q < WIDE_VECTORS; ++q) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                unsigned int u = key[q][j];
                bool counted = u != 0 && (u & mask) == prefix;
                // Lanes with the same bin add once, together (ties would queue otherwise).
                unsigned int bin = counted ? ((u >> shift) & 255u) : 256u + lane;
                unsigned int peers = __match_any_sync(0xffffffff, bin);
                if (counted && lane == (unsigned int)(__ffs(peers) - 1)) atomicAdd(&histogram[bin], (unsigned int)__popc(peers));
            }
        }
        __syncthreads();
        if (threadIdx.x == 0 && remaining > 0) {
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
    unsigned int threshold = prefix, ties = remaining;
    if (ties == 0) {
        // No valid key at all: the region stays absent.
        write(0u);
        return;
    }
    // The lowest columns of the ties at the threshold, then everything above it.
    unsigned int tied = flags_where(key, KEYS_EQUAL, threshold);
    unsigned int offset[WIDE_VECTORS];
    column_ranks(tied, warp_sums, offset);
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
    write(taken | flags_where(key, KEYS_ABOVE, threshold));
}
