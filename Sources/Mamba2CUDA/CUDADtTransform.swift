extension CUDAKernelSource {
    /// One token's dt from its raw value plus the head's bias, as mamba_ssm computes it: softplus, then the clamp
    /// to dt_limit. Put in front of every module that makes dt or masks dt's gradient by the clamp (the plain
    /// chunked SSD and its backward, the tensor-core SSD and its backward, the model's decode step), so that the
    /// forward passes, the decode step and the backward all take dt from the same float32 operations.
    static let dtTransform = #"""
    // softplus(u) = log(1 + e^u); past u = 20 that is u in float32, and e^u would overflow far beyond.
    __device__ __forceinline__ float dt_softplus(float u) { return u <= 20.f ? log1pf(expf(u)) : u; }
    // Whether dt_limit = (lo, hi) clamps at all: the default (0, ∞) changes nothing, so callers skip it.
    __device__ __forceinline__ bool dt_clamps(float lo, float hi) { return !(lo == 0.f && isinf(hi)); }
    // dt from raw + bias: softplus where the model asks for it, then the clamp (clamp: dt_clamps(lo, hi), or true
    // where a caller always clamps).
    __device__ __forceinline__ float token_dt(float raw, int softplus, bool clamp, float lo, float hi) {
        float d = raw;
        if (softplus) d = dt_softplus(d);
        if (clamp) d = fminf(fmaxf(d, lo), hi);
        return d;
    }

    """#
}
