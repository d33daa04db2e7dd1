// Max and average pooling (src/pooling.rs), channel by channel: a plane is one channel of one
// sample, the planes of input and output in the same order.

// The input positions that window o covers in dimension d, clipped to the input: from..to.
__device__ __forceinline__ void window_span(const Geometry& g, int d, int o, int* from, int* to) {
    int start = o * (int)g.stride[d] - (int)g.padding[d];
    *from = max(start, 0);
    *to = min(start + (int)g.kernel[d], (int)g.input[d]);
}

// The position in its plane of window o's first largest input, z then y then x outermost
// first (the checks leave no window empty).
__device__ unsigned int window_argmax(const Geometry& g, const float* plane, const int* o) {
    int from[3], to[3];
    for (int d = 0; d < 3; ++d) window_span(g, d, o[d], &from[d], &to[d]);
    unsigned int best = from[0] + g.input[0] * (from[1] + g.input[1] * from[2]);
    float largest = plane[best];
    for (int z = from[2]; z < to[2]; ++z) {
        for (int y = from[1]; y < to[1]; ++y) {
            for (int x = from[0]; x < to[0]; ++x) {
                unsigned int at = x + g.input[0] * (y + g.input[1] * z);
                float v = plane[at];
                if (v > largest) {
                    largest = v;
                    best = at;
                }
            }
        }
    }
    return best;
}

// Window o's positions inside the input.
__device__ __forceinline__ float window_count(const Geometry& g, const int* o) {
    int count = 1;
    for (int d = 0; d < 3; ++d) {
        int from, to;
        window_span(g, d, o[d], &from, &to);
        count *= to - from;
    }
    return (float)count;
}

// y (overwritten) of n output units: each window's maximum or mean.
extern "C" __global__ void pooling_forward(Geometry g, int mode, unsigned int n, const float* x, float* y) {
    unsigned int P = positions(g.output), Q = positions(g.input);
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float* plane = x + i / P * Q;
        int o[3];
        coordinates(i % P, g.output, o);
        if (mode == POOLING_MAX) {
            y[i] = plane[window_argmax(g, plane, o)];
            continue;
        }
        int from[3], to[3];
        for (int d = 0; d < 3; ++d) window_span(g, d, o[d], &from[d], &to[d]);
        float sum = 0.0f;
        for (int z = from[2]; z < to[2]; ++z) {
            for (int yy = from[1]; yy < to[1]; ++yy) {
                for (int xx = from[0]; xx < to[0]; ++xx) sum += plane[xx + g.input[0] * (yy + g.input[1] * z)];
            }
        }
        y[i] = sum / window_count(g, o);
    }
}

// The position in its plane of each of n output windows' first largest input, for the max
// pooling's backward pass (the forward pass keeps no indices).
extern "C" __global__ void pooling_argmax(Geometry g, unsigned int n, const float* x, unsigned int* best) {
    unsigned int P = positions(g.output), Q = positions(g.input);
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int o[3];
        coordinates(i % P, g.output, o);
        best[i] = window_argmax(g, x + i / P * Q, o);
    }
}

// Adds to dx, over n input units, the deltas of the windows holding each: a window's whole
// delta to its first largest input (`best`, from pooling_argmax), or its share of the mean.
// A gather per input unit: no atomics, and the order of each sum fixed.
extern "C" __global__ void pooling_backward(Geometry g, int mode, unsigned int n, const unsigned int* best, const float* dy, float* dx) {
    unsigned int P = positions(g.output), Q = positions(g.input);
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int plane = i / Q, q = i % Q;
        int at[3], lo[3], hi[3], o[3];
        coordinates(q, g.input, at);
        for (int d = 0; d < 3; ++d) windows_holding(g, d, at[d], &lo[d], &hi[d]);
        float sum = 0.0f;
        for (o[2] = lo[2]; o[2] <= hi[2]; ++o[2]) {
            for (o[1] = lo[1]; o[1] <= hi[1]; ++o[1]) {
                for (o[0] = lo[0]; o[0] <= hi[0]; ++o[0]) {
                    unsigned int p = plane * P + o[0] + g.output[0] * (o[1] + g.output[1] * o[2]);
                    if (mode == POOLING_MAX) {
                        if (best[p] == q) sum += dy[p];
                    } else {
                        sum += dy[p] / window_count(g, o);
                    }
                }
            }
        }
        dx[i] += sum;
    }
}
