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
echo "peers installed in $VENV; llama-bench is $VENV/llama.cpp-build/bin/llama-bench"
