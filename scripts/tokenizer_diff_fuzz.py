#!/usr/bin/env python3
"""Differential tokenizer fuzzing: random strings encoded and decoded by Python's `tokenizers` (pip install
tokenizers==0.23.3) and by ours (`mamba2 tokenize --jsonl`, `mamba2 detokenize --jsonl`), compared id for id
and character for character.

The strings are weighted toward where tokenizers disagree: combining marks (alone, stacked, after a space or
the Metaspace replacement), emoji with skin-tone modifiers, ZWJ sequences and variation selectors, mixed
scripts, runs of every kind of whitespace, digits, punctuation, and the tokenizer's own added and special
tokens placed at piece boundaries; plus random code points from the whole range.

usage: tokenizer_diff_fuzz.py --binary .build/release/mamba2 [--count 1000000] [--seed 1] [--out DIR]
                              [NAME=tokenizer.json ...]   (default: the four tokenizers of the test fixtures)
Prints one line per tokenizer and a total; writes mismatches (at most 50 per tokenizer) to DIR/mismatches-NAME.jsonl
and the counts to DIR/summary.json; exits 1 on any mismatch.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "Tests/Mamba2Tests/Fixtures/tokenizers")
DEFAULT = {
    "gpt-neox-20b": os.path.join(ROOT, "Tokenizers/gpt-neox-20b/tokenizer.json"),
    "gpt2-style": os.path.join(FIX, "gpt2-style.json"),
    "neox-style": os.path.join(FIX, "neox-style.json"),
    "llama-style": os.path.join(FIX, "llama-style.json"),
}

COMBINING = [chr(c) for c in list(range(0x300, 0x370)) + [0x483, 0x591, 0x5B0, 0x610, 0x64B, 0x670, 0x900, 0x93C, 0x93F,
                                                          0x94D, 0xE31, 0xE48, 0x1AB0, 0x1DC0, 0x20D0, 0x20E3, 0xFE20, 0x302A]]
MODIFIERS = [chr(c) for c in range(0x1F3FB, 0x1F400)]
EMOJI = [chr(c) for c in list(range(0x1F600, 0x1F650)) + list(range(0x1F466, 0x1F46A)) + [0x2764, 0x1F3F3, 0x1F44D, 0x270B, 0x1F9D1]]
JOINERS = ["\u200d", "\ufe0f", "\ufe0e", "\u200c", "\u2060", "\ufeff"]
FLAGS = ["\U0001F1EF\U0001F1F5", "\U0001F1FA\U0001F1F8", "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2002", "\u2009", "\u202f", "\u2028", "\u000b", "\u000c", "\u2581"]
SCRIPTS = ["hello", "World", "naïve", "Ελληνικά", "русский", "עברית", "العربية", "हिन्दी", "ไทย", "한국어", "日本語", "中文",
           "Tiếng Việt", "ქართული", "አማርኛ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﬁﬂ", "①②", "ｶﾀｶﾅ", "x²", "Å", "ǅ", "İstanbul", "ß", "ﷺ"]
PUNCT = list(".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`") + ["...", "--", "'s", "'ll", "n't", "\u2019", "\u201c", "\u2026"]


def random_piece(rng, specials):
    k = rng.random()
    if k < 0.16:
        return rng.choice(SPACES) * rng.randint(1, 3) + "".join(rng.choice(COMBINING) for _ in range(rng.randint(1, 3)))
    if k < 0.26:
        return rng.choice(EMOJI) + rng.choice(MODIFIERS + [""])
    if k < 0.34:
        parts = [rng.choice(EMOJI) + rng.choice(MODIFIERS + [""]) for _ in range(rng.randint(2, 4))]
        return rng.choice(JOINERS[:1] * 3 + JOINERS).join(parts)
    if k < 0.37:
        return rng.choice(FLAGS)
    if k < 0.50:
        return rng.choice(SCRIPTS)
    if k < 0.62:
        return rng.choice(SPACES) * rng.randint(1, 6)
    if k < 0.68:
        return str(rng.randint(0, 10 ** rng.randint(1, 12)))
    if k < 0.75:
        return rng.choice(PUNCT)
    if k < 0.83 and specials:
        return rng.choice(specials)
    if k < 0.90:
        return rng.choice(JOINERS) + rng.choice(COMBINING)
    # any code point but surrogates
    while True:
        c = rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x7FF), rng.randint(0x800, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def make_strings(rng, n, specials):
    out = []
    for _ in range(n):
        out.append("".join(random_piece(rng, specials) for _ in range(rng.randint(1, 8))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--count", type=int, default=1_000_000, help="strings per tokenizer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("tokenizers", nargs="*")
    a = ap.parse_args()
    toks = dict(t.split("=", 1) for t in a.tokenizers) if a.tokenizers else DEFAULT
    out = a.out or tempfile.mkdtemp(prefix="tokfuzz_")
    os.makedirs(out, exist_ok=True)
    summary = {"count_per_tokenizer": a.count, "seed": a.seed, "tokenizers": {}}
    total = 0
    for name, path in toks.items():
        t0 = time.time()
        tok = Tokenizer.from_file(path)
        specials = [t.content for t in tok.get_added_tokens_decoder().values()][:200]
        rng = random.Random(f"{a.seed}-{name}")
        strings = make_strings(rng, a.count, specials)
        with tempfile.TemporaryDirectory() as d:
            sfile, ifile = os.path.join(d, "s.jsonl"), os.path.join(d, "i.jsonl")
            with open(sfile, "w", encoding="utf-8") as f:
                for s in strings:
                    f.write(json.dumps(s, ensure_ascii=True) + "\n")
            encoded = tok.encode_batch(strings)
            want_ids = [e.ids for e in encoded]
            with open(ifile, "w") as f:
                for ids in want_ids:
                    f.write(json.dumps(ids) + "\n")
            want_text = tok.decode_batch(want_ids)
            got_ids = subprocess.run([a.binary, "tokenize", "--tokenizer", path, "--jsonl", sfile], check=True,
                                     capture_output=True, text=True).stdout.split("\n")[:-1]
            got_text = subprocess.run([a.binary, "detokenize", "--tokenizer", path, "--jsonl", ifile], check=True,
                                      capture_output=True, text=True).stdout.split("\n")[:-1]  # not splitlines: U+2028 is text
        assert len(got_ids) == len(strings) and len(got_text) == len(strings), (name, len(got_ids), len(got_text))
        enc_bad = dec_bad = 0
        examples = []
        for s, w, g, wt, gt in zip(strings, want_ids, got_ids, want_text, got_text):
            gi = json.loads(g)
            gs = json.loads(gt)
            if gi != w:
                enc_bad += 1
                if len(examples) < 50:
                    examples.append({"kind": "encode", "text": s, "tokenizers": w, "ours": gi})
            if gs != wt:
                dec_bad += 1
                if len(examples) < 50:
                    examples.append({"kind": "decode", "ids": w, "tokenizers": wt, "ours": gs})
        with open(os.path.join(out, f"mismatches-{name}.jsonl"), "w", encoding="utf-8") as f:
            for e in examples:
                f.write(json.dumps(e, ensure_ascii=True) + "\n")
        secs = time.time() - t0
        summary["tokenizers"][name] = {"strings": len(strings), "encode_mismatches": enc_bad, "decode_mismatches": dec_bad,
                                       "seconds": round(secs, 1)}
        total += enc_bad + dec_bad
        print(f"{name}: {len(strings)} strings, {enc_bad} encode and {dec_bad} decode mismatches ({secs:.0f} s)", flush=True)
    summary["mismatches"] = total
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"total mismatches: {total}; details in {out}")
    sys.exit(1 if total else 0)


main()
