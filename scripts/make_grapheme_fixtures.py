#!/usr/bin/env python3
"""Builds the grapheme-edge tokenizer fixtures with Python's `tokenizers` (pip install tokenizers==0.23.3) from
the tokenizer files already in the repository (nothing is retrained):

  Tests/Mamba2Tests/Fixtures/tokenizers/
    grapheme-edges.jsonl            strings where a Unicode scalar and a grapheme cluster disagree: a space (or the
                                    Metaspace replacement) followed by a combining mark, an emoji modifier or a ZWJ,
                                    at the start, after an added token and between words; then the strings of
                                    fuzz-found.jsonl (each one differential fuzzing found)
    expected-grapheme-NAME.jsonl    per string: {"ids": [...], "decoded": "..."} as tokenizers gives them

Run from the repository root: python3 scripts/make_grapheme_fixtures.py
"""
import itertools
import json
import os

from tokenizers import Tokenizer

DIR = "Tests/Mamba2Tests/Fixtures/tokenizers"
TOKENIZERS = {
    "neox-style": DIR + "/neox-style.json",
    "gpt2-style": DIR + "/gpt2-style.json",
    "llama-style": DIR + "/llama-style.json",
    "gpt-neox-20b": "Tokenizers/gpt-neox-20b/tokenizer.json",
}

marks = ["\u0301", "\u0308\u0323", "\U0001F3FD", "\u200d", "\ufe0f", "\u20e3", "\u0e31", "\u093f", "\u1160"]
lead = [" ", "  ", "\t", "\n", "\u2581", "\u00a0", ""]
tail = ["", "x", " y", "e\u0301", "\U0001F44D", "\u2581z"]
pre = ["", "a", "word ", "<|endoftext|>", "<s>", "<|padding|>", "\u2581"]
strings = []
for p, l, m, t in itertools.product(pre, lead, marks, tail):
    strings.append(p + l + m + t)
strings += [" \u0301", " \u0301x", "\u0301", " \U0001F3FD", "a \u0301 b", "\u2581\u0301x", "  \u0301\u0301  ", " \u0301" * 5,
            "\U0001F469\u200d\U0001F469\u200d\U0001F467", " \U0001F469\u200d\u0301", "x\u200dy", "\u0301" * 40]

# and every string differential fuzzing found us encoding differently (scripts/tokenizer_diff_fuzz.py)
with open(os.path.join(DIR, "fuzz-found.jsonl"), encoding="utf-8") as f:
    strings += [json.loads(line) for line in f if line.strip()]

with open(os.path.join(DIR, "grapheme-edges.jsonl"), "w", encoding="utf-8") as f:
    for s in strings:
        f.write(json.dumps(s, ensure_ascii=True) + "\n")
for name, path in TOKENIZERS.items():
    tok = Tokenizer.from_file(path)
    with open(os.path.join(DIR, "expected-grapheme-" + name + ".jsonl"), "w", encoding="utf-8") as f:
        for s in strings:
            ids = tok.encode(s).ids
            f.write(json.dumps({"ids": ids, "decoded": tok.decode(ids)}, ensure_ascii=True) + "\n")
print(len(strings), "strings;", ", ".join(TOKENIZERS))
