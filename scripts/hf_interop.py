"""Loads a checkpoint written by `mamba2 train` into transformers' Mamba2ForCausalLM and saves its
float32 logits on fixed token ids, for the Swift test that compares them with ours.

Usage: python scripts/hf_interop.py MODEL_DIR OUT.safetensors
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import Mamba2ForCausalLM


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    model = Mamba2ForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    # Fixed ids: the bytes of two English lines (byte-level vocabulary), 2 rows of 70 tokens, so that
    # the sequence spans two of the model's 64-token chunks.
    text = [
        "In the beginning God created the heaven and the earth. And the earth w",
        "And God said, Let there be light: and there was light. And God saw the",
    ]
    ids = torch.tensor([list(t.encode("utf-8")) for t in text], dtype=torch.long)
    assert ids.shape == (2, 70), ids.shape
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    save_file({"input_ids": ids.to(torch.int64), "logits": logits.contiguous()}, out,
              metadata={"source": "transformers Mamba2ForCausalLM (torch path), float32",
                        "transformers": __import__("transformers").__version__, "torch": torch.__version__})
    print(f"{out}: logits {tuple(logits.shape)}, transformers {__import__('transformers').__version__}")


if __name__ == "__main__":
    main()
