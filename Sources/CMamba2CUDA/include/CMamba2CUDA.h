// The door to NVIDIA GPUs without a CUDA build: the driver API (libcuda.so.1), NVRTC (libnvrtc) and cuBLAS are
// loaded at run time with dlopen, and only the few functions we use are declared here. On a machine
// without them every call reports a clear error; nothing else in the package depends on CUDA.
//
// A GPU is an object (mkc_device): the device's primary context, and a stream, a cuBLAS handle and its
// workspace of its own. Several can be open at once, on one GPU or on several; each call names one.
#ifndef CMAMBA2_CUDA_H
#define CMAMBA2_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mkc_device mkc_device;

// Loads the driver and NVRTC and initializes the driver (once per process). 0, or non-zero with a message.
int mkc_load(char *err, int errlen);
// GPUs the driver sees (after mkc_load).
int mkc_device_count(int *n);
// Opens GPU `ordinal`: retains its primary context and makes a stream. NULL with a message in err.
mkc_device *mkc_device_open(int ordinal, char *err, int errlen);
// Waits for the device's stream, then releases its stream, cuBLAS handle, workspace and context.
void mkc_device_close(mkc_device *d);
// Name, memory and compute capability.
int mkc_device_info(mkc_device *d, char *name, int namelen, size_t *totalMemory, int *major, int *minor);
int mkc_multiprocessors(mkc_device *d);
// The device's stream and cuBLAS handle (0 before mkc_blas_open), as numbers: to tell two devices apart.
uint64_t mkc_stream_id(mkc_device *d);
uint64_t mkc_blas_id(mkc_device *d);
// Compiles CUDA C++ source with NVRTC for the given architecture ("sm_90") and loads it as a module, or
// loads the CUBIN of an earlier compilation from the on-disk cache (fromCache is then 1). The compiler
// log goes to log on failure.
int mkc_compile(mkc_device *d, const char *source, const char *name, const char *arch, void **module, int *fromCache, char *log, int loglen);
int mkc_function(mkc_device *d, void *module, const char *name, void **function);
int mkc_alloc(mkc_device *d, size_t bytes, uint64_t *devicePointer);
int mkc_free(mkc_device *d, uint64_t devicePointer);
// Copies to and from the host wait for the stream; a copy on the device is queued on it.
int mkc_copy_to_device(mkc_device *d, uint64_t devicePointer, const void *host, size_t bytes);
int mkc_copy_to_host(mkc_device *d, void *host, uint64_t devicePointer, size_t bytes);
int mkc_copy_on_device(mkc_device *d, uint64_t destination, uint64_t source, size_t bytes);
// Launches function with a grid and block shape, dynamic shared memory, and kernel parameters.
int mkc_launch(mkc_device *d, void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
               unsigned sharedBytes, void **params);
// Waits for the device's stream.
int mkc_synchronize(mkc_device *d);
// The same launch, allowed to start before the previous kernel on the stream ends (programmatic dependent
// launch, sm_90+): the kernel must execute griddepcontrol.wait before it reads what that kernel wrote.
int mkc_launch_dependent(mkc_device *d, void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                         unsigned sharedBytes, void **params);
// Sets count 32-bit words to value (asynchronously).
int mkc_fill32(mkc_device *d, uint64_t devicePointer, unsigned value, size_t count);
// CUDA graphs: what is launched on the device's stream between begin and end is captured (not run) and
// instantiated into exec, which graph_launch replays with one call.
int mkc_capture_begin(mkc_device *d);
int mkc_capture_end(mkc_device *d, void **exec);
int mkc_graph_launch(mkc_device *d, void *exec);
void mkc_graph_destroy(mkc_device *d, void *exec);
// cuBLAS (libcublas.so.13/.12), loaded on first use; a handle per device; blas_path says which file was loaded.
int mkc_blas_open(mkc_device *d, char *err, int errlen);
const char *mkc_blas_path(void);
// Column-major C (m, n) = alpha·op(A)·op(B) + beta·C as cublasGemmEx: trans 0 N, 1 T; A and B of abType,
// C of cType (0 f32, 1 bf16, 2 f16), float32 accumulation (pedantic: no TF32 for f32). A cuBLAS status.
int mkc_gemm(mkc_device *d, int transA, int transB, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb,
             int abType, float beta, void *C, int ldc, int cType, int pedantic);
// cuBLASLt's candidates for one product shape (mkc_gemm's arguments without the operands): up to maxAlgos (at most
// MKC_LT_MAX_ALGOS) of its heuristic's algorithms, best first, for the caller to time. With batch > 1, `batch` such
// products whose A, B and C lie strideA, strideB, strideC elements apart (one for each slice of k, say). Non-zero
// when cuBLASLt is not there or finds none (then plan is NULL and the caller keeps mkc_gemm).
#define MKC_LT_MAX_ALGOS 16
typedef struct mkc_lt_plan mkc_lt_plan;
int mkc_lt_plan_create(mkc_device *d, int transA, int transB, int m, int n, int k, int lda, int ldb, int ldc, int abType, int cType,
                       int batch, int64_t strideA, int64_t strideB, int64_t strideC, int maxAlgos, mkc_lt_plan **plan);
int mkc_lt_plan_count(const mkc_lt_plan *plan);
void mkc_lt_plan_destroy(mkc_lt_plan *plan);
// The product with candidate `index` of the plan, on the device's stream (its workspace: cuBLAS's). A cuBLAS status.
int mkc_lt_matmul(mkc_device *d, const mkc_lt_plan *plan, int index, float alpha, const void *A, const void *B, float beta, void *C);
// Free and total device memory (cuMemGetInfo).
int mkc_mem_info(mkc_device *d, size_t *freeBytes, size_t *totalBytes);
// Lets a kernel use more than 48 KiB of dynamic shared memory (up to the device's opt-in limit).
int mkc_set_max_shared(mkc_device *d, void *function, int bytes);
/// Blocks of `blockSize` threads (and sharedBytes of dynamic shared memory) one multiprocessor holds at once.
int mkc_blocks_per_sm(mkc_device *d, void *function, int blockSize, int sharedBytes, int *blocks);
// The driver's description of an error code returned by the calls above.
const char *mkc_error_string(int code);
// The device's stream as the driver's handle (CUstream, which the runtime's cudaStream_t is): for libraries
// that take a stream, as NCCL does.
void *mkc_stream_handle(mkc_device *d);
// A second stream of the device (made by side_stream_open; NULL before): collectives beside the compute.
int mkc_side_stream_open(mkc_device *d);
void *mkc_side_stream_handle(mkc_device *d);
// Events between the device's two streams (side = 0: the main stream, 1: the side stream).
int mkc_event_create(mkc_device *d, void **event);
int mkc_event_record(mkc_device *d, void *event, int side);
int mkc_stream_wait_event(mkc_device *d, void *event, int side);
void mkc_event_destroy(mkc_device *d, void *event);

// NCCL (libnccl.so.2), loaded on first use (nccl.c): from $MAMBA2_NCCL_LIBRARY (the library or its folder),
// the loader's path, or a Python package folder (nvidia/nccl/lib). Sets NCCL_NVLS_ENABLE=0 first. 0, or
// non-zero with a message; nccl_path says which file was loaded.
int mkc_nccl_load(char *err, int errlen);
const char *mkc_nccl_path(void);
int mkc_nccl_version(int *version);
// One communicator per GPU of this process (ncclCommInitAll): comms[i] for the GPU numbered ordinals[i].
int mkc_nccl_init_all(const int *ordinals, int count, void **comms, char *err, int errlen);
void mkc_nccl_destroy(void *comm);
// Calls for several GPUs from one thread go between group_start and group_end. NCCL status codes.
int mkc_nccl_group_start(void);
int mkc_nccl_group_end(void);
// In-place sum over the communicator's GPUs of `count` elements at buffer (elementType 0 f32, 1 bf16, 2 f16),
// queued on the device's stream (side = 1: its side stream, mkc_side_stream_open first).
int mkc_nccl_all_reduce_sum(mkc_device *d, void *comm, uint64_t buffer, size_t count, int elementType, int side);
const char *mkc_nccl_error(int code);

#ifdef __cplusplus
}
#endif
#endif
