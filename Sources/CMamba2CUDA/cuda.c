// Run-time loading of the CUDA driver API and NVRTC. See CMamba2CUDA.h.
#include "CMamba2CUDA.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef uint64_t CUdeviceptr;
typedef int nvrtcResult;
typedef void *nvrtcProgram;
typedef void *CUstream;
typedef void *CUgraph;
typedef void *CUevent;
typedef void *CUgraphExec;
typedef void *cublasHandle_t;
// cuLaunchKernelEx's configuration, as cuda.h (12.0+) lays it out.
typedef struct { int id; char pad[4]; union { char raw[64]; int programmaticStreamSerializationAllowed; void *align; } value; } CUlaunchAttribute;
typedef struct {
    unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes;
    CUstream hStream;
    CUlaunchAttribute *attrs;
    unsigned numAttrs;
} CUlaunchConfig;

// The libraries' entry points, loaded once per process (mkc_load); what belongs to one GPU is in mkc_device.
static struct {
    int loaded;
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetName)(char *, int, CUdevice);
    CUresult (*cuDeviceTotalMem)(size_t *, CUdevice);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*cuCtxSetCurrent)(CUcontext);
    CUresult (*cuLaunchKernelEx)(const CUlaunchConfig *, CUfunction, void **, void **);
    CUresult (*cuStreamCreate)(CUstream *, unsigned);
    CUresult (*cuStreamSynchronize)(CUstream);
    CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr, const void *, size_t, CUstream);
    CUresult (*cuMemcpyDtoHAsync)(void *, CUdeviceptr, size_t, CUstream);
    CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, CUstream);
    CUresult (*cuStreamBeginCapture)(CUstream, int);
    CUresult (*cuStreamEndCapture)(CUstream, CUgraph *);
    CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*cuGraphLaunch)(CUgraphExec, CUstream);
    CUresult (*cuGraphDestroy)(CUgraph);
    CUresult (*cuGraphExecDestroy)(CUgraphExec);
    CUresult (*cuStreamDestroy)(CUstream);
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice);
    CUresult (*cuMemcpyDtoDAsync)(CUdeviceptr, CUdeviceptr, size_t, CUstream);
    CUresult (*cuEventCreate)(CUevent *, unsigned);
    CUresult (*cuEventRecord)(CUevent, CUstream);
    CUresult (*cuStreamWaitEvent)(CUstream, CUevent, unsigned);
    CUresult (*cuEventDestroy)(CUevent);
    // cuBLAS, loaded on first use (mkc_blas_open).
    int blasLoaded;
    int (*cublasDestroy)(cublasHandle_t);
    int (*cublasCreate)(cublasHandle_t *);
    int (*cublasSetStream)(cublasHandle_t, CUstream);
    int (*cublasSetWorkspace)(cublasHandle_t, void *, size_t);
    int (*cublasGemmEx)(cublasHandle_t, int, int, int, int, int, const void *, const void *, int, int, const void *, int, int,
                        const void *, void *, int, int, int, int);
    char blasPath[512];
    // cuBLASLt, loaded beside cuBLAS when all of these are there (ltLoaded): decode's tuned products.
    int ltLoaded;
    int (*cublasLtCreate)(void **);
    int (*cublasLtDestroy)(void *);
    int (*cublasLtMatmulDescCreate)(void **, int, int);
    int (*cublasLtMatmulDescDestroy)(void *);
    int (*cublasLtMatmulDescSetAttribute)(void *, int, const void *, size_t);
    int (*cublasLtMatrixLayoutCreate)(void **, int, uint64_t, uint64_t, int64_t);
    int (*cublasLtMatrixLayoutDestroy)(void *);
    int (*cublasLtMatrixLayoutSetAttribute)(void *, int, const void *, size_t);
    int (*cublasLtMatmulPreferenceCreate)(void **);
    int (*cublasLtMatmulPreferenceDestroy)(void *);
    int (*cublasLtMatmulPreferenceSetAttribute)(void *, int, const void *, size_t);
    int (*cublasLtMatmulAlgoGetHeuristic)(void *, void *, void *, void *, void *, void *, void *, int, void *, int *);
    int (*cublasLtMatmul)(void *, void *, const void *, const void *, void *, const void *, void *, const void *, const void *, void *,
                          void *, void *, const void *, void *, size_t, CUstream);
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemGetInfo)(size_t *, size_t *);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                               void **, void **);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
    CUresult (*cuOccupancyMaxActiveBlocksPerMultiprocessor)(int *, CUfunction, int, size_t);
    CUresult (*cuGetErrorString)(CUresult, const char **);
    nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t *);
    nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char *);
    nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t *);
    nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char *);
    nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram *);
    nvrtcResult (*nvrtcVersion)(int *, int *);
} C;

// One GPU as one caller sees it: the device's primary context (shared by every mkc_device of that GPU and
// by the CUDA runtime, so cuBLAS too), and a stream, cuBLAS handle and workspace of its own. The context is
// made current on every call since Swift tasks may run on any thread.
struct mkc_device {
    int ordinal;
    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CUstream side;  // a second stream (collectives beside the compute), made on first use
    cublasHandle_t blas;
    CUdeviceptr blasWorkspace;
    void *lt;  // cuBLASLt handle, made by the first mkc_lt_plan_create
};

// cuBLAS's workspace per device (mkc_blas_open), which cuBLASLt's tuned products share.
#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20)

#define CUR(d) C.cuCtxSetCurrent((d)->ctx)

static void *open_first(const char *const *names) {
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

#define SYM(h, field, name) do { *(void **)&C.field = dlsym(h, name); \
    if (!C.field) { snprintf(err, errlen, "symbol %s missing from the CUDA libraries", name); return 1; } } while (0)

static int load_locked(char *err, int errlen);
static pthread_mutex_t loadLock = PTHREAD_MUTEX_INITIALIZER;

// Loads the libraries once per process, whichever thread asks first.
int mkc_load(char *err, int errlen) {
    pthread_mutex_lock(&loadLock);
    int r = load_locked(err, errlen);
    pthread_mutex_unlock(&loadLock);
    return r;
}

static int load_locked(char *err, int errlen) {
    if (C.loaded) return 0;
    static const char *const drivers[] = { "libcuda.so.1", "libcuda.so", NULL };
    static const char *const nvrtcs[] = { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so",
                                          "/usr/local/cuda/lib64/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12",
                                          "/usr/local/cuda/lib64/libnvrtc.so", NULL };
    void *cu = open_first(drivers);
    if (!cu) { snprintf(err, errlen, "no CUDA driver: libcuda.so.1 could not be loaded (an NVIDIA GPU and its driver are needed for --device cuda)"); return 1; }
    void *rtc = open_first(nvrtcs);
    if (!rtc) { snprintf(err, errlen, "no NVRTC: libnvrtc.so (CUDA 12 or 13) could not be loaded; it compiles the GPU kernels at run time"); return 1; }
    SYM(cu, cuInit, "cuInit"); SYM(cu, cuDeviceGetCount, "cuDeviceGetCount"); SYM(cu, cuDeviceGet, "cuDeviceGet");
    SYM(cu, cuDeviceGetName, "cuDeviceGetName"); SYM(cu, cuDeviceTotalMem, "cuDeviceTotalMem_v2");
    SYM(cu, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    SYM(cu, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"); SYM(cu, cuCtxSetCurrent, "cuCtxSetCurrent");
    SYM(cu, cuLaunchKernelEx, "cuLaunchKernelEx");
    SYM(cu, cuStreamCreate, "cuStreamCreate"); SYM(cu, cuStreamSynchronize, "cuStreamSynchronize");
    SYM(cu, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"); SYM(cu, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
    SYM(cu, cuMemsetD32Async, "cuMemsetD32Async");
    SYM(cu, cuStreamBeginCapture, "cuStreamBeginCapture_v2"); SYM(cu, cuStreamEndCapture, "cuStreamEndCapture");
    SYM(cu, cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags"); SYM(cu, cuGraphLaunch, "cuGraphLaunch");
    SYM(cu, cuGraphDestroy, "cuGraphDestroy"); SYM(cu, cuGraphExecDestroy, "cuGraphExecDestroy");
    SYM(cu, cuStreamDestroy, "cuStreamDestroy_v2"); SYM(cu, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
    SYM(cu, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2");
    SYM(cu, cuEventCreate, "cuEventCreate"); SYM(cu, cuEventRecord, "cuEventRecord");
    SYM(cu, cuStreamWaitEvent, "cuStreamWaitEvent"); SYM(cu, cuEventDestroy, "cuEventDestroy_v2");
    SYM(cu, cuModuleLoadData, "cuModuleLoadData"); SYM(cu, cuModuleGetFunction, "cuModuleGetFunction");
    SYM(cu, cuMemAlloc, "cuMemAlloc_v2"); SYM(cu, cuMemGetInfo, "cuMemGetInfo_v2"); SYM(cu, cuMemFree, "cuMemFree_v2");
    SYM(cu, cuLaunchKernel, "cuLaunchKernel");
    SYM(cu, cuFuncSetAttribute, "cuFuncSetAttribute"); SYM(cu, cuGetErrorString, "cuGetErrorString");
    SYM(cu, cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor");
    SYM(rtc, nvrtcCreateProgram, "nvrtcCreateProgram"); SYM(rtc, nvrtcCompileProgram, "nvrtcCompileProgram");
    SYM(rtc, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize"); SYM(rtc, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    SYM(rtc, nvrtcGetCUBINSize, "nvrtcGetCUBINSize"); SYM(rtc, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    SYM(rtc, nvrtcDestroyProgram, "nvrtcDestroyProgram"); SYM(rtc, nvrtcVersion, "nvrtcVersion");
    CUresult r = C.cuInit(0);
    if (r) { snprintf(err, errlen, "cuInit failed: %s", mkc_error_string(r)); return r; }
    C.loaded = 1;
    return 0;
}

int mkc_device_count(int *n) { *n = 0; return C.loaded ? C.cuDeviceGetCount(n) : 1; }

mkc_device *mkc_device_open(int ordinal, char *err, int errlen) {
    if (mkc_load(err, errlen)) return NULL;
    int n = 0;
    C.cuDeviceGetCount(&n);
    if (n < 1) { snprintf(err, errlen, "the CUDA driver sees no GPU"); return NULL; }
    if (ordinal < 0 || ordinal >= n) { snprintf(err, errlen, "no GPU %d: the driver sees %d (0..%d)", ordinal, n, n - 1); return NULL; }
    mkc_device *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of host memory"); return NULL; }
    d->ordinal = ordinal;
    CUresult r;
    if ((r = C.cuDeviceGet(&d->dev, ordinal)) || (r = C.cuDevicePrimaryCtxRetain(&d->ctx, d->dev)) || (r = C.cuCtxSetCurrent(d->ctx))) {
        snprintf(err, errlen, "no CUDA context on device %d: %s", ordinal, mkc_error_string(r));
        free(d);
        return NULL;
    }
    if ((r = C.cuStreamCreate(&d->stream, 1 /* CU_STREAM_NON_BLOCKING */))) {
        snprintf(err, errlen, "no CUDA stream on device %d: %s", ordinal, mkc_error_string(r));
        C.cuDevicePrimaryCtxRelease(d->dev);
        free(d);
        return NULL;
    }
    return d;
}

void mkc_device_close(mkc_device *d) {
    if (!d) return;
    CUR(d);
    C.cuStreamSynchronize(d->stream);
    if (d->blas) C.cublasDestroy(d->blas);
    if (d->lt) C.cublasLtDestroy(d->lt);
    if (d->blasWorkspace) C.cuMemFree(d->blasWorkspace);
    C.cuStreamDestroy(d->stream);
    if (d->side) { C.cuStreamSynchronize(d->side); C.cuStreamDestroy(d->side); }
    C.cuDevicePrimaryCtxRelease(d->dev);
    free(d);
}

const char *mkc_error_string(int code) {
    const char *s = NULL;
    if (C.cuGetErrorString && C.cuGetErrorString(code, &s) == 0 && s) return s;
    return "unknown CUDA error";
}

int mkc_device_info(mkc_device *d, char *name, int namelen, size_t *mem, int *major, int *minor) {
    CUR(d);
    int r = C.cuDeviceGetName(name, namelen, d->dev);
    if (!r) r = C.cuDeviceTotalMem(mem, d->dev);
    if (!r) r = C.cuDeviceGetAttribute(major, 75, d->dev);  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    if (!r) r = C.cuDeviceGetAttribute(minor, 76, d->dev);  // ..._MINOR
    return r;
}

uint64_t mkc_stream_id(mkc_device *d) { return (uint64_t)(uintptr_t)d->stream; }
uint64_t mkc_blas_id(mkc_device *d) { return (uint64_t)(uintptr_t)d->blas; }

int mkc_multiprocessors(mkc_device *d) {
    int n = 0;
    CUR(d);
    C.cuDeviceGetAttribute(&n, 16, d->dev);  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    return n;
}

// The on-disk cache of compiled kernels: $MAMBA2_KERNEL_CACHE, else $XDG_CACHE_HOME/mamba2/kernels, else
// $HOME/.cache/mamba2/kernels; one CUBIN per (source, name, architecture, options, NVRTC version), named by
// a 64-bit FNV-1a hash of them. A file that fails to load is ignored and replaced.
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static int cache_dir(char *dir, size_t n) {
    const char *env = getenv("MAMBA2_KERNEL_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(dir, n, "%s", env);
    else if (xdg && *xdg) snprintf(dir, n, "%s/mamba2/kernels", xdg);
    else if (home && *home) snprintf(dir, n, "%s/.cache/mamba2/kernels", home);
    else return 1;
    char partial[1024];
    size_t len = strlen(dir);
    for (size_t i = 1; i <= len; i++) {  // mkdir -p
        if (dir[i] == '/' || dir[i] == 0) {
            memcpy(partial, dir, i); partial[i] = 0;
            mkdir(partial, 0755);
        }
    }
    return 0;
}

static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *size = buf ? (size_t)n : 0;
    return buf;
}

static void write_file_atomically(const char *path, const void *data, size_t n) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int ok = fwrite(data, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    if (ok) rename(tmp, path); else remove(tmp);
}

int mkc_compile(mkc_device *d, const char *source, const char *name, const char *arch, void **module, int *fromCache, char *log, int loglen) {
    char archOpt[64];
    snprintf(archOpt, sizeof archOpt, "--gpu-architecture=%s", arch);
    const char *opts[] = { archOpt, "--std=c++17", "-default-device" };
    *fromCache = 0;
    CUR(d);
    int major = 0, minor = 0;
    C.nvrtcVersion(&major, &minor);
    uint64_t h = 14695981039346656037ull;
    h = fnv1a(h, source, strlen(source) + 1);
    h = fnv1a(h, name, strlen(name) + 1);
    for (int i = 0; i < 3; i++) h = fnv1a(h, opts[i], strlen(opts[i]) + 1);
    h = fnv1a(h, &major, sizeof major);
    h = fnv1a(h, &minor, sizeof minor);
    char dir[900], path[1000];
    int cacheOK = cache_dir(dir, sizeof dir) == 0;
    if (cacheOK) {
        snprintf(path, sizeof path, "%s/%016llx.cubin", dir, (unsigned long long)h);
        size_t size = 0;
        char *cubin = read_file(path, &size);
        if (cubin) {
            int r = C.cuModuleLoadData((CUmodule *)module, cubin);
            free(cubin);
            if (r == 0) { *fromCache = 1; return 0; }
        }
    }
    nvrtcProgram prog;
    if (C.nvrtcCreateProgram(&prog, source, name, 0, NULL, NULL)) { snprintf(log, loglen, "nvrtcCreateProgram failed"); return 1; }
    int r = C.nvrtcCompileProgram(prog, 3, opts);
    if (r) {
        size_t n = 0;
        C.nvrtcGetProgramLogSize(prog, &n);
        char *buf = malloc(n + 1);
        C.nvrtcGetProgramLog(prog, buf);
        snprintf(log, loglen, "%s", buf);
        free(buf);
        C.nvrtcDestroyProgram(&prog);
        return r;
    }
    size_t size = 0;
    C.nvrtcGetCUBINSize(prog, &size);
    char *cubin = malloc(size);
    C.nvrtcGetCUBIN(prog, cubin);
    C.nvrtcDestroyProgram(&prog);
    r = C.cuModuleLoadData((CUmodule *)module, cubin);
    if (r) snprintf(log, loglen, "cuModuleLoadData: %s", mkc_error_string(r));
    else if (cacheOK) write_file_atomically(path, cubin, size);
    free(cubin);
    return r;
}

int mkc_function(mkc_device *d, void *module, const char *name, void **fn) { CUR(d); return C.cuModuleGetFunction((CUfunction *)fn, module, name); }
int mkc_alloc(mkc_device *d, size_t bytes, uint64_t *p) { CUR(d); return C.cuMemAlloc(p, bytes); }
int mkc_free(mkc_device *d, uint64_t p) { CUR(d); return C.cuMemFree(p); }
int mkc_copy_to_device(mkc_device *d, uint64_t p, const void *h, size_t n) {
    CUR(d);
    int r = C.cuMemcpyHtoDAsync(p, h, n, d->stream);
    return r ? r : C.cuStreamSynchronize(d->stream);
}
int mkc_copy_to_host(mkc_device *d, void *h, uint64_t p, size_t n) {
    CUR(d);
    int r = C.cuMemcpyDtoHAsync(h, p, n, d->stream);
    return r ? r : C.cuStreamSynchronize(d->stream);
}
int mkc_copy_on_device(mkc_device *d, uint64_t dst, uint64_t src, size_t n) { CUR(d); return C.cuMemcpyDtoDAsync(dst, src, n, d->stream); }
int mkc_fill32(mkc_device *d, uint64_t p, unsigned value, size_t count) { CUR(d); return C.cuMemsetD32Async(p, value, count, d->stream); }
int mkc_launch(mkc_device *d, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void **params) {
    CUR(d);
    return C.cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, shared, d->stream, params, NULL);
}
int mkc_launch_dependent(mkc_device *d, void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared,
                         void **params) {
    CUR(d);
    CUlaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = 6;  // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    attr.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig cfg = { gx, gy, gz, bx, by, bz, shared, d->stream, &attr, 1 };
    return C.cuLaunchKernelEx(&cfg, (CUfunction)fn, params, NULL);
}
int mkc_synchronize(mkc_device *d) { CUR(d); return C.cuStreamSynchronize(d->stream); }
int mkc_set_max_shared(mkc_device *d, void *fn, int bytes) {
    CUR(d);
    return C.cuFuncSetAttribute((CUfunction)fn, 8, bytes);  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
}

int mkc_blocks_per_sm(mkc_device *d, void *fn, int blockSize, int sharedBytes, int *blocks) {
    CUR(d);
    return C.cuOccupancyMaxActiveBlocksPerMultiprocessor(blocks, (CUfunction)fn, blockSize, (size_t)sharedBytes);
}

int mkc_capture_begin(mkc_device *d) { CUR(d); return C.cuStreamBeginCapture(d->stream, 1 /* CU_STREAM_CAPTURE_MODE_THREAD_LOCAL */); }
int mkc_capture_end(mkc_device *d, void **exec) {
    CUR(d);
    CUgraph g = NULL;
    int r = C.cuStreamEndCapture(d->stream, &g);
    if (r) return r;
    r = C.cuGraphInstantiateWithFlags((CUgraphExec *)exec, g, 0);
    C.cuGraphDestroy(g);
    return r;
}
int mkc_graph_launch(mkc_device *d, void *exec) { CUR(d); return C.cuGraphLaunch((CUgraphExec)exec, d->stream); }
void mkc_graph_destroy(mkc_device *d, void *exec) { if (exec) { CUR(d); C.cuGraphExecDestroy((CUgraphExec)exec); } }

// Loads cuBLAS once per process.
static int blas_load(char *err, int errlen) {
    if (C.blasLoaded) return 0;
    // cuBLASLt first and globally, so that cuBLAS finds it wherever it was found.
    static const char *const lts[] = { "libcublasLt.so.13", "libcublasLt.so.12", "/usr/local/cuda/lib64/libcublasLt.so.13",
                                       "/usr/local/cuda/lib64/libcublasLt.so.12", "/usr/lib/x86_64-linux-gnu/libcublasLt.so.13",
                                       "/usr/lib/x86_64-linux-gnu/libcublasLt.so.12", NULL };
    static const char *const blases[] = { "libcublas.so.13", "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.13",
                                          "/usr/local/cuda/lib64/libcublas.so.12", "/usr/lib/x86_64-linux-gnu/libcublas.so.13",
                                          "/usr/lib/x86_64-linux-gnu/libcublas.so.12", NULL };
    void *lt = NULL;
    for (int i = 0; lts[i] && !lt; i++) lt = dlopen(lts[i], RTLD_NOW | RTLD_GLOBAL);
    if (lt) {  // optional: without it, decode's products stay on cublasGemmEx
        int all = 1;
#define LTSYM(field) do { *(void **)&C.field = dlsym(lt, #field); all = all && C.field; } while (0)
        LTSYM(cublasLtCreate); LTSYM(cublasLtDestroy); LTSYM(cublasLtMatmulDescCreate); LTSYM(cublasLtMatmulDescDestroy);
        LTSYM(cublasLtMatmulDescSetAttribute); LTSYM(cublasLtMatrixLayoutCreate); LTSYM(cublasLtMatrixLayoutDestroy);
        LTSYM(cublasLtMatrixLayoutSetAttribute);
        LTSYM(cublasLtMatmulPreferenceCreate); LTSYM(cublasLtMatmulPreferenceDestroy); LTSYM(cublasLtMatmulPreferenceSetAttribute);
        LTSYM(cublasLtMatmulAlgoGetHeuristic); LTSYM(cublasLtMatmul);
#undef LTSYM
        C.ltLoaded = all;
    }
    void *h = NULL;
    for (int i = 0; blases[i] && !h; i++) {
        h = dlopen(blases[i], RTLD_NOW | RTLD_LOCAL);
        if (h) snprintf(C.blasPath, sizeof C.blasPath, "%s", blases[i]);
    }
    if (!h) { snprintf(err, errlen, "no cuBLAS: libcublas.so.13 or .12 could not be loaded (looked on the loader's path and in /usr/local/cuda/lib64); the GPU model's projections need it"); return 1; }
    SYM(h, cublasCreate, "cublasCreate_v2"); SYM(h, cublasDestroy, "cublasDestroy_v2"); SYM(h, cublasSetStream, "cublasSetStream_v2");
    SYM(h, cublasGemmEx, "cublasGemmEx");
    *(void **)&C.cublasSetWorkspace = dlsym(h, "cublasSetWorkspace_v2");
    C.blasLoaded = 1;
    return 0;
}

int mkc_blas_open(mkc_device *d, char *err, int errlen) {
    if (d->blas) return 0;
    pthread_mutex_lock(&loadLock);
    int loaded = blas_load(err, errlen);
    pthread_mutex_unlock(&loadLock);
    if (loaded) return 1;
    CUR(d);
    cublasHandle_t handle;
    int r = C.cublasCreate(&handle);
    if (r) { snprintf(err, errlen, "cublasCreate failed with status %d", r); return 1; }
    if ((r = C.cublasSetStream(handle, d->stream))) { snprintf(err, errlen, "cublasSetStream failed with status %d", r); C.cublasDestroy(handle); return 1; }
    // A workspace of our own, so that products captured into CUDA graphs allocate nothing.
    const size_t wsBytes = BLAS_WORKSPACE_BYTES;
    if (C.cublasSetWorkspace && C.cuMemAlloc(&d->blasWorkspace, wsBytes) == 0) C.cublasSetWorkspace(handle, (void *)d->blasWorkspace, wsBytes);
    d->blas = handle;
    return 0;
}

const char *mkc_blas_path(void) { return C.blasPath; }

int mkc_gemm(mkc_device *d, int transA, int transB, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb,
             int abType, float beta, void *Cm, int ldc, int cType, int pedantic) {
    CUR(d);
    static const int types[] = { 0 /* CUDA_R_32F */, 14 /* CUDA_R_16BF */, 2 /* CUDA_R_16F */ };
    const int compute = abType == 0 && pedantic ? 69 /* CUBLAS_COMPUTE_32F_PEDANTIC */ : 68 /* CUBLAS_COMPUTE_32F */;
    return C.cublasGemmEx(d->blas, transA, transB, m, n, k, &alpha, A, types[abType], lda, B, types[abType], ldb, &beta, Cm,
                          types[cType], ldc, compute, -1 /* CUBLAS_GEMM_DEFAULT */);
}

// cublasLtMatmulHeuristicResult_t as cublasLt.h lays it out (96 bytes).
typedef struct { uint64_t algo[8]; size_t workspaceSize; int state; float wavesCount; int reserved[4]; } lt_result;
_Static_assert(sizeof(lt_result) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");
struct mkc_lt_plan {
    void *desc, *a, *b, *c;
    int count;
    lt_result results[MKC_LT_MAX_ALGOS];
};

void mkc_lt_plan_destroy(mkc_lt_plan *p) {
    if (!p) return;
    if (p->desc) C.cublasLtMatmulDescDestroy(p->desc);
    if (p->a) C.cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) C.cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) C.cublasLtMatrixLayoutDestroy(p->c);
    free(p);
}

// A layout's batch: `batch` matrices `stride` elements apart (nothing set for one).
static int lt_layout_batch(void *layout, int batch, int64_t stride) {
    if (batch <= 1) return 0;
    const int32_t count = batch;
    int r = C.cublasLtMatrixLayoutSetAttribute(layout, 5 /* CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT */, &count, sizeof count);
    if (!r) r = C.cublasLtMatrixLayoutSetAttribute(layout, 6 /* CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET */, &stride, sizeof stride);
    return r;
}

int mkc_lt_plan_create(mkc_device *d, int transA, int transB, int m, int n, int k, int lda, int ldb, int ldc, int abType, int cType,
                       int batch, int64_t strideA, int64_t strideB, int64_t strideC, int maxAlgos, mkc_lt_plan **out) {
    *out = NULL;
    if (!C.ltLoaded || !d->blas) return -1;
    CUR(d);
    if (!d->lt && C.cublasLtCreate(&d->lt)) { d->lt = NULL; return -1; }
    static const int types[] = { 0 /* CUDA_R_32F */, 14 /* CUDA_R_16BF */, 2 /* CUDA_R_16F */ };
    mkc_lt_plan *p = calloc(1, sizeof *p);
    if (!p) return -1;
    const int32_t ta = transA, tb = transB;
    void *pref = NULL;
    const uint64_t ws = d->blasWorkspace ? BLAS_WORKSPACE_BYTES : 0;
    int r = C.cublasLtMatmulDescCreate(&p->desc, 68 /* CUBLAS_COMPUTE_32F */, 0 /* CUDA_R_32F scale */);
    if (!r) r = C.cublasLtMatmulDescSetAttribute(p->desc, 3 /* CUBLASLT_MATMUL_DESC_TRANSA */, &ta, sizeof ta);
    if (!r) r = C.cublasLtMatmulDescSetAttribute(p->desc, 4 /* CUBLASLT_MATMUL_DESC_TRANSB */, &tb, sizeof tb);
    if (!r) r = C.cublasLtMatrixLayoutCreate(&p->a, types[abType], transA ? k : m, transA ? m : k, lda);
    if (!r) r = C.cublasLtMatrixLayoutCreate(&p->b, types[abType], transB ? n : k, transB ? k : n, ldb);
    if (!r) r = C.cublasLtMatrixLayoutCreate(&p->c, types[cType], m, n, ldc);
    if (!r) r = lt_layout_batch(p->a, batch, strideA);
    if (!r) r = lt_layout_batch(p->b, batch, strideB);
    if (!r) r = lt_layout_batch(p->c, batch, strideC);
    if (!r) r = C.cublasLtMatmulPreferenceCreate(&pref);
    if (!r) r = C.cublasLtMatmulPreferenceSetAttribute(pref, 1 /* CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES */, &ws, sizeof ws);
    if (!r) r = C.cublasLtMatmulAlgoGetHeuristic(d->lt, p->desc, p->a, p->b, p->c, p->c, pref,
                                                 maxAlgos < MKC_LT_MAX_ALGOS ? maxAlgos : MKC_LT_MAX_ALGOS, p->results, &p->count);
    if (pref) C.cublasLtMatmulPreferenceDestroy(pref);
    if (r || p->count <= 0) { mkc_lt_plan_destroy(p); return r ? r : -1; }
    *out = p;
    return 0;
}

int mkc_lt_plan_count(const mkc_lt_plan *p) { return p ? p->count : 0; }

int mkc_lt_matmul(mkc_device *d, const mkc_lt_plan *p, int index, float alpha, const void *A, const void *B, float beta, void *Cm) {
    if (!p || index < 0 || index >= p->count) return -1;
    CUR(d);
    const lt_result *res = &p->results[index];
    return C.cublasLtMatmul(d->lt, p->desc, &alpha, A, p->a, B, p->b, &beta, Cm, p->c, Cm, p->c, res->algo,
                            res->workspaceSize ? (void *)d->blasWorkspace : NULL, res->workspaceSize, d->stream);
}

int mkc_mem_info(mkc_device *d, size_t *freeBytes, size_t *totalBytes) { CUR(d); return C.cuMemGetInfo(freeBytes, totalBytes); }
void *mkc_stream_handle(mkc_device *d) { return (void *)d->stream; }

static CUstream pick_stream(mkc_device *d, int side) { return side ? d->side : d->stream; }
int mkc_side_stream_open(mkc_device *d) {
    if (d->side) return 0;
    CUR(d);
    return C.cuStreamCreate(&d->side, 1 /* CU_STREAM_NON_BLOCKING */);
}
void *mkc_side_stream_handle(mkc_device *d) { return (void *)d->side; }
int mkc_event_create(mkc_device *d, void **event) { CUR(d); return C.cuEventCreate((CUevent *)event, 2 /* CU_EVENT_DISABLE_TIMING */); }
int mkc_event_record(mkc_device *d, void *event, int side) {
    if (side && !d->side) return 1;
    CUR(d);
    return C.cuEventRecord((CUevent)event, pick_stream(d, side));
}
int mkc_stream_wait_event(mkc_device *d, void *event, int side) {
    if (side && !d->side) return 1;
    CUR(d);
    return C.cuStreamWaitEvent(pick_stream(d, side), (CUevent)event, 0);
}
void mkc_event_destroy(mkc_device *d, void *event) { if (event) { CUR(d); C.cuEventDestroy((CUevent)event); } }
