"""The one input layout the sampler engines and the scorer share.

A policy's input for a row is its prefix (exemplar text or soft prompt), then the row's tokens. All
prefix positions but the last are computed once and cached (shared by every row); the block each row
feeds after them is ``[last prefix token, the row's token ids]``, right-aligned in a block of common
width with pads on the left, so that every row ends at the block's last column. Pads are masked out;
positions continue the prefix's, ``P0 + (index among the row's real tokens)``, so every row sees
exactly what it would see alone. The last prefix token sits right before the row's own tokens (not
before the pads), so a row with an empty prompt predicts from the prefix, not from a pad.
"""

from __future__ import annotations

import torch


def cached_prefix_length(prefix: torch.Tensor) -> int:
    """How many prefix positions are cached (all but the last, which each row feeds itself)."""
    return max(prefix.shape[0] - 1, 0)


def prefix_cache(policy, prefix: torch.Tensor):
    """A ``DynamicCache`` of the cached prefix positions at batch 1 (None if there are none), run
    with gradient where the caller has it on (the scorer); callers repeat it over their rows."""
    from transformers import DynamicCache

    first = cached_prefix_length(prefix)
    if not first:
        return None
    cache = DynamicCache(config=policy.base_model.config)
    ones = torch.ones(1, first, dtype=torch.long, device=prefix.device)
    policy.forward(prefix[None, :first], ones, position_ids=ones.cumsum(-1) - 1, past_key_values=cache,
                   use_cache=True, logits_to_keep=1)
    return cache


def attention_mask(real: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """The 2-D mask of rows that feed ``real`` after the cached prefix positions: ``[n, P0 + w]``."""
    return torch.cat([real.new_ones(real.shape[0], cached_prefix_length(prefix)), real], dim=1).long()


def row_block(policy, rows: list[list[int]], prefix: torch.Tensor, width: int | None = None):
    """``(embeds [n, w, d], real [n, w] bool, positions [n, w] long)`` of the rows' blocks (see above);
    ``width`` defaults to the longest row plus the last prefix token. A ``prefix`` of token ids (a hard-text
    prefix, given as ids when the model's embedding is sharded and must run inside its forward) gives the
    blocks as token ids ``[n, w]`` instead of embeddings."""
    lead = 1 if prefix.shape[0] else 0
    width = width or max(len(x) for x in rows) + lead
    tok = policy.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    real = torch.zeros(n, width, dtype=torch.bool)
    starts = []
    for j, x in enumerate(rows):
        if x:
            ids[j, width - len(x):] = torch.tensor(x, dtype=torch.long)
        real[j, width - len(x) - lead:] = True
        starts.append(width - len(x) - lead)
    if prefix.dtype == torch.long:  # token ids in, the model embeds them itself
        if lead:
            ids[torch.arange(n), torch.tensor(starts)] = prefix[-1].cpu()
        ids = ids.to(policy.device)
        real = real.to(ids.device)
        return ids, real, (cached_prefix_length(prefix) + real.long().cumsum(-1) - 1).clamp(min=0)
    embeds = policy.embed(ids)
    if lead:  # the last prefix token (a soft prompt's last vector keeps its gradient)
        embeds = embeds.index_put((torch.arange(n, device=embeds.device), torch.tensor(starts, device=embeds.device)),
                                  prefix[-1].to(embeds.dtype).expand(n, -1))
    real = real.to(embeds.device)
    positions = (cached_prefix_length(prefix) + real.long().cumsum(-1) - 1).clamp(min=0)
    return embeds, real, positions
