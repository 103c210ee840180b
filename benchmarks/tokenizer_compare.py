#!/usr/bin/env python3
"""Encoding throughput of `mamba2 bench tokenizer` beside Python's `tokenizers` (Rust) on the same text, one
thread each, in one run. The text (a few MB) mixes the tokenizer test corpus with Python standard-library
source and docstrings, written to --text.

  pip install tokenizers==0.23.3
  python3 benchmarks/tokenizer_compare.py [--mb 4]
"""
import argparse, glob, json, os, subprocess, time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--mb", type=float, default=4)
ap.add_argument("--text", default="/tmp/mamba2-tokenizer-bench.txt")
ap.add_argument("--tokenizer", default=os.path.join(ROOT, "Tokenizers/gpt-neox-20b/tokenizer.json"))
ap.add_argument("--binary", default=os.path.join(ROOT, ".build/release/mamba2"))
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()

parts = [json.loads(l) for l in open(os.path.join(ROOT, "Tests/Mamba2Tests/Fixtures/tokenizers/corpus.jsonl"), encoding="utf-8")]
for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
    parts.append(open(path, encoding="utf-8", errors="replace").read())
text, i = "", 0
while len(text.encode()) < a.mb * 1e6:
    text += parts[i % len(parts)] + "\n"
    i += 1
with open(a.text, "w", encoding="utf-8") as f:
    f.write(text)
size = len(text.encode())

tok = Tokenizer.from_file(a.tokenizer)
rows = []
for rep in range(a.reps):  # interleaved
    t0 = time.perf_counter()
    n_py = len(tok.encode(text).ids)
    rows.append(("tokenizers (Python, Rust core)", size / (time.perf_counter() - t0) / 1e6, n_py))
    out = json.loads(subprocess.run([a.binary, "bench", "tokenizer", "--tokenizer", a.tokenizer, "--text-file", a.text,
                                     "--repetitions", "1", "--json"], check=True, capture_output=True, text=True).stdout)
    rows.append(("mamba2 (Swift)", out["mb_per_s"], out["tokens"]))
best = {}
for name, mbps, n in rows:
    best[name] = max(best.get(name, 0), mbps)
    assert n == rows[0][2], f"{name} produced {n} tokens, tokenizers {rows[0][2]}"
print(f"GPT-NeoX-20B tokenizer, {size / 1e6:.1f} MB of mixed text, one thread, best of {a.reps} interleaved runs")
for name, v in best.items():
    print(f"{name:<32} {v:8.2f} MB/s   {v / best['tokenizers (Python, Rust core)']:.2f}×")
