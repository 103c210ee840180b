extension CUDAKernelSource {
    /// One token's dt from its raw value plus the head's bias (u), as mamba_ssm computes it: softplus, then the
    /// clamp to dt_limit. Put in front of every module that makes dt (the plain chunked SSD and its backward, the
    /// tensor-core SSD, the model's decode step), so that the forward passes, the decode step and the backward
    /// all take dt from the same float32 operations.
    static let dtTransform = #"""
    // softplus(u) = log(1 + e^u); past u = 20 that is u in float32, and e^u would overflow far beyond.
    __device__ __forceinline__ float dt_softplus(float u) { return u <= 20.f ? log1pf(expf(u)) : u; }
    // dt_limit = (lo, hi) clamps dt; callers skip it for the default (0, ∞), where it changes nothing.
    __device__ __forceinline__ float dt_clamp(float d, float lo, float hi) { return fminf(fmaxf(d, lo), hi); }

    """#
}
