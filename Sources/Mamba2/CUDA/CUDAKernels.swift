/// CUDA C++ source of the GPU kernels, compiled at run time by NVRTC for the device's architecture.
enum CUDAKernelSource {
    /// The SSD decode step for one sequence and layer: one block per head, one thread per channel p.
    /// Same contract as the CPU's mk_ssd_decode_step.
    static let ssdDecodeStep = #"""
    extern "C" __global__ void ssd_decode_step(int H, int P, int N, int G, const float* dtRaw, const float* dtBias,
                                               const float* A, float lo, float hi, const float* x, const float* B,
                                               const float* C, const float* D, int dPerChannel, float* state, float* y) {
        const int h = blockIdx.x;
        const int p = blockIdx.y * blockDim.x + threadIdx.x;
        if (p >= P) return;
        const float u = dtRaw[h] + dtBias[h];
        float dt = u <= 20.f ? log1pf(expf(u)) : u;
        dt = fminf(fmaxf(dt, lo), hi);
        const float decay = expf(dt * A[h]);
        const int g = h / (H / G);
        const float xp = x[h * P + p];
        const float dx = dt * xp;
        float* s = state + ((size_t)h * P + p) * N;
        const float* b = B + (size_t)g * N;
        const float* c = C + (size_t)g * N;
        float acc = 0.f;
        for (int n = 0; n < N; n++) {
            const float v = decay * s[n] + dx * b[n];
            s[n] = v;
            acc += v * c[n];
        }
        y[h * P + p] = acc + (dPerChannel ? D[h * P + p] : D[h]) * xp;
    }
    """#
}
