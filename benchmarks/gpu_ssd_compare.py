#!/usr/bin/env python3
"""The SSD forward (or, with --backward, forward + backward) side by side on one GPU, in one run: the
reference Triton kernels of mamba_ssm (`mamba_chunk_scan_combined`), FlashAttention-2 (PyTorch's SDPA
flash backend, causal, same heads and head dim) and ours (`mamba2 bench ssd-kernels --device cuda`).
With --backward, every side computes the gradients of all inputs (x, dt, A, B, C, D, dt_bias) from a
given output gradient after its forward: the reference through torch.autograd.grad (its Triton
backward kernels), FlashAttention-2 likewise, ours with `bench ssd-kernels --backward`.

Same work on every side: 32 heads, head dim 64, one group, chunk 256, batch × length = 65,536 tokens,
D per head, dt_bias with softplus, final states returned. The reference runs in bf16 (x, dt, B, C;
A, D, dt_bias float32, as a Mamba2 module holds them); its autotuner runs before timing, then the call
is captured in a CUDA graph and the graph replayed; times are CUDA-event medians of --runs replays.
FlashAttention-2 likewise. Ours: median of --runs launches of our kernels (their dtype is printed).

The reference comes from the mamba-ssm source distribution on PyPI (pure-Python Triton kernels): its
package __init__ imports compiled extensions that are absent here, so the modules are imported under a
stub package __init__. einops and packaging are taken from wheels beside it when not installed.

Usage (on the GPU machine):
  python3 benchmarks/gpu_ssd_compare.py --ours out/mamba2 --peers out/peers --json out.json --markdown out.md
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile


def load_reference_package(peers):
    """Puts the mamba-ssm sdist's Python package on sys.path under a stub top-level __init__ (the real
    one imports compiled CUDA extensions that are absent), with an empty stand-in for the compiled
    selective_scan_cuda extension that Mamba-1 modules import at load time (Mamba-2 never calls it).
    Returns the sdist's file name."""
    import types
    for module, pattern in (("einops", "einops-*.whl"), ("packaging", "packaging-*.whl")):
        try:
            __import__(module)
        except ImportError:
            sys.path.insert(0, glob.glob(os.path.join(peers, pattern))[0])
    sdist = glob.glob(os.path.join(peers, "mamba_ssm-*.tar.gz"))[0]
    root = tempfile.mkdtemp(prefix="mamba_ssm_ref_")
    with tarfile.open(sdist) as t:
        for m in t.getmembers():
            parts = m.name.split("/")
            if len(parts) > 2 and parts[1] == "mamba_ssm" and m.isfile():
                m.name = "/".join(parts[1:])
                t.extract(m, root)
    for d, _, _ in os.walk(os.path.join(root, "mamba_ssm")):
        init = os.path.join(d, "__init__.py")
        if d.endswith("/mamba_ssm") or not os.path.exists(init):
            open(init, "w").close()
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    sys.path.insert(0, root)
    return os.path.basename(sdist)


def import_reference(peers):
    sdist = load_reference_package(peers)
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    return mamba_chunk_scan_combined, sdist


def graph_median_ms(torch, fn, runs):
    fn()  # the Triton autotuner runs here
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="the mamba2 binary")
    ap.add_argument("--peers", required=True, help="folder with the mamba-ssm sdist (and einops/packaging wheels)")
    ap.add_argument("--lengths", default="2048,16384,65536")
    ap.add_argument("--states", default="64,128")
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--ours-dtype", default="bf16", help="f32 (our plain kernels), bf16 or f16 (tensor cores)")
    ap.add_argument("--backward", action="store_true", help="time forward + backward")
    ap.add_argument("--fused", action="store_true", help="also time our fused forward (bench ssd-kernels --path fused)")
    ap.add_argument("--mma", action="store_true", help="also time our three kernels on mma.sync (bench ssd-kernels --products mma)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", required=True)
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    combined, sdist = import_reference(a.peers)
    H, P, G, Q = 32, 64, 1, 256
    lengths = [int(x) for x in a.lengths.split(",")]
    states = [int(x) for x in a.states.split(",")]
    dev = torch.device("cuda")
    rows = []
    flash = {}
    for L in lengths:
        b = a.tokens // L
        q = torch.randn(b, H, L, P, device=dev, dtype=torch.bfloat16)
        k, v = torch.randn_like(q), torch.randn_like(q)
        if a.backward:
            q.requires_grad_(); k.requires_grad_(); v.requires_grad_()
            go = torch.randn_like(q)

            def fa():
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                torch.autograd.grad(o, (q, k, v), grad_outputs=go)
        else:
            def fa():
                F.scaled_dot_product_attention(q, k, v, is_causal=True)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash[L] = graph_median_ms(torch, fa, a.runs)
        del q, k, v
    for N in states:
        def run_ours(extra):
            return json.loads(subprocess.run(
                [a.ours, "bench", "ssd-kernels", "--device", "cuda", "--lengths", a.lengths, "--tokens", str(a.tokens), "--heads", str(H),
                 "--head-dim", str(P), "--state-size", str(N), "--groups", str(G), "--chunk-size", str(Q),
                 "--repetitions", str(a.runs), "--dtype", a.ours_dtype, "--json"] + extra, check=True, capture_output=True, text=True).stdout)
        ours = run_ours(["--backward"] if a.backward else [])
        ours_ms = {r["L"]: r["ms"] for r in ours["rows"]}
        fused_ms = {r["L"]: r["ms"] for r in run_ours(["--path", "fused"])["rows"]} if a.fused else {}
        mma_ms = {r["L"]: r["ms"] for r in run_ours(["--products", "mma"] + (["--backward"] if a.backward else []))["rows"]} if a.mma else {}
        for L in lengths:
            b = a.tokens // L
            x = torch.randn(b, L, H, P, device=dev, dtype=torch.bfloat16)
            dt = torch.randn(b, L, H, device=dev, dtype=torch.bfloat16)
            A = -torch.empty(H, device=dev, dtype=torch.float32).uniform_(1, 16)
            B = torch.randn(b, L, G, N, device=dev, dtype=torch.bfloat16)
            C = torch.randn(b, L, G, N, device=dev, dtype=torch.bfloat16)
            D = torch.randn(H, device=dev, dtype=torch.float32)
            dt_bias = torch.randn(H, device=dev, dtype=torch.float32) - 4
            if a.backward:
                inputs = (x, dt, A, B, C, D, dt_bias)
                for t in inputs:
                    t.requires_grad_()
                gy = torch.randn_like(x)

                def ref_fn():
                    y, _ = combined(x, dt, A, B, C, Q, D=D, dt_bias=dt_bias, dt_softplus=True, return_final_states=True)
                    torch.autograd.grad(y, inputs, grad_outputs=gy)
            else:
                def ref_fn():
                    combined(x, dt, A, B, C, Q, D=D, dt_bias=dt_bias, dt_softplus=True, return_final_states=True)
            ref = graph_median_ms(torch, ref_fn, a.runs)
            rows.append({"L": L, "batch": b, "N": N, "reference_triton_bf16_ms": ref, "flash_attention_2_bf16_ms": flash[L],
                         "ours_ms": ours_ms[L], "ours_dtype": ours["dtype"], "speedup": ref / ours_ms[L],
                         "speedup_vs_flash": flash[L] / ours_ms[L]})
            if a.fused:
                rows[-1].update({"ours_fused_ms": fused_ms[L], "speedup_fused": ref / fused_ms[L]})
            if a.mma:
                rows[-1].update({"ours_mma_ms": mma_ms[L], "speedup_mma": ref / mma_ms[L]})
            del x, dt, B, C
            torch.cuda.empty_cache()
    meta = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "reference": sdist,
            "triton": __import__("triton").__version__, "heads": H, "head_dim": P, "groups": G, "chunk": Q,
            "tokens": a.tokens, "runs": a.runs, "pass": "forward + backward" if a.backward else "forward",
            "note": "speedup = reference time / our time (above 1: ours faster)"}
    with open(a.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = [f"SSD {meta['pass']} on {meta['gpu']}: H={H}, P={P}, G={G}, chunk {Q}, batch × length = {a.tokens} tokens; "
             f"median of {a.runs} (CUDA events over graph replays for the reference and FlashAttention-2).", "",
             "| L | N | reference Triton (bf16) ms | FlashAttention-2 (bf16) ms | ours ms (dtype) | speedup (ref / ours) |"
             + (" ours fused ms | speedup (ref / fused) |" if a.fused else "") + (" ours mma ms | speedup (ref / mma) |" if a.mma else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if a.fused else "") + (" --- | --- |" if a.mma else "")]
    for r in rows:
        lines.append(f"| {r['L']} | {r['N']} | {r['reference_triton_bf16_ms']:.3f} | {r['flash_attention_2_bf16_ms']:.3f} | "
                     f"{r['ours_ms']:.3f} ({r['ours_dtype']}) | {r['speedup']:.3f} |"
                     + (f" {r['ours_fused_ms']:.3f} | {r['speedup_fused']:.3f} |" if a.fused else "")
                     + (f" {r['ours_mma_ms']:.3f} | {r['speedup_mma']:.3f} |" if a.mma else ""))
    with open(a.markdown, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
