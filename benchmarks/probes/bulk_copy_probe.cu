// What rate 1-D bulk copies (cp.async.bulk, global -> shared, counted on mbarriers) stream at on one GPU, by copy
// size, copies a stage and ring depth, with nothing computed: the question left open by m_decode_product
// (results/gpu-decode-own-product.txt), whose stages took a nearly fixed ~1.2 us whatever their bytes.
// One block of 256 threads per multiprocessor streams its own 4 MB share of a 528 MB buffer (10x the L2); each
// consumer thread reads 16 bytes of every landed slot, so a slot is reused only after it was read.
//   mode 0, a block's ring: a stage is K copies of C bytes (lanes 0..K-1 of warp 0 issue them), every thread waits
//           for the stage, the block meets at a barrier, the slot takes the stage S ahead (m_decode_product's form);
//   mode 1, a ring per warp: each of the 8 warps streams its eighth through S slots of C bytes, lane 0 issuing one
//           copy a slot, no block barrier (the persistent decode's form).
// Build and run on the GPU machine: nvcc -arch=sm_90a -O3 -o bulk_copy_probe bulk_copy_probe.cu && ./bulk_copy_probe
#include <cstdio>
#include <cuda_runtime.h>

__device__ __forceinline__ unsigned sa(const void* p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void bar_init(unsigned b) { asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(b) : "memory"); }
__device__ __forceinline__ void expect(unsigned b, unsigned n) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(b), "r"(n) : "memory");
}
__device__ __forceinline__ void bulk(unsigned dst, const void* src, unsigned n, unsigned b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(dst), "l"(src), "r"(n), "r"(b) : "memory");
}
__device__ __forceinline__ void wait(unsigned b, unsigned parity) {
    asm volatile("{\n .reg .pred p;\n W:\n mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n @!p bra W;\n}"
                 :: "r"(b), "r"(parity) : "memory");
}
__device__ __forceinline__ void proxy_fence() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

__global__ void __launch_bounds__(256, 1) probe(const char* src, size_t perBlock, int C, int K, int S, int mode, unsigned* sink) {
    extern __shared__ __align__(128) unsigned char ring[];
    __shared__ __align__(8) unsigned long long full[128];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const char* base = src + (size_t)blockIdx.x * perBlock;
    unsigned acc = 0;
    if (mode == 0) {
        const int stageBytes = K * C, n = (int)(perBlock / stageBytes);
        if (tid == 0) { for (int i = 0; i < S; i++) bar_init(sa(&full[i])); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
        __syncthreads();
        auto issue = [&](int q) {
            if (q >= n || tid >= K) return;
            const unsigned b = sa(&full[q % S]);
            if (tid == 0) expect(b, stageBytes);
            bulk(sa(ring + (size_t)(q % S) * stageBytes + (size_t)tid * C), base + (size_t)q * stageBytes + (size_t)tid * C, C, b);
        };
        for (int q = 0; q < S - 1; q++) issue(q);
        for (int q = 0; q < n; q++) {
            if (tid < K) proxy_fence();
            issue(q + S - 1);
            wait(sa(&full[q % S]), (q / S) & 1);
            acc ^= *(const unsigned*)(ring + (size_t)(q % S) * stageBytes + (size_t)(tid * 16) % stageBytes);
            __syncthreads();
        }
    } else {
        const size_t mine = perBlock / 8;
        const int n = (int)(mine / C);
        unsigned char* wring = ring + (size_t)warp * S * C;
        unsigned long long* wfull = full + warp * S;
        if (lane == 0) { for (int i = 0; i < S; i++) bar_init(sa(&wfull[i])); asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }
        __syncwarp();
        auto issue = [&](int q) {
            if (q >= n || lane != 0) return;
            const unsigned b = sa(&wfull[q % S]);
            expect(b, C);
            bulk(sa(wring + (size_t)(q % S) * C), base + (size_t)warp * mine + (size_t)q * C, C, b);
        };
        for (int q = 0; q < S; q++) issue(q);
        for (int q = 0; q < n; q++) {
            wait(sa(&wfull[q % S]), (q / S) & 1);
            acc ^= *(const unsigned*)(wring + (size_t)(q % S) * C + (size_t)(lane * 16) % C);
            __syncwarp();
            if (lane == 0) proxy_fence();
            issue(q + S);
        }
    }
    if (acc == 0x12345678u) sink[blockIdx.x] = acc;
}

int main() {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    const size_t perBlock = 4u << 20;
    char* src; unsigned* sink;
    cudaMalloc(&src, perBlock * sms); cudaMalloc(&sink, 4 * sms);
    cudaMemset(src, 1, perBlock * sms);
    cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    struct Run { int mode, C, K, S; };
    const Run runs[] = {
        {0, 512, 8, 16}, {0, 1536, 8, 16}, {0, 5120, 8, 4}, {0, 5120, 8, 2}, {0, 10240, 8, 2},
        {0, 512, 96, 4}, {0, 8192, 1, 16}, {0, 40960, 1, 4},
        {1, 1536, 0, 16}, {1, 5120, 0, 4}, {1, 10240, 0, 2}, {1, 10240, 0, 1}, {1, 20480, 0, 1},
    };
    printf("mode  copy bytes  copies/stage  stages  smem KB   GB/s   us per stage (mode 0) or slot (mode 1)\n");
    for (const Run& r : runs) {
        const int K = r.mode == 0 ? r.K : 1;
        const size_t smem = r.mode == 0 ? (size_t)r.S * r.K * r.C : (size_t)8 * r.S * r.C;
        if (smem > 200 * 1024) { printf("%d %d: too much shared memory\n", r.mode, r.C); continue; }
        probe<<<sms, 256, smem>>>(src, perBlock, r.C, K, r.S, r.mode, sink);
        cudaEventRecord(a);
        for (int i = 0; i < 5; i++) probe<<<sms, 256, smem>>>(src, perBlock, r.C, K, r.S, r.mode, sink);
        cudaEventRecord(b); cudaEventSynchronize(b);
        float ms = 0; cudaEventElapsedTime(&ms, a, b);
        const cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) { printf("error %s\n", cudaGetErrorString(e)); return 1; }
        const double s = ms / 5 / 1e3, gbs = perBlock * (double)sms / s / 1e9;
        const double units = r.mode == 0 ? (double)perBlock / (r.K * r.C) : (double)perBlock / 8 / r.C;
        printf("%4d  %10d  %12d  %6d  %7zu  %6.0f  %.3f\n", r.mode, r.C, K, r.S, smem / 1024, gbs, s * 1e6 / units);
    }
    return 0;
}
