#!/usr/bin/env bash
# Installs the benchmark peers into a Python virtual environment (default /opt/peers): llama.cpp through
# the llama-cpp-python package from PyPI (built from source here, native CPU flags), transformers and
# PyTorch (CPU use), and what the GGUF converter needs. Nothing here is part of the product.
set -euo pipefail
VENV=${PEERS_VENV:-/opt/peers}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF" "$VENV/bin/pip" install -q llama-cpp-python==0.3.36
"$VENV/bin/pip" install -q torch numpy safetensors gguf transformers sentencepiece
echo "peers installed in $VENV"
