#!/usr/bin/env python3
"""Compiles every CUDA kernel source kept in the Swift files (Sources/Mamba2/CUDA) with NVRTC, in every
variant the library compiles at run time, for sm_90 — so that a kernel that does not compile fails here,
on a machine without a GPU, instead of on the GPU machine. NVRTC comes from the `nvidia-cuda-nvrtc`
wheel (pip install nvidia-cuda-nvrtc) or a CUDA toolkit; without either the script says so and fails.
"""
import ctypes
import glob
import os
import re
import sys

# --verbose: ptxas's report of registers, spills and shared memory per kernel
VERBOSE = [b"--ptxas-options=-v"] if "--verbose" in sys.argv else []
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Sources", "Mamba2", "CUDA")


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


def source(file, name):
    text = open(os.path.join(ROOT, file)).read()
    m = re.search(r'static let ' + name + r' = #"""\n(.*?)\n\s*"""#', text, re.S)
    if not m:
        sys.exit(f"check_kernels: no kernel source {name} in {file}")
    lines = m.group(1).split("\n")
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return "\n".join(l[indent:] for l in lines)


def half_conversions(f16):
    """CUDAKernelSource.halfConversions: the Swift function's raw string, with its HALF_F16 line."""
    text = open(os.path.join(ROOT, "CUDAKernels.swift")).read()
    m = re.search(r'static func halfConversions.*?#"""\n(.*?)\n\s*"""#', text, re.S)
    if not m:
        sys.exit("check_kernels: no halfConversions in CUDAKernels.swift")
    lines = m.group(1).split("\n")
    indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
    return f"#define HALF_F16 {1 if f16 else 0}\n" + "\n".join(l[indent:] for l in lines) + "\n"


def main():
    lib, path = find_nvrtc()
    variants = [(f"model ACT={a}", f"#define ACT {a}\n" + half_conversions(a == 2) + source("CUDAModelKernels.swift", "model"))
                for a in (0, 1, 2)]
    for f16 in (0, 1):
        for n in (32, 64, 96, 128):
            variants.append((f"ssdTensorCore ELEM_F16={f16} NS={n}",
                             f"#define ELEM_F16 {f16}\n#define NS {n}\n#define PH 64\n#define QC 128\n"
                             + half_conversions(f16 == 1) + source("CUDATensorCoreKernels.swift", "ssdTensorCore")
                             + "\n#define SQ_ELEM u16\n#define SQ_F(v) to_f(v)\n" + source("CUDAKernels.swift", "ssdSequenceStates")))
    variants.append(("ssdChunked", source("CUDAKernels.swift", "ssdChunked") + "\n#define SQ_ELEM float\n#define SQ_F(v) (v)\n"
                     + source("CUDAKernels.swift", "ssdSequenceStates")))
    failed = 0
    for name, src in variants:
        prog = ctypes.c_void_p()
        assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None) == 0
        opts = [b"--gpu-architecture=sm_90", b"--std=c++17", b"-default-device"] + VERBOSE
        r = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
        print(f"{'ok    ' if r == 0 else 'FAILED'} {name}")
        if VERBOSE and r == 0:
            print(log.value.decode())
        if r != 0:
            failed += 1
            print(log.value.decode())
    print(f"{len(variants) - failed} of {len(variants)} kernel sources compile for sm_90 (NVRTC from {path})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
