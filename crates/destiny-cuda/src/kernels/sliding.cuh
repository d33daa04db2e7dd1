// A window sliding from one grid to another, laid out as `Geometry` in src/sliding.rs and
// passed by value. Unit (x, y, z) of channel c is at x + X * (y + Y * (z + Z * c)); output
// position o of dimension d reads input positions o * stride[d] - padding[d] + i, i < kernel[d].
struct Geometry {
    unsigned int input[3], output[3], kernel[3], stride[3], padding[3];
    unsigned int input_channels, output_channels;
};

__device__ __forceinline__ unsigned int positions(const unsigned int* extent) {
    return extent[0] * extent[1] * extent[2];
}

// The coordinates of position p of a plane of `extent`.
__device__ __forceinline__ void coordinates(unsigned int p, const unsigned int* extent, int* at) {
    at[0] = p % extent[0];
    p /= extent[0];
    at[1] = p % extent[1];
    at[2] = p / extent[1];
}

// The outputs of dimension d whose windows hold input position i: first..=last, none when
// first > last. Window o starts at o * stride - padding, so it holds i when
// i + padding - (kernel - 1) <= o * stride <= i + padding.
__device__ __forceinline__ void windows_holding(const Geometry& g, int d, int i, int* first, int* last) {
    int end = i + (int)g.padding[d], start = end - (int)g.kernel[d] + 1, stride = (int)g.stride[d];
    *first = start <= 0 ? 0 : (start + stride - 1) / stride;
    *last = min(end / stride, (int)g.output[d] - 1);
}
