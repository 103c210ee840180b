// Run-time loading of the CUDA driver API and NVRTC. See CMamba2CUDA.h.
#include "CMamba2CUDA.h"
#include <dlfcn.h>
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

static struct {
    int loaded;
    CUcontext ctx;
    CUdevice dev;
    CUresult (*cuInit)(unsigned);
    CUresult (*cuDeviceGetCount)(int *);
    CUresult (*cuDeviceGet)(CUdevice *, int);
    CUresult (*cuDeviceGetName)(char *, int, CUdevice);
    CUresult (*cuDeviceTotalMem)(size_t *, CUdevice);
    CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
    CUresult (*cuCtxCreate)(CUcontext *, unsigned, CUdevice);
    CUresult (*cuModuleLoadData)(CUmodule *, const void *);
    CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
    CUresult (*cuMemFree)(CUdeviceptr);
    CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                               void **, void **);
    CUresult (*cuCtxSynchronize)(void);
    CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
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

static void *open_first(const char *const *names) {
    for (int i = 0; names[i]; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

#define SYM(h, field, name) do { *(void **)&C.field = dlsym(h, name); \
    if (!C.field) { snprintf(err, errlen, "symbol %s missing from the CUDA libraries", name); return 1; } } while (0)

int mkc_open(char *err, int errlen) {
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
    SYM(cu, cuDeviceGetAttribute, "cuDeviceGetAttribute"); SYM(cu, cuCtxCreate, "cuCtxCreate_v2");
    SYM(cu, cuModuleLoadData, "cuModuleLoadData"); SYM(cu, cuModuleGetFunction, "cuModuleGetFunction");
    SYM(cu, cuMemAlloc, "cuMemAlloc_v2"); SYM(cu, cuMemFree, "cuMemFree_v2"); SYM(cu, cuMemcpyHtoD, "cuMemcpyHtoD_v2");
    SYM(cu, cuMemcpyDtoH, "cuMemcpyDtoH_v2"); SYM(cu, cuLaunchKernel, "cuLaunchKernel");
    SYM(cu, cuCtxSynchronize, "cuCtxSynchronize"); SYM(cu, cuFuncSetAttribute, "cuFuncSetAttribute"); SYM(cu, cuGetErrorString, "cuGetErrorString");
    SYM(rtc, nvrtcCreateProgram, "nvrtcCreateProgram"); SYM(rtc, nvrtcCompileProgram, "nvrtcCompileProgram");
    SYM(rtc, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize"); SYM(rtc, nvrtcGetProgramLog, "nvrtcGetProgramLog");
    SYM(rtc, nvrtcGetCUBINSize, "nvrtcGetCUBINSize"); SYM(rtc, nvrtcGetCUBIN, "nvrtcGetCUBIN");
    SYM(rtc, nvrtcDestroyProgram, "nvrtcDestroyProgram"); SYM(rtc, nvrtcVersion, "nvrtcVersion");
    CUresult r = C.cuInit(0);
    if (r) { snprintf(err, errlen, "cuInit failed: %s", mkc_error_string(r)); return r; }
    int n = 0;
    C.cuDeviceGetCount(&n);
    if (n < 1) { snprintf(err, errlen, "the CUDA driver sees no GPU"); return 1; }
    if ((r = C.cuDeviceGet(&C.dev, 0)) || (r = C.cuCtxCreate(&C.ctx, 0, C.dev))) {
        snprintf(err, errlen, "no CUDA context on device 0: %s", mkc_error_string(r));
        return r;
    }
    C.loaded = 1;
    return 0;
}

const char *mkc_error_string(int code) {
    const char *s = NULL;
    if (C.cuGetErrorString && C.cuGetErrorString(code, &s) == 0 && s) return s;
    return "unknown CUDA error";
}

int mkc_device_info(char *name, int namelen, size_t *mem, int *major, int *minor) {
    int r = C.cuDeviceGetName(name, namelen, C.dev);
    if (!r) r = C.cuDeviceTotalMem(mem, C.dev);
    if (!r) r = C.cuDeviceGetAttribute(major, 75, C.dev);  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    if (!r) r = C.cuDeviceGetAttribute(minor, 76, C.dev);  // ..._MINOR
    return r;
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

int mkc_compile(const char *source, const char *name, const char *arch, void **module, int *fromCache, char *log, int loglen) {
    char archOpt[64];
    snprintf(archOpt, sizeof archOpt, "--gpu-architecture=%s", arch);
    const char *opts[] = { archOpt, "--std=c++17", "-default-device" };
    *fromCache = 0;
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

int mkc_function(void *module, const char *name, void **fn) { return C.cuModuleGetFunction((CUfunction *)fn, module, name); }
int mkc_alloc(size_t bytes, uint64_t *p) { return C.cuMemAlloc(p, bytes); }
int mkc_free(uint64_t p) { return C.cuMemFree(p); }
int mkc_copy_to_device(uint64_t p, const void *h, size_t n) { return C.cuMemcpyHtoD(p, h, n); }
int mkc_copy_to_host(void *h, uint64_t p, size_t n) { return C.cuMemcpyDtoH(h, p, n); }
int mkc_launch(void *fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void **params) {
    return C.cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, shared, NULL, params, NULL);
}
int mkc_synchronize(void) { return C.cuCtxSynchronize(); }
int mkc_set_max_shared(void *fn, int bytes) {
    return C.cuFuncSetAttribute((CUfunction)fn, 8, bytes);  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
}
