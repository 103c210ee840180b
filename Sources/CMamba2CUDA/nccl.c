// NCCL (libnccl.so.2) loaded at run time with dlopen, as cuBLAS is: the collectives between the GPUs of this
// process. On the GPU machines it sits in PyTorch's Python packages (site-packages/nvidia/nccl/lib), not on
// the loader's path, so after $MAMBA2_NCCL_LIBRARY (a file, or a folder holding libnccl.so.2) and the loader's
// path the usual Python prefixes are searched. NVLink multicast (NVLS) is switched off before NCCL starts:
// on shared hosts it can take every GPU of the host out of service.
#define _GNU_SOURCE  // dladdr: the file a library found on the loader's path came from
#include "CMamba2CUDA.h"
#include <dlfcn.h>
#include <glob.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ncclComm *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;

static struct {
    int loaded;
    char path[1024];
    int (*getVersion)(int *);
    int (*commInitAll)(ncclComm_t *, int, const int *);
    int (*commDestroy)(ncclComm_t);
    int (*allReduce)(const void *, void *, size_t, int, int, ncclComm_t, void *);
    int (*groupStart)(void);
    int (*groupEnd)(void);
    const char *(*getErrorString)(int);
} N;

static pthread_mutex_t ncclLock = PTHREAD_MUTEX_INITIALIZER;

static void *try_open(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h) snprintf(N.path, sizeof N.path, "%s", path);
    return h;
}

// The first libnccl.so.2 under a glob pattern of folders.
static void *try_glob(const char *pattern) {
    glob_t g;
    void *h = NULL;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && !h; i++) h = try_open(g.gl_pathv[i]);
        globfree(&g);
    }
    return h;
}

static int load_locked(char *err, int errlen) {
    if (N.loaded) return 0;
    void *h = NULL;
    const char *given = getenv("MAMBA2_NCCL_LIBRARY");
    if (given && *given) {
        h = try_open(given);
        if (!h) {
            char p[1024];
            snprintf(p, sizeof p, "%s/libnccl.so.2", given);
            h = try_open(p);
        }
        if (!h) { snprintf(err, errlen, "MAMBA2_NCCL_LIBRARY=%s: neither it nor %s/libnccl.so.2 could be loaded (%s)", given, given, dlerror()); return 1; }
    }
    if (!h) h = try_open("libnccl.so.2");
    static const char *const prefixes[] = {
        "%s/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",  // $VIRTUAL_ENV, $CONDA_PREFIX
        "/usr/local/lib/python3*/dist-packages/nvidia/nccl/lib/libnccl.so.2",
        "/usr/local/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
        "/usr/lib/python3/dist-packages/nvidia/nccl/lib/libnccl.so.2",
        "/usr/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
        "/opt/conda/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",
        "%s/.local/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2",  // $HOME
        NULL };
    const char *venv = getenv("VIRTUAL_ENV"), *conda = getenv("CONDA_PREFIX"), *home = getenv("HOME");
    for (int i = 0; prefixes[i] && !h; i++) {
        char p[1024];
        if (strstr(prefixes[i], "%s")) {
            const char *roots[] = { i == 0 ? venv : home, i == 0 ? conda : NULL };
            for (int k = 0; k < 2 && !h; k++) {
                if (!roots[k] || !*roots[k]) continue;
                snprintf(p, sizeof p, prefixes[i], roots[k]);
                h = try_glob(p);
            }
        } else {
            h = try_glob(prefixes[i]);
        }
    }
    if (!h) {
        snprintf(err, errlen, "no NCCL: libnccl.so.2 is not on the loader's path nor in a Python package folder (nvidia/nccl/lib); "
                              "install NCCL or PyTorch's nvidia-nccl package, or set MAMBA2_NCCL_LIBRARY to the library or its folder");
        return 1;
    }
#define NSYM(field, name) do { *(void **)&N.field = dlsym(h, name); \
    if (!N.field) { snprintf(err, errlen, "symbol %s missing from %s", name, N.path); return 1; } } while (0)
    NSYM(getVersion, "ncclGetVersion"); NSYM(commInitAll, "ncclCommInitAll"); NSYM(commDestroy, "ncclCommDestroy");
    NSYM(allReduce, "ncclAllReduce"); NSYM(groupStart, "ncclGroupStart"); NSYM(groupEnd, "ncclGroupEnd");
    NSYM(getErrorString, "ncclGetErrorString");
#undef NSYM
    Dl_info info;
    if (dladdr((void *)N.getVersion, &info) && info.dli_fname) snprintf(N.path, sizeof N.path, "%s", info.dli_fname);
    N.loaded = 1;
    return 0;
}

int mkc_nccl_load(char *err, int errlen) {
    // Before NCCL reads its environment (at its first communicator), in this process and every child it starts.
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    pthread_mutex_lock(&ncclLock);
    int r = load_locked(err, errlen);
    pthread_mutex_unlock(&ncclLock);
    return r;
}

const char *mkc_nccl_path(void) { return N.path; }

int mkc_nccl_version(int *version) { return N.loaded ? N.getVersion(version) : -1; }

int mkc_nccl_init_all(const int *ordinals, int count, void **comms, char *err, int errlen) {
    if (mkc_nccl_load(err, errlen)) return 1;
    int r = N.commInitAll((ncclComm_t *)comms, count, ordinals);
    if (r) { snprintf(err, errlen, "ncclCommInitAll over %d GPUs failed: %s (NCCL error %d)", count, N.getErrorString(r), r); return 1; }
    return 0;
}

void mkc_nccl_destroy(void *comm) { if (comm && N.loaded) N.commDestroy((ncclComm_t)comm); }

int mkc_nccl_group_start(void) { return N.loaded ? N.groupStart() : -1; }
int mkc_nccl_group_end(void) { return N.loaded ? N.groupEnd() : -1; }

int mkc_nccl_all_reduce_sum(mkc_device *d, void *comm, uint64_t buffer, size_t count, int elementType, int side) {
    if (!N.loaded) return -1;
    // ncclFloat32 = 7, ncclBfloat16 = 9, ncclFloat16 = 6; ncclSum = 0; in place (send = receive).
    static const int types[] = { 7, 9, 6 };
    void *stream = side ? mkc_side_stream_handle(d) : mkc_stream_handle(d);
    if (elementType < 0 || elementType > 2 || !stream) return -1;
    return N.allReduce((const void *)buffer, (void *)buffer, count, types[elementType], 0, (ncclComm_t)comm, stream);
}

const char *mkc_nccl_error(int code) { return N.loaded ? N.getErrorString(code) : "NCCL is not loaded"; }
