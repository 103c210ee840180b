// The door to NVIDIA GPUs without a CUDA build: the driver API (libcuda.so.1) and NVRTC (libnvrtc) are
// loaded at run time with dlopen, and only the few functions we use are declared here. On a machine
// without them every call reports a clear error; nothing else in the package depends on CUDA.
#ifndef CMAMBA2_CUDA_H
#define CMAMBA2_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Loads the driver and NVRTC, initializes the driver, and makes a context on device 0.
// Returns 0, or non-zero with a message in err.
int mkc_open(char *err, int errlen);
// Name, memory and compute capability of the device in use.
int mkc_device_info(char *name, int namelen, size_t *totalMemory, int *major, int *minor);
int mkc_multiprocessors(void);
// Compiles CUDA C++ source with NVRTC for the given architecture ("sm_90") and loads it as a module, or
// loads the CUBIN of an earlier compilation from the on-disk cache (fromCache is then 1). The compiler
// log goes to log on failure.
int mkc_compile(const char *source, const char *name, const char *arch, void **module, int *fromCache, char *log, int loglen);
int mkc_function(void *module, const char *name, void **function);
int mkc_alloc(size_t bytes, uint64_t *devicePointer);
int mkc_free(uint64_t devicePointer);
int mkc_copy_to_device(uint64_t devicePointer, const void *host, size_t bytes);
int mkc_copy_to_host(void *host, uint64_t devicePointer, size_t bytes);
// Launches function with a grid and block shape, dynamic shared memory, and kernel parameters.
int mkc_launch(void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               unsigned sharedBytes, void **params);
// Work is queued on one stream; synchronize waits for it. Copies to and from the host wait too.
int mkc_synchronize(void);
// The same launch, allowed to start before the previous kernel on the stream ends (programmatic dependent
// launch, sm_90+): the kernel must execute griddepcontrol.wait before it reads what that kernel wrote.
int mkc_launch_dependent(void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                         unsigned sharedBytes, void **params);
// Sets count 32-bit words to value (asynchronously).
int mkc_fill32(uint64_t devicePointer, unsigned value, size_t count);
// CUDA graphs: what is launched between begin and end is captured (not run) and instantiated into exec,
// which graph_launch replays with one call.
int mkc_capture_begin(void);
int mkc_capture_end(void **exec);
int mkc_graph_launch(void *exec);
void mkc_graph_destroy(void *exec);
// cuBLAS (libcublas.so.13/.12), loaded on first use; blas_path says which file was loaded.
int mkc_blas_open(char *err, int errlen);
const char *mkc_blas_path(void);
// Row-major Y (rows, out) = X (rows, in) · Wᵀ + beta·Y, W (out, in) row-major as PyTorch stores a Linear;
// X and W of elementType (0 f32, 1 bf16, 2 f16), Y float32, float32 accumulation (pedantic: no TF32
// or other reduced-precision shortcuts for f32). Returns a cuBLAS status (0 = success).
int mkc_gemm_rows(int rows, int out, int in, const void *X, const void *W, int elementType, float *Y, float beta, int pedantic);
// Lets a kernel use more than 48 KiB of dynamic shared memory (up to the device's opt-in limit).
int mkc_set_max_shared(void *function, int bytes);
// The driver's description of an error code returned by the calls above.
const char *mkc_error_string(int code);

#ifdef __cplusplus
}
#endif
#endif
