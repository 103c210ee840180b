#!/usr/bin/env bash
# Installs the benchmark peers into a Python virtual environment (default /opt/peers): llama.cpp through
# the llama-cpp-python package from PyPI (built from source here, native CPU flags), llama.cpp's own
# llama-bench built with CMake from the vendored source of the same sdist (peer_compare.py times llama.cpp
# with it), transformers and PyTorch (CPU use), and what the GGUF converter needs. Nothing here is part of
# the product.
set -euo pipefail
VENV=${PEERS_VENV:-/opt/peers}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF" "$VENV/bin/pip" install -q llama-cpp-python==0.3.36
"$VENV/bin/pip" install -q torch numpy safetensors gguf transformers sentencepiece
command -v cmake >/dev/null && command -v ninja >/dev/null || { apt-get update -q && apt-get install -y -q cmake ninja-build; }
work=$(mktemp -d)
"$VENV/bin/pip" download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$work"
tar -xzf "$work"/llama_cpp_python-0.3.36.tar.gz -C "$work"
cmake -S "$work"/llama_cpp_python-0.3.36/vendor/llama.cpp -B "$VENV/llama.cpp-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_BLAS=OFF >/dev/null
cmake --build "$VENV/llama.cpp-build" -j2 --target llama-bench >/dev/null  # about 10 minutes on 2 cores
# LLAMA_BENCH_AMX=1: also a llama-bench for an AVX-512 / AMX Xeon built on any x86-64 host (the GPU machine's CPU,
# timed by peer_compare.py --random-gguf there): native detection off, the instruction sets named, no OpenMP
# (its runtime may be missing there), the ggml libraries linked in.
if [ "${LLAMA_BENCH_AMX:-}" = 1 ]; then
    cmake -S "$work"/llama_cpp_python-0.3.36/vendor/llama.cpp -B "$VENV/llama.cpp-build-amx" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON \
        -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON -DGGML_AMX_BF16=ON \
        -DGGML_OPENMP=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DGGML_BLAS=OFF >/dev/null
    cmake --build "$VENV/llama.cpp-build-amx" -j2 --target llama-bench >/dev/null
    echo "AMX llama-bench: $VENV/llama.cpp-build-amx/bin/llama-bench"
fi
echo "peers installed in $VENV; llama-bench is $VENV/llama.cpp-build/bin/llama-bench"
