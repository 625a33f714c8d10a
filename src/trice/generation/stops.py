"""Where a sampled row stops: at a stop token (EOS, any special token) or once its text contains a stop
string. One home for both engines (:class:`StopCheck`), the vLLM backend (:func:`stop_token_ids`) and
the text cut (:func:`cut_at_stop`); the vocabulary scan (:func:`stop_candidates`) also filters the tool
hook's calls (:mod:`trice.generation.tool_inserts`)."""

from __future__ import annotations

import torch


def stop_token_ids(tokenizer, model=None) -> set[int]:
    """The token ids sampling stops at: EOS ids from the tokenizer and the model's generation config, and
    every special token (a continuation is text, and a special token would be dropped from it anyway)."""
    ids = set(tokenizer.all_special_ids)
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if source is not None:
            ids.update(source if isinstance(source, (list, tuple)) else [source])
    return ids


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one occurred.

    >>> cut_at_stop("4. So the answer is 4.\\n\\nQuestion: ...", ("\\n\\n",))
    ('4. So the answer is 4.', True)
    """
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def stop_candidates(tokenizer, vocab: int, stop: tuple[str, ...], device) -> torch.Tensor:
    """``[vocab]`` bool: tokens after which the text may newly contain a stop string, i.e. whose
    text alone contains the last character of some stop string (or that decode to nothing or to a
    partial character, whose text depends on their neighbours). Cached on the tokenizer."""
    ends = {s[-1] for s in stop if s}
    cache = tokenizer.__dict__.setdefault("_trice_stop_candidates", {})
    key = (vocab, tuple(sorted(ends)))
    if key not in cache:
        texts = tokenizer.batch_decode([[i] for i in range(min(vocab, len(tokenizer)))], skip_special_tokens=True)
        flags = [(not t) or ("\ufffd" in t) or any(e in t for e in ends) for t in texts]
        flags += [True] * (vocab - len(flags))
        cache[key] = torch.tensor(flags, dtype=torch.bool)
    return cache[key].to(device)


class StopCheck:
    """Which rows a new token ends: a stop token id, or a stop string in the text's tail. The string test
    decodes a row's last tokens only when its new token may complete a stop string (:func:`stop_candidates`),
    which is rare, so a step's Python work does not grow with the number of rows."""

    def __init__(self, tokenizer, vocab: int, stop: tuple[str, ...], stop_ids: set[int], device):
        self.tokenizer, self.stop = tokenizer, tuple(s for s in stop if s)
        self.ids = torch.tensor(sorted(stop_ids), dtype=torch.long)
        self.candidates = stop_candidates(tokenizer, vocab, self.stop, device) if self.stop else None
        self.tail = max([len(s) for s in self.stop] + [0]) + 1  # trailing tokens enough to hold any stop string

    def hits(self, next_ids: torch.Tensor, next_cpu: torch.Tensor, tokens_of) -> torch.Tensor:
        """``[n]`` bool on the CPU: the rows that end here; ``tokens_of(k)`` is row k's tokens so far."""
        hit = torch.isin(next_cpu, self.ids)
        if self.candidates is not None:
            for k in (self.candidates[next_ids].cpu() & ~hit).nonzero().flatten().tolist():
                text = self.tokenizer.decode(tokens_of(k)[-self.tail:], skip_special_tokens=True)
                hit[k] = any(s in text for s in self.stop)
        return hit
