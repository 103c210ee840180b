#!/usr/bin/env python3
"""Several GPUs against one, in one run on a machine with N >= 2 GPUs (issue 22's measurements):

1. data-parallel training: `mamba2 bench train --device cuda --gpus N` at 370m and 1.3b (N GPUs and GPU 0 alone
   in the same run, the same per-GPU batch; the gradients all-reduced in buckets beside the backward);
2. tensor-parallel decode: `mamba2 bench --device cuda --shape 2.7b --batch 1` with and without
   `--tensor-parallel N`, alternating, `--runs` times each (median of the runs' medians);
3. the equality checks: `mamba2 selftest --device cuda --gpus N --only collectives,tensor-parallel` (NCCL's
   all-reduce, data parallelism against one GPU, the split across the N GPUs against one GPU: float32 greedy
   tokens equal).

Writes JSON and a markdown table. Each timing is our own tool's (the bench prints and writes its medians).

Usage (on the GPU machine): python3 benchmarks/gpu_multi_compare.py --ours out/mamba2 --gpus 2 \
    --json out/multi.json --markdown out/multi.md [--runs 5]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile


def run(cmd, timeout, check=True):
    env = dict(os.environ, NCCL_NVLS_ENABLE="0")  # NVLink multicast off, as the program itself sets it
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--train-shapes", default="370m:8,1.3b:4")
    ap.add_argument("--json", required=True)
    ap.add_argument("--markdown", required=True)
    a = ap.parse_args()
    n = a.gpus
    out = {"gpus": n, "training": [], "decode": {}, "selftest": None}

    for item in a.train_shapes.split(","):
        preset, batch = item.split(":")
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            run([a.ours, "bench", "train", "--device", "cuda", "--preset", preset, "--vocab", "50277", "--batch", batch,
                 "--length", "2048", "--steps", "10", "--gpus", str(n), "--json", f.name], 1200)
            r = json.load(open(f.name))
        tps = {x["gpus"]: x["tokens_per_second"] for x in r["runs"]}
        out["training"].append({"preset": preset, "batch_per_gpu": int(batch), "tokens_per_second": tps,
                                "speedup": tps[n] / tps[1]})

    medians = {"one": [], "split": []}
    for _ in range(a.runs):
        for key, extra in (("one", []), ("split", ["--tensor-parallel", str(n)])):
            r = json.loads(run([a.ours, "bench", "--device", "cuda", "--weights-dtype", "bf16", "--shape", "2.7b", "--batch", "1",
                                "--prompt", "512", "--generate", "128", "--json"] + extra, 900))
            tg = [x for x in r["results"] if x["test"].startswith("tg")][0]
            medians[key].append(tg["median_tokens_per_s"])
    one, split = statistics.median(medians["one"]), statistics.median(medians["split"])
    out["decode"] = {"shape": "2.7b", "batch": 1, "runs": medians, "one_gpu": one, "tensor_parallel": split, "speedup": split / one}

    text = run([a.ours, "selftest", "--device", "cuda", "--gpus", str(n), "--only", "collectives,tensor-parallel"], 1200, check=False)
    out["selftest"] = {"passed": text.count("\nPASS"), "failed": text.count("\nFAIL"), "lines": text.splitlines()}

    json.dump(out, open(a.json, "w"), indent=1)
    lines = [f"# {n} GPUs against one (benchmarks/gpu_multi_compare.py)", "",
             "| test | one GPU | N GPUs | ratio | criterion |", "| --- | --- | --- | --- | --- |"]
    for t in out["training"]:
        lines.append(f"| training {t['preset']}, {t['batch_per_gpu']}×2048 a GPU, tok/s | {t['tokens_per_second'][1]:,.0f} | "
                     f"{t['tokens_per_second'][n]:,.0f} | {t['speedup']:.2f}× | ≥ 1.85× |")
    d = out["decode"]
    lines.append(f"| 2.7b decode, batch 1, tok/s (median of {a.runs}) | {d['one_gpu']:,.1f} | {d['tensor_parallel']:,.1f} | "
                 f"{d['speedup']:.2f}× | ≥ 1.3× |")
    s = out["selftest"]
    lines += ["", f"selftest --gpus {n} --only collectives,tensor-parallel: {s['passed']} passed, {s['failed']} failed"]
    open(a.markdown, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
