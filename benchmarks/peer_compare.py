#!/usr/bin/env python3
"""Side-by-side CPU benchmark of this project against llama.cpp and transformers, same machine, same
thread count, same random weights of a released Mamba-2 shape.

  benchmarks/setup_peers.sh                       # once: the peers' virtual environment and llama-bench
  /opt/peers/bin/python benchmarks/peer_compare.py --shape 130m --threads 2 --reps 3 --llama-bench PATH

Steps: (1) write a random mamba2-SHAPE checkpoint in the Hugging Face layout (float32 safetensors,
initialized as mamba_ssm does); (2) convert it to GGUF f32, f16, bf16 and q8_0 with the converter that ships
inside the llama-cpp-python source package (fetched from PyPI with pip); (3) per repetition, interleaved:
`mamba2 bench` (f32, bf16 and Q8_0 decode weights), llama.cpp's own `llama-bench` on each GGUF (-p 512 -n 128,
one repetition per call, no Python in its timed loop; a type it cannot run on the host, e.g. a SIGILL, is
reported as such), and transformers' Mamba2ForCausalLM on PyTorch CPU; (4) print one table of pp512 / tg128
tokens/s with ratios to llama.cpp f32 and to llama.cpp's best 16/8-bit figure, and write it as JSON.

Where a checkpoint cannot be converted (the GPU machine: no transformers, 64 MiB of carried files),
`--random-gguf` writes the four GGUFs directly with benchmarks/random_gguf.py (numpy and gguf-py only; the
layout llama.cpp's converter writes) and both systems read the same files; there is no transformers row.
`--levels avx512-bf16,avx512` adds rows of our bf16 run with `--cpu-kernels` capped at each level: the same
run with a path (AMX, AVX512-BF16) switched off.
"""
import argparse, glob, json, math, os, shutil, statistics, subprocess, sys, tarfile, tempfile, time

# PyTorch's OpenMP threads spin after each parallel region unless told otherwise; spinning threads of
# an idle peer would slow the others in this interleaved run.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np

SHAPES = {"130m": (768, 24), "370m": (1024, 48), "780m": (1536, 48), "1.3b": (2048, 48), "2.7b": (2560, 64)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_checkpoint(shape, out):
    """A random mamba2 checkpoint in the transformers layout (float32)."""
    from safetensors.numpy import save_file
    d, n = SHAPES[shape]
    V, N, P, G, K = 50288, 128, 64, 1, 4
    din = 2 * d
    H = din // P
    E = 2 * din + 2 * G * N + H
    cd = din + 2 * G * N
    rng = np.random.default_rng(1)
    t = {"backbone.embeddings.weight": (rng.standard_normal((V, d)) * 0.02).astype(np.float32),
         "backbone.norm_f.weight": np.ones(d, np.float32)}
    for i in range(n):
        p = f"backbone.layers.{i}."
        dt = np.exp(rng.uniform(math.log(1e-3), math.log(0.1), H))
        t[p + "norm.weight"] = np.ones(d, np.float32)
        t[p + "mixer.in_proj.weight"] = (rng.standard_normal((E, d)) * 0.02).astype(np.float32)
        t[p + "mixer.conv1d.weight"] = rng.uniform(-0.5, 0.5, (cd, 1, K)).astype(np.float32)
        t[p + "mixer.conv1d.bias"] = np.zeros(cd, np.float32)
        t[p + "mixer.dt_bias"] = (dt + np.log(-np.expm1(-dt))).astype(np.float32)
        t[p + "mixer.A_log"] = np.log(rng.uniform(1, 16, H)).astype(np.float32)
        t[p + "mixer.D"] = np.ones(H, np.float32)
        t[p + "mixer.norm.weight"] = np.ones(din, np.float32)
        t[p + "mixer.out_proj.weight"] = (rng.standard_normal((d, din)) * 0.02).astype(np.float32)
    os.makedirs(out, exist_ok=True)
    save_file(t, os.path.join(out, "model.safetensors"))
    cfg = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": d, "num_hidden_layers": n,
           "vocab_size": V, "state_size": N, "conv_kernel": K, "expand": 2, "head_dim": P, "num_heads": H, "n_groups": G,
           "chunk_size": 256, "use_bias": False, "use_conv_bias": True, "layer_norm_epsilon": 1e-5, "residual_in_fp32": True,
           "tie_word_embeddings": True, "norm_before_gate": False, "rms_norm": True, "time_step_limit": [0.0, float("inf")],
           "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "torch_dtype": "float32"}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    shutil.copy(os.path.join(ROOT, "Tokenizers/gpt-neox-20b/tokenizer.json"), out)


def converter(workdir):
    """The GGUF converter shipped in the llama-cpp-python sdist (same version as the installed peer)."""
    dest = os.path.join(workdir, "llama-src")
    if not os.path.exists(dest):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "llama-cpp-python==0.3.36", "-d", workdir], check=True)
        sdist = glob.glob(os.path.join(workdir, "llama_cpp_python-*.tar.gz"))[0]
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name and
                       any(k in m.name for k in ("convert_hf_to_gguf.py", "/conversion/", "/gguf-py/", "/models/ggml-vocab"))]
            tar.extractall(dest, members=members)
    return glob.glob(os.path.join(dest, "*", "vendor", "llama.cpp", "convert_hf_to_gguf.py"))[0]


def convert(ckpt, outtype, workdir):
    out = os.path.join(workdir, f"model-{outtype}.gguf")
    if not os.path.exists(out):
        subprocess.run([sys.executable, converter(workdir), ckpt, "--outtype", outtype, "--outfile", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def bench_ours(binary, ckpt, threads, dtype, level=None):
    cap = ["--cpu-kernels", level] if level else []
    r = subprocess.run([binary, "bench", "--model", ckpt, "--threads", str(threads), "--repetitions", "1",
                        "--weights-dtype", dtype, "--json"] + cap, check=True, capture_output=True, text=True)
    j = json.loads(r.stdout)
    res = {x["test"]: x["tokens_per_s"] for x in j["results"]}
    return res["pp512"], res["tg128"], j["peak_rss_bytes"], j.get("prefill_products", "?")


def random_ggufs(shape, work):
    """The four GGUFs written by random_gguf.py (same seed: the same weights rounded to each type)."""
    os.makedirs(work, exist_ok=True)
    out = {}
    for t in ("f32", "f16", "bf16", "q8_0"):
        path = os.path.join(work, f"random-{t}.gguf")
        if not os.path.exists(path):
            subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks/random_gguf.py"), "--shape", shape, "--type", t,
                            "--tokenizer-gguf", os.path.join(ROOT, "Tests/Mamba2Tests/Fixtures/gguf/neox-tokenizer.gguf"),
                            "--out", path], check=True)
        out[t] = path
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def bench_llama(llama_bench, gguf_path, threads):
    """llama.cpp's own benchmark: pp512 and tg128 tokens/s of one repetition (after its warm-up run), or
    None when it cannot run this type here (it dies, e.g. with SIGILL on a host its kernels misjudge)."""
    r = subprocess.run([llama_bench, "-m", gguf_path, "-p", "512", "-n", "128", "-t", str(threads), "-r", "1", "-o", "json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"llama-bench failed on {os.path.basename(gguf_path)} (exit {r.returncode}): {r.stderr.strip()[-200:]}", file=sys.stderr)
        return None
    j = json.loads(r.stdout)
    pp = next(x["avg_ts"] for x in j if x["n_prompt"] == 512 and x["n_gen"] == 0)
    tg = next(x["avg_ts"] for x in j if x["n_gen"] == 128)
    return pp, tg


def bench_torch(model, threads, rng):
    import torch
    torch.set_num_threads(threads)
    V = 50277
    with torch.no_grad():
        ids = torch.from_numpy(rng.integers(0, V, (1, 512)))
        t0 = time.perf_counter()
        model(ids)
        pp = 512 / (time.perf_counter() - t0)
        ids = torch.from_numpy(rng.integers(0, V, (1, 4)))
        out = model(ids, use_cache=True)
        cache = out.cache_params
        tok = out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for i in range(128):
            out = model(tok, cache_params=cache, use_cache=True, cache_position=torch.tensor([4 + i]))
            cache = out.cache_params
            tok = out.logits[:, -1:].argmax(-1)
        tg = 128 / (time.perf_counter() - t0)
    return pp, tg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="130m", choices=SHAPES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/mamba2"))
    ap.add_argument("--workdir", default="/tmp/mamba2-peers")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=None, help="write the results here as JSON")
    ap.add_argument("--llama-bench", required=True, help="llama.cpp's llama-bench (benchmarks/setup_peers.sh builds it)")
    ap.add_argument("--random-gguf", action="store_true",
                    help="write random GGUFs with random_gguf.py instead of converting a checkpoint; both systems read them; no transformers")
    ap.add_argument("--levels", default="", help="extra rows: our bf16 run with --cpu-kernels capped at each of these levels, comma-separated")
    a = ap.parse_args()
    work = os.path.join(a.workdir, a.shape)
    if a.random_gguf:
        ggufs = random_ggufs(a.shape, work)
        models = {t: ggufs[t] for t in ("f32", "bf16", "q8_0")}  # ours reads the file of its own type
    else:
        ckpt = os.path.join(work, "hf")
        if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
            write_checkpoint(a.shape, ckpt)
        ggufs = {t: convert(ckpt, t, work) for t in ("f32", "f16", "bf16", "q8_0")}
        models = {t: ckpt for t in ("f32", "bf16", "q8_0")}
    levels = [x for x in a.levels.split(",") if x]
    torch_model = None
    if not a.no_torch and not a.random_gguf:
        import torch
        from transformers import Mamba2ForCausalLM
        torch_model = Mamba2ForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    rng = np.random.default_rng(7)
    ours = [(f"mamba2-swift {dt}", dt, None) for dt in ("f32", "bf16", "q8_0")] + [(f"mamba2-swift bf16 ({lv})", "bf16", lv) for lv in levels]
    rows = {k: {"pp": [], "tg": []} for k in [n for n, _, _ in ours] + ["llama.cpp f32", "llama.cpp f16", "llama.cpp bf16",
                                                                          "llama.cpp q8_0", "transformers f32"]}
    rss, paths = {}, {}
    for rep in range(a.reps):  # interleaved: each repetition runs every peer once
        for name, dt, level in ours:
            pp, tg, peak, path = bench_ours(a.binary, models[dt], a.threads, dt, level)
            rows[name]["pp"].append(pp); rows[name]["tg"].append(tg)
            rss[name] = peak; paths[name] = path
        for t, path in ggufs.items():
            res = bench_llama(a.llama_bench, path, a.threads)
            if res is not None:
                rows[f"llama.cpp {t}"]["pp"].append(res[0]); rows[f"llama.cpp {t}"]["tg"].append(res[1])
        if torch_model is not None:
            pp, tg = bench_torch(torch_model, a.threads, rng)
            rows["transformers f32"]["pp"].append(pp); rows["transformers f32"]["tg"].append(tg)
        print(f"repetition {rep + 1}/{a.reps} done", file=sys.stderr)
    base_pp = statistics.mean(rows["llama.cpp f32"]["pp"])
    # The other baseline is llama.cpp's best figure over the 16- and 8-bit types that ran (f16, bf16, q8_0).
    low = [statistics.mean(rows[f"llama.cpp {t}"]["tg"]) for t in ("f16", "bf16", "q8_0") if rows[f"llama.cpp {t}"]["tg"]]
    base_tg = {"f32": statistics.mean(rows["llama.cpp f32"]["tg"]), "low": max(low) if low else float("nan")}
    print(f"mamba2-{a.shape} shape, random weights, {a.threads} threads, {a.reps} interleaved repetitions (mean ± sd); llama.cpp by llama-bench")
    print("host: " + cpu_model() + "; our prefill products: " + ", ".join(f"{n[13:]}: {p}" for n, p in paths.items()))
    print(f"{'system':<28} {'pp512 tok/s':>16} {'vs llama f32':>13} {'tg128 tok/s':>16} {'vs llama f32':>13} {'vs llama best 16/8-bit':>23}")
    out = {"shape": a.shape, "threads": a.threads, "reps": a.reps, "llama": "llama-bench", "rows": {}, "prefill_products": paths,
           "weights": "random GGUFs (random_gguf.py)" if a.random_gguf else "random checkpoint converted by llama.cpp's converter",
           "cpu": cpu_model(), "did_not_run": [n for n, r in rows.items() if not r["pp"]]}
    for name, r in rows.items():
        if not r["pp"]:
            continue
        mp, mt = statistics.mean(r["pp"]), statistics.mean(r["tg"])
        sp = statistics.stdev(r["pp"]) if len(r["pp"]) > 1 else 0
        st = statistics.stdev(r["tg"]) if len(r["tg"]) > 1 else 0
        print(f"{name:<28} {mp:>9.1f} ± {sp:<5.1f} {mp / base_pp:>12.2f}× {mt:>9.1f} ± {st:<5.1f} {mt / base_tg['f32']:>12.2f}× {mt / base_tg['low']:>22.2f}×")
        out["rows"][name] = {"pp512": r["pp"], "tg128": r["tg"]}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
