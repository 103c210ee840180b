#!/usr/bin/env python3
"""Builds the tokenizer test fixtures with Python's `tokenizers` (pip install tokenizers==0.23.3):

  Tests/Mamba2Tests/Fixtures/tokenizers/
    neox-style.json    NFC, ByteLevel without prefix space, byte-level BPE, <|endoftext|>/<|padding|>,
                       whitespace-run added tokens (non-special, normalized)
    gpt2-style.json    ByteLevel with prefix space, TemplateProcessing <bos> $A <eos>
    llama-style.json   Metaspace (prepend first, no split), BPE with byte_fallback and <0x00>..<0xFF>,
                       decoders Replace/ByteFallback/Fuse/Strip, TemplateProcessing <s> $A
    corpus.jsonl       the test strings, one JSON string per line
    expected-NAME.jsonl  per string: {"ids": [...], "decoded": "..."} as tokenizers gives them
                       (encode with add_special_tokens=True; decode with skip_special_tokens=True)

The training text is the docstrings and comments of Python's standard library (PSF license) and the
corpus itself. Run from the repository root: python3 scripts/make_tokenizer_fixtures.py [neox-tokenizer.json]
"""
import glob
import json
import os
import random
import sys
import unicodedata

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers, Regex
from tokenizers import AddedToken

OUT = "Tests/Mamba2Tests/Fixtures/tokenizers"
rng = random.Random(20261129)


def stdlib_lines(limit):
    lines = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:300]:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                s = line.rstrip("\n")
                if s.strip():
                    lines.append(s)
    rng.shuffle(lines)
    return lines[:limit]


def corpus():
    out = [""]  # the empty string
    prose = stdlib_lines(6000)
    out += prose[:700]                                   # ASCII prose and code lines, as they are
    out += ["    " * rng.randint(1, 6) + p.strip() for p in prose[700:900]]    # indentation runs
    ws = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \t ", "\u00a0", "\u3000", "        "]
    for i in range(200):                                 # whitespace runs, tabs, newlines between words
        words = rng.sample(prose[900 + i].split() or ["x"], k=min(4, len(prose[900 + i].split() or ["x"])))
        s = ""
        for w in words:
            s += w + rng.choice(ws) * rng.randint(1, 3)
        out.append(s)
    for i in range(150):                                 # digits
        out.append(rng.choice(["", "x=", "Total: ", "v"]) + str(rng.randint(0, 10 ** rng.randint(1, 15))) +
                   rng.choice(["", ".5", ",000", " items", "%", "e-7"]) + " " + str(rng.random()))
    cjk = ["日本語のテキストです。", "中文分词测试，包括标点。", "한국어 문장입니다.", "漢字とひらがなとカタカナ", "東京タワー 2024年"]
    emoji = ["👍", "👍🏽", "👩‍👩‍👧‍👦", "🧑🏿‍💻", "🏳️‍🌈", "❤️", "🇯🇵", "😀😃😄", "👨‍❤️‍💋‍👨"]
    combining = ["e\u0301", "a\u0308", "n\u0303o", "A\u030a", "\u1e9b\u0323", "o\u0302\u0323", "Å", "é", "ﬁ", "①", "ｶﾀｶﾅ", "x²"]
    rtl = ["مرحبا بالعالم", "שלום עולם", "العربية 123 English", "עברית (בסוגריים)"]
    specials = ["<|endoftext|>", "<|padding|>", "<bos>", "<eos>", "<s>", "</s>", "<unk>"]
    for i in range(900):                                 # mixtures of everything
        parts = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.randrange(7)
            if kind == 0: parts.append(rng.choice(cjk))
            elif kind == 1: parts.append(rng.choice(emoji) * rng.randint(1, 2))
            elif kind == 2: parts.append("".join(rng.choice(combining) for _ in range(rng.randint(1, 4))))
            elif kind == 3: parts.append(rng.choice(rtl))
            elif kind == 4: parts.append(rng.choice(specials))
            elif kind == 5: parts.append(rng.choice(prose).strip()[:60])
            else: parts.append(rng.choice(ws) * rng.randint(1, 4))
        out.append(rng.choice(["", " ", "  "]).join(parts))
    out += ["'s 't 're 've 'm 'll 'd", "don't I'll we've they're", "'S 'LL", "a'b''c'''", "end.  Start", "x\n\n\ny",
            " leading space", "trailing space ", "   ", "\t\t", "\n", "🤖" * 30, "a" * 300, "ab" * 200,
            "<|endoftext|><|endoftext|>", "text<|endoftext|>text", " <|padding|> ", "\ud7a3\u1100\u1161",
            "Ⅷ ℌ ﬀ ㎏ ½", "ZWJ\u200dhere", "tab\there", "\x00\x01\x7f", "🇺🇸🇬🇧", "ß ẞ İ ı Σσς"]
    return out


def train_bpe(tok, trainer, lines):
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def neox_style(lines):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    train_bpe(tok, trainer, lines)
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in range(8, 1, -1)])
    return tok


def gpt2_style(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=["<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    train_bpe(tok, trainer, lines)
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)])
    return tok


def llama_style(lines):
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    # Train on ASCII-only text, so that CJK, emoji and accents fall back to bytes.
    ascii_lines = [l for l in lines if all(ord(c) < 128 for c in l)]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False, limit_alphabet=100)
    train_bpe(tok, trainer, ascii_lines)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    # As in real Llama files, the byte tokens live in the model's vocab only, not among the added tokens.
    j = json.loads(tok.to_str())
    j["added_tokens"] = [a for a in j["added_tokens"] if a["content"] not in byte_tokens]
    return Tokenizer.from_str(json.dumps(j))


def main():
    os.makedirs(OUT, exist_ok=True)
    strings = corpus()
    train = stdlib_lines(6000) + strings
    toks = {"neox-style": neox_style(train), "gpt2-style": gpt2_style(train), "llama-style": llama_style(train)}
    if len(sys.argv) > 1:
        toks["gpt-neox-20b"] = Tokenizer.from_file(sys.argv[1])
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in strings:
            f.write(json.dumps(s, ensure_ascii=True) + "\n")
    for name, tok in toks.items():
        if name != "gpt-neox-20b":
            tok.save(os.path.join(OUT, name + ".json"))
        with open(os.path.join(OUT, "expected-" + name + ".jsonl"), "w", encoding="utf-8") as f:
            for s in strings:
                ids = tok.encode(s).ids
                f.write(json.dumps({"ids": ids, "decoded": tok.decode(ids)}, ensure_ascii=True) + "\n")
    print(len(strings), "strings;", ", ".join(toks))


main()
