"""Which vocabulary tokens may complete a stop string (or a tool trigger): a one-time scan of the
vocabulary, shared by the sampling engine's stop check and the tool hook's filter (:mod:`trice.tool_inserts`)."""

from __future__ import annotations

import torch


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
