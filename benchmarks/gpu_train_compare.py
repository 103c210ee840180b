#!/usr/bin/env python3
"""Training speed and memory on one GPU, side by side in one run: the reference mamba_ssm
`MambaLMHeadModel` (Mamba2 layers) training step and ours (`mamba2 bench train --device cuda`).

The reference step, as its users train: float32 master weights, bf16 autocast, the logits' cross-entropy
over the whole (padded) vocabulary in float32, backward, global-norm clipping to 1.0, fused AdamW
(torch.optim.AdamW(fused=True), betas 0.9/0.95, weight decay 0.1), zero_grad. The reference runs twice
when the causal-conv1d package imports (its wheel, built from the sdist with nvcc on the GPU machine, put on
PYTHONPATH): with use_mem_eff_path=False (nn.Conv1d for the conv, the Triton SSD and gated norm, what its
sdist runs without extensions) and with use_mem_eff_path=True (mamba_split_conv1d_scan_combined: the fused
causal-conv1d kernels, in_proj to out_proj in one autograd function). Without causal-conv1d only the first.
The speedup is against the faster reference of the run. The median step time of
--steps steps after 3 warm-up steps (the Triton autotuner runs in the first), and the peak of
torch.cuda.max_memory_allocated over the timed steps.

Ours: the same shape, vocabulary 50277 (padded to a multiple of 16 by both), batch and length; the whole
step on the GPU, bf16 mixed precision; tokens/s from its median step time, peak memory the most its
buffers held.

Usage (on the GPU machine): python3 benchmarks/gpu_train_compare.py --ours out/mamba2 --peers out/peers \
    --json out/train.json --markdown out/train.md [--shapes 130m:8,370m:8,1.3b:4] [--length 2048]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

from gpu_ssd_compare import load_reference_package

SHAPES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}
VOCAB = 50277


def reference_step_stats(torch, d_model, n_layer, batch, length, steps, mem_eff):
    import torch.nn.functional as F
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    cfg = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=VOCAB,
                      ssm_cfg={"layer": "Mamba2", "use_mem_eff_path": mem_eff}, rms_norm=True,
                      residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=16, tie_embeddings=True)
    torch.manual_seed(0)
    model = MambaLMHeadModel(cfg, device="cuda", dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    ids = torch.randint(0, VOCAB, (batch, length + 1), device="cuda")
    inputs, labels = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(inputs).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated()
    params = sum(p.numel() for p in model.parameters())
    del model, opt
    torch.cuda.empty_cache()
    return statistics.median(times), peak, params, float(loss)


def ours_stats(binary, name, batch, length, steps, out_json):
    cmd = [binary, "bench", "train", "--device", "cuda", "--preset", name, "--vocab", str(VOCAB), "--batch", str(batch),
           "--length", str(length), "--steps", str(steps), "--json", out_json]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(text, end="")
    return json.load(open(out_json))


def machine():
    """The host the run saw: its kernel (the GPU machines differ in runtime) and processor, for comparing runs."""
    import platform
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--shapes", default="130m:8,370m:8,1.3b:4", help="shape:batch, comma-separated")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    sdist = load_reference_package(a.peers)
    import torch
    try:
        import causal_conv1d
        conv_version = getattr(causal_conv1d, "__version__", "?")
        paths = [False, True]
    except ImportError:
        conv_version, paths = None, [False]
    rows = []
    for item in a.shapes.split(","):
        name, batch = item.split(":")
        batch = int(batch)
        d_model, n_layer = SHAPES[name]
        tokens = batch * a.length
        ours = ours_stats(a.ours, name, batch, a.length, a.steps, f"/tmp/ours_train_{name}.json")
        refs = {}
        for p in paths:
            try:
                refs[p] = reference_step_stats(torch, d_model, n_layer, batch, a.length, a.steps, p)
            except Exception as e:  # a fused path that fails is reported and left out, not fatal
                print(f"reference use_mem_eff_path={p} failed: {e!r}", flush=True)
        paths = [p for p in paths if p in refs]
        fast = min(paths, key=lambda p: refs[p][0])  # the faster reference path of this run
        ref_s, ref_peak, ref_params, ref_loss = refs[fast]
        peak = ours["bf16_peak_flops"]
        row = {
            "shape": name, "batch": batch, "length": a.length, "parameters": ours["parameters"], "reference_parameters": ref_params,
            "reference_mem_eff_path": fast,
            "reference_paths": {("fused" if p else "unfused"): {"tokens_per_second": tokens / refs[p][0], "peak_bytes": refs[p][1]} for p in paths},
            "reference_tokens_per_second": tokens / ref_s, "ours_tokens_per_second": ours["tokens_per_second"],
            "speedup": ours["tokens_per_second"] / (tokens / ref_s),
            "reference_peak_bytes": ref_peak, "ours_peak_bytes": ours["peak_allocated_bytes"],
            "reference_mfu": 6 * ref_params * tokens / ref_s / peak, "ours_mfu": ours["mfu"],
            "reference_loss": ref_loss, "ours_loss": ours["loss"], "bf16_peak_flops": peak,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    def path_cells(r):
        return " | ".join(f"{r['reference_paths'][k]['tokens_per_second']:,.0f} ({r['reference_paths'][k]['peak_bytes'] / 2**30:.1f} GiB)"
                          for k in ("unfused", "fused") if k in r["reference_paths"])
    names = ["mamba_ssm unfused tok/s (peak)"] + (["mamba_ssm fused tok/s (peak)"] if len(paths) > 1 else [])
    header = f"| shape | batch × length | {' | '.join(names)} | ours tok/s | speedup vs faster | ours peak GiB | MFU faster ref | MFU ours |\n"
    header += "|---|---|" + "---|" * len(names) + "---|---|---|---|---|\n"
    lines = [f"| {r['shape']} | {r['batch']} × {r['length']} | {path_cells(r)} | {r['ours_tokens_per_second']:,.0f} | "
             f"{r['speedup']:.2f}× ({'fused' if r['reference_mem_eff_path'] else 'unfused'}) | {r['ours_peak_bytes'] / 2**30:.1f} | "
             f"{100 * r['reference_mfu']:.1f}% | {100 * r['ours_mfu']:.1f}% |" for r in rows]
    md = header + "\n".join(lines) + "\n"
    conv = f"causal-conv1d {conv_version} for the fused path" if conv_version else "no causal-conv1d: unfused path only"
    md += f"\nReference: {sdist} (Triton kernels; {conv}), torch {torch.__version__}, " \
          f"{torch.cuda.get_device_name()}, host kernel {machine()['kernel']}. MFU = 6 · parameters · tokens/s over the bf16 matrix-product peak our binary measured " \
          f"({rows[0]['bf16_peak_flops'] / 1e12:.0f} TFLOP/s).\n"
    print(md)
    if a.json:
        json.dump({"reference": sdist, "causal_conv1d": conv_version, "machine": machine(), "torch": torch.__version__, "device": torch.cuda.get_device_name(), "rows": rows}, open(a.json, "w"), indent=1)
    if a.markdown:
        open(a.markdown, "w").write(md)


if __name__ == "__main__":
    main()
