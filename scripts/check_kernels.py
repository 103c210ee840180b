#!/usr/bin/env python3
"""Compiles every CUDA module the library compiles at run time, for sm_90a (the H100/H200 it is tuned on: sm_90
with its architecture-specific features, wgmma among them) and for sm_80 and sm_89 (A100, L40/RTX 40: the library
compiles for the device's own architecture, and there the sm_90-only kernels must compile to empty bodies the host
never launches), with NVRTC, and checks that each
entry point the library takes from it is there. The modules come from the binary itself
(`mamba2 selftest --dump-kernels DIR`: CUDAKernelTable, the one table every call site uses), so what is
compiled here is exactly what runs. A kernel that does not compile fails here, on a machine without a GPU,
instead of on the GPU machine. NVRTC comes from the `nvidia-cuda-nvrtc` wheel (pip install
nvidia-cuda-nvrtc) or a CUDA toolkit; without either the script says so and fails.

usage: check_kernels.py [--binary .build/debug/mamba2] [--verbose]
"""
import ctypes
import glob
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile

# --verbose: ptxas's report of registers, spills and shared memory per kernel
VERBOSE = [b"--ptxas-options=-v"] if "--verbose" in sys.argv else []
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def find_nvrtc():
    candidates = []
    for base in sys.path:
        candidates += glob.glob(os.path.join(base, "nvidia", "cu13", "lib", "libnvrtc.so.13"))
        candidates += glob.glob(os.path.join(base, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12"))
    candidates += ["libnvrtc.so.13", "libnvrtc.so.12", "/usr/local/cuda/lib64/libnvrtc.so"]
    for c in candidates:
        try:
            return ctypes.CDLL(c), c
        except OSError:
            pass
    sys.exit("check_kernels: no NVRTC found (pip install nvidia-cuda-nvrtc)")


ARCHS = ["sm_90a", "sm_80", "sm_89"]


def compile_one(task):
    """(module, arch) → (ok, report): the CUBIN, and for sm_90a the PTX's entry points too."""
    m, arch, out, path = task
    lib = ctypes.CDLL(path)
    src = open(os.path.join(out, m["file"]), "rb").read()
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, m["file"].encode(), 0, None, None) == 0
    opts = [b"--gpu-architecture=" + arch.encode(), b"--std=c++17", b"-default-device"] + VERBOSE
    r = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    missing = []
    if r == 0 and arch == "sm_90a":
        # The entry points: compile once more to PTX (sm_90a is a real architecture, so the CUBIN above
        # has no PTX) and look for each kernel the library takes from the module.
        ptx_prog = ctypes.c_void_p()
        lib.nvrtcCreateProgram(ctypes.byref(ptx_prog), src, m["file"].encode(), 0, None, None)
        popts = [b"--gpu-architecture=compute_90a", b"--std=c++17", b"-default-device"]
        lib.nvrtcCompileProgram(ptx_prog, len(popts), (ctypes.c_char_p * len(popts))(*popts))
        n = ctypes.c_size_t()
        lib.nvrtcGetPTXSize(ptx_prog, ctypes.byref(n))
        ptx = ctypes.create_string_buffer(n.value)
        lib.nvrtcGetPTX(ptx_prog, ptx)
        lib.nvrtcDestroyProgram(ctypes.byref(ptx_prog))
        text = ptx.value.decode()
        missing = [k for k in m["kernels"] if not re.search(r"\.entry\s+" + re.escape(k) + r"\b", text)]
    ok = r == 0 and not missing
    report = f"{'ok    ' if ok else 'FAILED'} {arch} {m['file']} ({len(m['kernels'])} entry points)" + (f": missing {missing}" if missing else "")
    if r != 0 or (VERBOSE and arch == "sm_90a"):
        report += "\n" + log.value.decode()
    return ok, report


def main():
    _, path = find_nvrtc()
    binary = sys.argv[sys.argv.index("--binary") + 1] if "--binary" in sys.argv else os.path.join(ROOT, ".build", "debug", "mamba2")
    out = tempfile.mkdtemp()
    subprocess.check_call([binary, "selftest", "--dump-kernels", out], stdout=subprocess.DEVNULL)
    modules = json.load(open(os.path.join(out, "kernels.json")))
    tasks = [(m, arch, out, path) for arch in ARCHS for m in modules]
    # One NVRTC compile per core at a time (each is single-threaded; the sm_80/89 builds double the work).
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        results = pool.map(compile_one, tasks)
    failed = 0
    for ok, report in results:
        print(report)
        failed += 0 if ok else 1
    print(f"{len(tasks) - failed} of {len(tasks)} kernel modules × architectures ({', '.join(ARCHS)}) compile, every entry point "
          f"there for sm_90a (NVRTC from {path})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
