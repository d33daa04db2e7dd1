// Optimizer steps, mirroring destiny_core::backend::OptimizerKind.
// Kinds: OptimizerCode (generated from codes.rs).
// p1: momentum, rho or beta1; p2: beta2; c1, c2: Adam's bias corrections 1 / (1 - beta^t).

extern "C" __global__ void optimizer_step(unsigned int n, int kind, float lr, float l1, float l2, float p1, float p2,
                                          float epsilon, float c1, float c2, float* w, const float* grad,
                                          float* s0, float* s1) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float x = w[i];
        float g = grad[i] + l2 * x + (x > 0.0f ? l1 : (x < 0.0f ? -l1 : 0.0f));
        switch (kind) {
        case OPTIMIZER_SGD: x -= lr * g; break;
        case OPTIMIZER_MOMENTUM: s0[i] = p1 * s0[i] - lr * g; x += s0[i]; break;
        case OPTIMIZER_NESTEROV: { float previous = s0[i]; s0[i] = p1 * previous - lr * g; x += -p1 * previous + (1.0f + p1) * s0[i]; break; }
        case OPTIMIZER_ADA_GRAD: s0[i] += g * g; x -= lr * g / (sqrtf(s0[i]) + epsilon); break;
        case OPTIMIZER_RMS_PROP: s0[i] = p1 * s0[i] + (1.0f - p1) * g * g; x -= lr * g / (sqrtf(s0[i]) + epsilon); break;
        case OPTIMIZER_ADA_DELTA: {
            s0[i] = p1 * s0[i] + (1.0f - p1) * g * g;
            float d = sqrtf(s1[i] + epsilon) / sqrtf(s0[i] + epsilon) * g;
            s1[i] = p1 * s1[i] + (1.0f - p1) * d * d;
            x -= lr * d;
            break;
        }
        default: // OPTIMIZER_ADAM
            s0[i] = p1 * s0[i] + (1.0f - p1) * g;
            s1[i] = p2 * s1[i] + (1.0f - p2) * g * g;
            x -= lr * (s0[i] * c1) / (sqrtf(s1[i] * c2) + epsilon);
        }
        w[i] = x;
    }
}
