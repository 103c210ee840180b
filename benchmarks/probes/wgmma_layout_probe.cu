// Which shared-memory layouts and descriptors wgmma (sm_90a) reads as we mean them, checked exactly against the CPU
// before the SSD's Hopper kernels rely on them (issue 20). Every operand is bf16 with small integer values, so the
// float32 products are exact and any layout slip shows as a nonzero difference.
//
// Layout used throughout: 128-byte swizzle, rows of 64 16-bit values (128 bytes) at a 128-byte stride, the
// 16-byte piece j of row r stored at piece j ^ (r % 8); a row longer than 64 values is split into regions of 64
// (region k holds columns 64k … 64k + 63 of every row). Buffers 1024-byte aligned.
//   test 1: A K-major from shared memory (C: rows = M, columns = K), B K-major (H: rows = N, columns = K), with
//           row offsets (A's rows 64…127, B's rows 32…63), K = 128 in two regions: the scan's C·h_inᵀ;
//   test 2: A from registers (mma.m16n8k16's A fragment, per warp), B MN-major (X: rows = K, columns = N) read
//           transposed, N = 32 at column offset 32 inside the 128-byte row: the scan's M·X;
//   test 3: the same with N = 64 at offset 0;
//   tests 4, 5: A MN-major (Xᵀ: X stored rows = K (tokens), columns = M), B MN-major with N = 128 in two regions:
//           the state kernel's (w∘X)ᵀ·B, once with (LBO, SBO) = (region, 1024) and once (1024, region), to learn
//           which field the region stride belongs in.
// On the H200 (2026-12-04; CUDA 13.0's nvcc): tests 1-4 exact, test 5 off by 293. So: K-major swizzled operands take
// SBO = 1024 (LBO unused), the start address moved by 32 bytes a k-step and by 128 bytes a row; MN-major ones take
// LBO = the stride between 64-column regions and SBO = 1024 (the next 8 rows of K), and a start 64 bytes into a row
// (an N = 32 operand at column 32) reads columns 32-63 as meant.
// Build and run on the GPU machine:
//   nvcc -gencode=arch=compute_90a,code=sm_90a -O2 -o wgmma_layout_probe wgmma_layout_probe.cu && ./wgmma_layout_probe
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cuda_runtime.h>

typedef unsigned short u16;
typedef unsigned u32;

__host__ __device__ inline u16 bf(float f) { u32 u; memcpy(&u, &f, 4); return (u16)(u >> 16); }
__host__ __device__ inline float fb(u16 h) { u32 u = (u32)h << 16; float f; memcpy(&f, &u, 4); return f; }

// Byte offset of element (r, c) in the swizzled layout of `rows` rows.
__host__ __device__ inline int swz(int r, int c, int rows) {
    return (c / 64) * rows * 128 + r * 128 + ((((c % 64) / 8) ^ (r % 8)) * 16) + (c % 8) * 2;
}

__device__ inline u32 sa(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ inline unsigned long long desc(const void* p, u32 lbo, u32 sbo) {
    return (unsigned long long)((sa(p) & 0x3FFFF) >> 4) | ((unsigned long long)(lbo >> 4) << 16)
         | ((unsigned long long)(sbo >> 4) << 32) | (1ull << 62);
}
__device__ inline void wg_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ inline void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
__device__ inline void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory"); }

#define ACC16(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
#define R16 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define R32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"

template <int TA, int TB> __device__ inline void mma_n32_ss(float* d, unsigned long long a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " R16 ", %16, %17, 1, 1, 1, %18, %19;"
                 : ACC16(d) : "l"(a), "l"(b), "n"(TA), "n"(TB));
}
template <int TB> __device__ inline void mma_n32_rs(float* d, const u32* a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " R16 ", {%16,%17,%18,%19}, %20, 1, 1, 1, %21;"
                 : ACC16(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TB));
}
template <int TB> __device__ inline void mma_n64_rs(float* d, const u32* a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " R32 ", {%32,%33,%34,%35}, %36, 1, 1, 1, %37;"
                 : ACC16(d), ACC16((d + 16)) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TB));
}
// m64n128k16, both operands from shared memory: 64 accumulators, issued as two m64n64 halves would change the
// question, so the probe issues the one instruction.
template <int TA, int TB> __device__ inline void mma_n128_ss(float* d, unsigned long long a, unsigned long long b) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
                 "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63},"
                 " %64, %65, 1, 1, 1, %66, %67;"
                 : ACC16(d), ACC16((d + 16)), ACC16((d + 32)), ACC16((d + 48)) : "l"(a), "l"(b), "n"(TA), "n"(TB));
}

// Writes the accumulator fragment (64 rows × n) to out[row][n].
__device__ inline void store_acc(const float* d, int n, float* out) {
    const int t = threadIdx.x, w = t / 32, l = t % 32, r = 16 * w + l / 4;
    for (int j = 0; j < n / 8; j++) for (int k = 0; k < 4; k++)
        out[(r + 8 * (k / 2)) * n + 8 * j + 2 * (l % 4) + (k % 2)] = d[4 * j + k];
}

// Copies a host-laid-out (rows × cols) matrix into shared memory in the swizzled layout.
__device__ inline void fill(unsigned char* s, const u16* g, int rows, int cols) {
    for (int e = threadIdx.x; e < rows * cols; e += blockDim.x) *(u16*)(s + swz(e / cols, e % cols, rows)) = g[e];
}

__global__ void __launch_bounds__(128) probe(int test, const u16* A, const u16* B, float* out) {
    extern __shared__ __align__(1024) unsigned char sm[];
    unsigned char* sA = sm;            // 32 KB
    unsigned char* sB = sm + 32768;    // 32 KB
    float d[64];
    for (int i = 0; i < 64; i++) d[i] = 0.f;
    const int t = threadIdx.x, w = t / 32, l = t % 32;
    if (test == 1) {  // A: 128 × 128 (rows × K), rows 64…127 used; B: 64 × 128 (N rows × K), rows 32…63 used
        fill(sA, A, 128, 128);
        fill(sB, B, 64, 128);
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        wg_fence();
        for (int k = 0; k < 128; k += 16) {
            const int ra = (k / 64) * 128 * 128 + 64 * 128 + (k % 64) * 2, rb = (k / 64) * 64 * 128 + 32 * 128 + (k % 64) * 2;
            mma_n32_ss<0, 0>(d, desc(sA + ra, 16, 1024), desc(sB + rb, 16, 1024));
        }
        wg_commit(); wg_wait0();
        store_acc(d, 32, out);
    } else if (test == 2 || test == 3) {  // A (64 × 128) from registers; X: 128 × 64 (K rows × N)
        fill(sB, B, 128, 64);
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        const int g = l / 4, c = l % 4, r = 16 * w + g;
        auto pk = [&](int rr, int kk) { return (u32)A[rr * 128 + kk] | ((u32)A[rr * 128 + kk + 1] << 16); };
        u32 af[8][4];
        for (int ks = 0; ks < 8; ks++) {
            const int k = 16 * ks + 2 * c;
            af[ks][0] = pk(r, k); af[ks][1] = pk(r + 8, k); af[ks][2] = pk(r, k + 8); af[ks][3] = pk(r + 8, k + 8);
        }
        wg_fence();
        for (int ks = 0; ks < 8; ks++) {
            if (test == 2) mma_n32_rs<1>(d, af[ks], desc(sB + 16 * ks * 128 + 64, 1024, 1024));
            else mma_n64_rs<1>(d, af[ks], desc(sB + 16 * ks * 128, 1024, 1024));
        }
        wg_commit(); wg_wait0();
        store_acc(d, test == 2 ? 32 : 64, out);
    } else {  // tests 4, 5: X 128 × 64 (K rows × M) read as Aᵀ; B 128 × 128 (K rows × N) in two regions of 64
        fill(sA, A, 128, 64);
        fill(sB, B, 128, 128);
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
        const u32 region = 128 * 128;
        wg_fence();
        for (int k = 0; k < 128; k += 16) {
            const unsigned long long da = desc(sA + k * 128, 1024, 1024);
            const unsigned long long db = test == 4 ? desc(sB + k * 128, region, 1024) : desc(sB + k * 128, 1024, region);
            mma_n128_ss<1, 1>(d, da, db);
        }
        wg_commit(); wg_wait0();
        store_acc(d, 128, out);
    }
}

int main() {
    const int n = 128 * 128;
    u16 *hA = (u16*)malloc(n * 2), *hB = (u16*)malloc(n * 2);
    srand(7);
    for (int i = 0; i < n; i++) { hA[i] = bf((float)(rand() % 9 - 4)); hB[i] = bf((float)(rand() % 9 - 4)); }
    u16 *dA, *dB; float* dO;
    cudaMalloc(&dA, n * 2); cudaMalloc(&dB, n * 2); cudaMalloc(&dO, 64 * 128 * 4);
    cudaMemcpy(dA, hA, n * 2, cudaMemcpyHostToDevice); cudaMemcpy(dB, hB, n * 2, cudaMemcpyHostToDevice);
    cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, 65536 + 1024);
    float* o = (float*)malloc(64 * 128 * 4);
    const char* names[] = {"", "1 C·Hᵀ K-major both, row offsets, 2 regions", "2 A regs, X MN-major n32 at +64 B",
                           "3 A regs, X MN-major n64", "4 Xᵀ MN-major, B MN-major n128, LBO = region", "5 same, SBO = region"};
    int bad = 0;
    for (int test = 1; test <= 5; test++) {
        cudaMemset(dO, 0, 64 * 128 * 4);
        probe<<<1, 128, 65536>>>(test, dA, dB, dO);
        cudaError_t e = cudaDeviceSynchronize();
        if (e != cudaSuccess) { printf("test %d: CUDA error %s\n", test, cudaGetErrorString(e)); return 2; }
        cudaMemcpy(o, dO, 64 * 128 * 4, cudaMemcpyDeviceToHost);
        const int N = test == 1 || test == 2 ? 32 : test == 3 ? 64 : 128;
        double worst = 0;
        for (int i = 0; i < 64; i++) for (int j = 0; j < N; j++) {
            double ref = 0;
            for (int k = 0; k < 128; k++) {
                double a, b;
                if (test == 1) { a = fb(hA[(64 + i) * 128 + k]); b = fb(hB[(32 + j) * 128 + k]); }
                else if (test <= 3) { a = fb(hA[i * 128 + k]); b = fb(hB[k * 64 + j + (test == 2 ? 32 : 0)]); }
                else { a = fb(hA[k * 64 + i]); b = fb(hB[k * 128 + j]); }
                ref += a * b;
            }
            const double diff = fabs(ref - o[i * N + j]);
            if (diff > worst) worst = diff;
        }
        printf("test %s: worst |difference| %g%s\n", names[test], worst, worst == 0 ? " (exact)" : "  <-- layout wrong");
        if (worst != 0 && test < 4) bad = 1;
    }
    return bad;
}
