#!/usr/bin/env python3
"""Writes a model directory of a released shape with random weights as state-spaces publishes it (config.json and
one model.safetensors, every tensor bf16 as the released checkpoints are, or f32/f16), for measuring what loading
a real checkpoint costs: time and peak memory (`/usr/bin/time -f %M mamba2 generate --model DIR ...`).

Values: matrices N(0, 0.02), norms 1, A_log log U(1, 16), dt_bias softplus^-1 of log-uniform [0.001, 0.1], D 1,
conv N(0, 0.2) (weights' values do not change the cost; they keep the activations finite). Needs numpy only.
Usage: random_checkpoint.py --shape 1.3b --dtype bf16 --out DIR
"""
import argparse
import json
import os
import struct

import numpy as np

# d_model, layers as the released checkpoints; expand 2, head_dim 64, d_state 128, 1 group, conv 4.
SHAPES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}
VOCAB = 50277


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=SHAPES, default="1.3b")
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="bf16")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    d, layers = SHAPES[a.shape]
    d_inner, head_dim, n = 2 * d, 64, 128
    heads, conv_dim = d_inner // head_dim, d_inner + 2 * n
    in_proj = 2 * d_inner + 2 * n + heads
    padded = (VOCAB + 15) // 16 * 16
    rng = np.random.default_rng(a.seed)

    def normal(sd):
        return lambda shape: rng.standard_normal(shape, dtype=np.float32) * sd

    def const(v):
        return lambda shape: np.full(shape, v, np.float32)

    def dt_bias(shape):
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), shape)).astype(np.float32)
        return dt + np.log(-np.expm1(-dt))

    def a_log(shape):
        return np.log(rng.uniform(1, 16, shape)).astype(np.float32)

    # (name, shape, values), in the model's order.
    tensors = [("backbone.embedding.weight", (padded, d), normal(0.02))]
    for i in range(layers):
        p = f"backbone.layers.{i}."
        tensors += [
            (p + "norm.weight", (d,), const(1)),
            (p + "mixer.in_proj.weight", (in_proj, d), normal(0.02)),
            (p + "mixer.conv1d.weight", (conv_dim, 1, 4), normal(0.2)),
            (p + "mixer.conv1d.bias", (conv_dim,), const(0)),
            (p + "mixer.dt_bias", (heads,), dt_bias),
            (p + "mixer.A_log", (heads,), a_log),
            (p + "mixer.D", (heads,), const(1)),
            (p + "mixer.norm.weight", (d_inner,), const(1)),
            (p + "mixer.out_proj.weight", (d, d_inner), normal(0.02)),
        ]
    tensors.append(("backbone.norm_f.weight", (d,), const(1)))

    def encode(v):
        if a.dtype == "f32":
            return v.astype("<f4").tobytes()
        if a.dtype == "f16":
            return v.astype("<f2").tobytes()
        bits = v.astype(np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()  # round to nearest even

    size = {"bf16": 2, "f16": 2, "f32": 4}[a.dtype]
    name = {"bf16": "BF16", "f16": "F16", "f32": "F32"}[a.dtype]
    header, offset = {}, 0
    for key, shape, _ in tensors:
        count = int(np.prod(shape))
        header[key] = {"dtype": name, "shape": list(shape), "data_offsets": [offset, offset + count * size]}
        offset += count * size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, shape, values in tensors:
            f.write(encode(values(shape)))
    config = {"d_model": d, "d_intermediate": 0, "n_layer": layers, "vocab_size": VOCAB,
              "ssm_cfg": {"layer": "Mamba2", "d_state": n, "d_conv": 4, "expand": 2, "headdim": head_dim, "ngroups": 1,
                          "chunk_size": 256},
              "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
              "pad_vocab_size_multiple": 16, "tie_embeddings": True}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
