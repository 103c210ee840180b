#!/usr/bin/env python3
"""Writes a llama.cpp mamba2 GGUF of a released shape with random weights, for timing llama-bench where the
checkpoint cannot be carried (the GPU machine takes 64 MiB of files; a 130m GGUF is 260-520 MB).

The layout is the one llama.cpp's own converter writes (checked against Tests/Mamba2Tests/Fixtures/gguf/
tiny-f32.gguf: tensor names, shapes, the mamba2.* keys); the tokenizer keys (GPT-NeoX-20B, 50,288 tokens) are
copied from Tests/Mamba2Tests/Fixtures/gguf/neox-tokenizer.gguf. The matrices (embedding, in_proj, out_proj)
take the requested type (f32, f16, bf16, q8_0, as the converter's --outtype does); the rest stays f32.
Values: matrices N(0, 0.02), A = -U(1, 16), dt_bias = softplus^-1 of log-uniform [0.001, 0.1], D = 1, norms 1,
as mamba_ssm initializes (weights' values do not change the timing; they keep the activations finite).

Needs numpy and the `gguf` package (llama.cpp's gguf-py, on PYTHONPATH).
Usage: random_gguf.py --shape 130m --type bf16 --tokenizer-gguf neox-tokenizer.gguf --out model-bf16.gguf
"""
import argparse

import numpy as np
import gguf

# d_model, layers as the released checkpoints; expand 2, head_dim 64, d_state 128, 1 group, conv 4.
SHAPES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=SHAPES, default="130m")
    ap.add_argument("--type", choices=["f32", "f16", "bf16", "q8_0"], default="f32")
    ap.add_argument("--tokenizer-gguf", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    d, n_layer = SHAPES[a.shape]
    d_inner, n_state, head_dim, groups, conv = 2 * d, 128, 64, 1, 4
    heads = d_inner // head_dim
    conv_dim = d_inner + 2 * groups * n_state
    in_proj = 2 * d_inner + 2 * groups * n_state + heads
    rng = np.random.default_rng(a.seed)

    tok = gguf.GGUFReader(a.tokenizer_gguf)
    def field(name):
        f = tok.fields[name]
        return f.contents() if hasattr(f, "contents") else [bytes(f.parts[i]).decode() for i in f.data]
    tokens = field("tokenizer.ggml.tokens")
    vocab = len(tokens)

    w = gguf.GGUFWriter(a.out, "mamba2")
    w.add_name(f"random mamba2-{a.shape}")
    w.add_context_length(1048576)
    w.add_embedding_length(d)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(n_layer)
    w.add_ssm_conv_kernel(conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(n_state)
    w.add_ssm_time_step_rank(heads)
    w.add_ssm_group_count(groups)
    w.add_layer_norm_rms_eps(1e-5)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[a.type]
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model(field("tokenizer.ggml.model"))
    w.add_tokenizer_pre(field("tokenizer.ggml.pre"))
    w.add_token_list(tokens)
    w.add_token_types(field("tokenizer.ggml.token_type"))
    w.add_token_merges(field("tokenizer.ggml.merges"))

    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[a.type]

    def matrix(name, rows, cols):
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, x)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, x.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

    def vector(name, x):
        w.add_tensor(name, np.ascontiguousarray(x, dtype=np.float32))

    matrix("token_embd.weight", vocab, d)
    for i in range(n_layer):
        p = f"blk.{i}."
        vector(p + "ssm_a", -rng.uniform(1, 16, (heads, 1)))
        vector(p + "ssm_d", np.ones((heads, 1)))
        vector(p + "ssm_conv1d.bias", rng.uniform(-0.5, 0.5, conv_dim))
        vector(p + "ssm_conv1d.weight", rng.uniform(-0.5, 0.5, (conv_dim, conv)))
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), heads))
        vector(p + "ssm_dt.bias", dt + np.log(-np.expm1(-dt)))
        matrix(p + "ssm_in.weight", in_proj, d)
        vector(p + "ssm_norm.weight", np.ones((groups, d_inner // groups)))
        matrix(p + "ssm_out.weight", d, d_inner)
        vector(p + "attn_norm.weight", np.ones(d))
    vector("output_norm.weight", np.ones(d))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
