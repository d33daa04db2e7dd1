// Element-wise activations, mirroring destiny_core::math::activation: shared by the
// activation kernels and by top_k, which applies them as it reads an output layer's products.
// Kinds: ActivationCode (generated from codes.rs).

__device__ __forceinline__ float sigmoid(float z) { return __fdividef(1.0f, 1.0f + __expf(-z)); }

// p1: slope (leaky) or alpha (ELU, SELU); p2: lambda (SELU); slope: the unit's PReLU slope.
__device__ __forceinline__ float act_forward(int kind, float z, float p1, float p2, float slope) {
    switch (kind) {
    case ACTIVATION_SIGMOID: return sigmoid(z);
    case ACTIVATION_TANH: return tanhf(z);
    case ACTIVATION_RECTIFIED_LINEAR: return fmaxf(z, 0.0f);
    case ACTIVATION_LEAKY_RECTIFIED_LINEAR: return z > 0.0f ? z : p1 * z;
    case ACTIVATION_PARAMETRIC_RECTIFIED_LINEAR: return z > 0.0f ? z : slope * z;
    case ACTIVATION_EXPONENTIAL_LINEAR: return z > 0.0f ? z : p1 * expm1f(z);
    case ACTIVATION_SCALED_EXPONENTIAL_LINEAR: return p2 * (z > 0.0f ? z : p1 * expm1f(z));
    case ACTIVATION_SOFT_PLUS: return fmaxf(z, 0.0f) + log1pf(__expf(-fabsf(z)));
    case ACTIVATION_SOFT_SIGN: return z / (1.0f + fabsf(z));
    default: return z; // ACTIVATION_LINEAR
    }
}

// An element-wise kind fixed at compile time (ACTIVATION_PRECOMPUTED: values as they are),
// or ACTIVATION_RUNTIME: the kind given at run time, for the rarer kinds, which are not worth
// a copy of the body each (every copy costs compile time at start-up).
#define ACTIVATION_RUNTIME (-1000)
template <int KIND> struct ActivationKind { static constexpr int value = KIND; };

// The kind a body computes with: its own, or `kind` where that is ACTIVATION_RUNTIME.
template <int KIND> __device__ __forceinline__ int kind_of(ActivationKind<KIND>, int kind) {
    return KIND == ACTIVATION_RUNTIME ? kind : KIND;
}

// Calls body(ActivationKind<...>{}) for `kind`: a loop over many values inside `body` then
// branches on the kind once, not once a value (a switch a value costs more than a sigmoid).
template <typename Body> __device__ __forceinline__ void with_activation(int kind, Body body) {
    switch (kind) {
    case ACTIVATION_PRECOMPUTED: body(ActivationKind<ACTIVATION_PRECOMPUTED>{}); break;
    case ACTIVATION_SIGMOID: body(ActivationKind<ACTIVATION_SIGMOID>{}); break;
    case ACTIVATION_TANH: body(ActivationKind<ACTIVATION_TANH>{}); break;
    case ACTIVATION_RECTIFIED_LINEAR: body(ActivationKind<ACTIVATION_RECTIFIED_LINEAR>{}); break;
    case ACTIVATION_LINEAR: body(ActivationKind<ACTIVATION_LINEAR>{}); break;
    default: body(ActivationKind<ACTIVATION_RUNTIME>{});
    }
}
