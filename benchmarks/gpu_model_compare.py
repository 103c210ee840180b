#!/usr/bin/env python3
"""The whole language model on one GPU, side by side in one run: the reference mamba_ssm
`MambaLMHeadModel` (Mamba2 layers, bf16, random weights, Triton kernels, no causal-conv1d package,
`generate(cg=True)`) and ours (`mamba2 bench --device cuda --weights-dtype bf16`).

Measured for the mamba2-130m and mamba2-2.7b shapes:
  - prefill: one forward of N prompt tokens at batch 1 (the last token's logits), CUDA-event median of
    --runs after warm-up (the Triton autotuner runs first);
  - decode: greedy tokens/s at batch 1 and 16 after a 16-token prompt. The reference's generate() holds
    a CUDA graph per (batch, max_length), captured by a first call that is not timed; its decode rate is
    (extra tokens) / (time of generate to 16 + 1 + G tokens − time of generate to 16 + 1 + 1 tokens), so
    the prompt's prefill cancels out. Ours: `mamba2 bench` decodes G tokens per row, each token one
    CUDA-graph launch with the argmax fed back on the device.
speedup = ours tokens/s over the reference's (prefill: reference ms over ours).

Usage (on the GPU machine): python3 benchmarks/gpu_model_compare.py --ours out/mamba2 --peers out/peers \
    --json out/model.json --markdown out/model.md
"""
import argparse
import json
import statistics
import subprocess
import time

from gpu_ssd_compare import load_reference_package

SHAPES = {"130m": (768, 24), "2.7b": (2560, 64)}


def reference_model(torch, d_model, n_layer):
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    cfg = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=50277, ssm_cfg={"layer": "Mamba2"}, rms_norm=True,
                      residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=16, tie_embeddings=True)
    torch.manual_seed(0)
    return MambaLMHeadModel(cfg, device="cuda", dtype=torch.bfloat16).eval()


def reference_prefill_ms(torch, model, length, runs):
    from mamba_ssm.utils.generation import InferenceParams
    ids = torch.randint(0, 50277, (1, length), device="cuda")

    def once():
        params = InferenceParams(max_seqlen=length + 1, max_batch_size=1)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        model(ids, inference_params=params, num_last_tokens=1)
        b.record()
        b.synchronize()
        return a.elapsed_time(b)

    with torch.inference_mode():
        for _ in range(3):
            once()
        return statistics.median(once() for _ in range(runs))


def reference_decode_tps(torch, model, batch, tokens, runs):
    prompt = 16
    ids = torch.randint(0, 50277, (batch, prompt), device="cuda")

    def timed(max_length):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(ids, max_length=max_length, cg=True, top_k=1, return_dict_in_generate=True)
        torch.cuda.synchronize()
        assert out.sequences.shape[1] == max_length
        return time.perf_counter() - t0

    with torch.inference_mode():
        short, long = prompt + 2, prompt + 2 + tokens
        timed(short), timed(long)  # graph capture for both lengths
        ts = statistics.median(timed(short) for _ in range(runs))
        tl = statistics.median(timed(long) for _ in range(runs))
    return batch * tokens / (tl - ts)


def ours(binary, shape, prompt, generate, batches, runs, state="f32"):
    out = subprocess.run([binary, "bench", "--device", "cuda", "--weights-dtype", "bf16", "--shape", shape, "--prompt", str(prompt),
                          "--generate", str(generate), "--batch", ",".join(map(str, batches)), "--repetitions", str(runs), "--json",
                          "--state-dtype", state],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="the mamba2 binary")
    ap.add_argument("--peers", required=True, help="folder with the mamba-ssm sdist (and einops/packaging wheels)")
    ap.add_argument("--shapes", default="130m,2.7b")
    ap.add_argument("--prompts", default="512,16384", help="prefill lengths")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--generate", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--state-dtypes", default="f32", help="our decode state types, comma-separated (f32, bf16): a decode row each")
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", required=True)
    a = ap.parse_args()

    import torch
    sdist = load_reference_package(a.peers)
    prompts = [int(x) for x in a.prompts.split(",")]
    batches = [int(x) for x in a.batches.split(",")]
    states = a.state_dtypes.split(",")
    rows = []
    for shape in a.shapes.split(","):
        d, n = SHAPES[shape]
        mine = {}
        for p in prompts:
            r = ours(a.ours, shape, p, a.generate, batches if p == prompts[0] else [1], a.runs, state=states[0])
            for x in r["results"]:
                if x["test"].startswith("pp"):
                    mine[("prefill", p)] = x["ms"]
                elif p == prompts[0]:
                    mine[("decode", x["batch"], states[0])] = x["median_tokens_per_s"]
        for st in states[1:]:
            r = ours(a.ours, shape, prompts[0], a.generate, batches, a.runs, state=st)
            for x in r["results"]:
                if not x["test"].startswith("pp"):
                    mine[("decode", x["batch"], st)] = x["median_tokens_per_s"]
        model = reference_model(torch, d, n)
        for p in prompts:
            ref = reference_prefill_ms(torch, model, p, a.runs)
            rows.append({"shape": shape, "test": f"prefill {p} tokens", "unit": "ms", "reference": ref,
                         "ours": mine[("prefill", p)], "speedup": ref / mine[("prefill", p)]})
            print(rows[-1], flush=True)
        for b in batches:
            ref = reference_decode_tps(torch, model, b, a.generate, a.runs)
            for st in states:
                label = f"decode batch {b}" + ("" if st == "f32" else f" ({st} state)")
                rows.append({"shape": shape, "test": label, "unit": "tokens/s", "reference": ref,
                             "ours": mine[("decode", b, st)], "speedup": mine[("decode", b, st)] / ref})
                print(rows[-1], flush=True)
        del model
        torch.cuda.empty_cache()
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": __import__("triton").__version__,
            "reference": sdist, "dtype": "bf16", "generate": a.generate, "runs": a.runs,
            "note": "speedup above 1: ours faster (prefill: reference ms / ours; decode: ours tokens/s / reference)"}
    with open(a.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = [f"Whole model on {meta['gpu']}, bf16, random weights; reference {sdist} (MambaLMHeadModel, generate(cg=True)), "
             f"ours `mamba2 bench --device cuda`; medians of {a.runs}.", "",
             "| shape | test | reference | ours | speedup |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['test']} | {r['reference']:.2f} {r['unit']} | {r['ours']:.2f} {r['unit']} | {r['speedup']:.2f}× |")
    with open(a.markdown, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
