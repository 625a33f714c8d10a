"""A tiny deterministic causal LM with a character-level tokenizer, for fast offline tests."""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<pad>", "</s>", "<unk>"]
CHARS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))  # printable incl. " " and "\n"


def make_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; decode joins tokens back with no spaces, so decode(encode(s)) == s."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # split every character
    tok.decoder = decoders.Fuse()  # concatenate tokens as they are
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def make_tiny_lm(seed: int = 0, hidden: int = 48, layers: int = 2):
    """A fresh ``(LlamaForCausalLM, tokenizer)`` pair, identical for the same seed."""
    tokenizer = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # A larger init spread than the default 0.02 so that logits are far from uniform: random models
    # then produce varied text and near-ties in greedy decoding are unlikely.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    model.eval()
    return model, tokenizer


def save_tiny_lm(path, seed: int = 0):
    """Save a tiny model and its tokenizer to ``path`` (a local model directory for the CLI)."""
    model, tok = make_tiny_lm(seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_exemplars(path):
    """A one-exemplar JSONL file for --exemplars (tiny random models never find their own)."""
    import json

    path.write_text(json.dumps({"question": "1 + 1 =", "rationale": "1 + 1 = 2. So the answer is 2.",
                                "answer": "2"}) + "\n")
    return path


def coin_task(n_train: int = 12, n_test: int = 6, gold: bool = False):
    """A toy task whose check a random tiny model passes about half the time (the character codes of
    the rationale sum to an even number), so accepted, rejected and uncovered examples all occur."""
    from trice.tasks import Example, Task

    class CoinTask(Task):
        def is_correct(self, rationale, answer):
            return sum(map(ord, rationale)) % 2 == 0

    train = [Example(f"{i} + 1 =", str(i + 1), rationale=f"{i} + 1 = {i + 1}. So the answer is {i + 1}." if gold else None)
             for i in range(n_train)]
    test = [Example(f"{i} + 2 =", str(i + 2)) for i in range(n_test)]
    exemplars = [Example("1 + 1 =", "2", rationale="1 + 1 = 2. So the answer is 2.")]
    return CoinTask("coin", train, test, exemplars=exemplars)


def real_data(relative: str):
    """``$TRICE_DATA_DIR/<relative>`` when the variable names a directory that holds it, else None: the real
    GSM8K and BIG-Bench Hard data are never in the project (CI points the variable at ../shared/data)."""
    import os
    from pathlib import Path

    root = os.environ.get("TRICE_DATA_DIR")
    path = Path(root).expanduser() / relative if root else None
    return path if path is not None and path.exists() else None


def needs_real_data(*relatives: str):
    """Skip a test unless ``$TRICE_DATA_DIR`` holds every one of ``relatives``, saying why."""
    import pytest

    return pytest.mark.skipif(any(real_data(r) is None for r in relatives),
                              reason=f"set TRICE_DATA_DIR to a directory with {' and '.join(relatives)} to run the "
                                     "checks against the real data")


def make_tiny_policy(params: str, prefix: str, seed: int = 0):
    """The tiny LM as a ``Policy`` trained through ``params``; LoRA's B matrices start at zero, so they are drawn
    at random here to make the adapters change the outputs."""
    from trice.modeling import Policy

    model, tok = make_tiny_lm(seed)
    policy = Policy.create(model, tok, params=params, prefix_text=prefix)
    if params == "lora":
        with torch.no_grad():
            for name, p in policy.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    return policy
