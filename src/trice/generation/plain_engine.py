"""The plain sampling path: a growing ``DynamicCache``, batches of prompts run to their end.

Used for models the slot engine (:mod:`trice.generation.slot_engine`) does not cover (sliding-window or
soft-capped attention), on CUDA (where it is faster: :func:`trice.generation.sampler.auto_engine`), and
as the reference the engine is tested against. Row i's input is the prefix, then its prompt; prompts
of different lengths are left-padded *between* the prefix and the prompt; pads get attention mask 0
and positions are ``cumsum(mask) - 1``, so every row sees exactly what it would see alone. Each new
token is drawn, checked and recorded by :class:`~trice.generation.rows.RowWriter`, as in the engine.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache

from ..modeling.layout import attention_mask, prefix_cache, row_block
from ..runtime import interrupts
from .rows import Rows, RowWriter


def run(policy, ids: list[list[int]], row_ids: list[int], key: int, *, max_new_tokens: int, temperature: float,
        stop: tuple[str, ...], stop_ids: set[int], batch_size: int, hook=None) -> Rows:
    out = Rows.empty(len(ids), max_new_tokens)
    if not ids or max_new_tokens == 0:
        return out
    writer = RowWriter(policy, out, row_ids, key, temperature=temperature, stop=stop, stop_ids=stop_ids, hook=hook)
    prefix = policy.prefix_embeds()
    prefix_kv = prefix_cache(policy, prefix)  # all prefix tokens but the last (trice.modeling.layout)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # little padding per batch
    for start in range(0, len(ids), batch_size):
        rows = order[start:start + batch_size]
        _batch(policy, [ids[i] for i in rows], rows, prefix, prefix_kv, max_new_tokens, writer)
    return out


def _batch(policy, ids, rows, prefix, prefix_kv, max_new_tokens, writer: RowWriter) -> None:
    device = policy.device
    embeds, real, pos = row_block(policy, ids, prefix)
    mask = attention_mask(real, prefix)
    if prefix_kv is None:
        cache = DynamicCache(config=policy.base_model.config)
    else:  # the shared prefix, repeated over the batch
        cache = copy.deepcopy(prefix_kv)
        cache.batch_repeat_interleave(len(ids))
    active = torch.tensor(rows, dtype=torch.long)  # the call's row index of each row still in the batch
    for t in range(max_new_tokens):
        interrupts.check()  # a SIGINT/SIGTERM ends a long sampling phase between decode steps
        out = policy.forward(embeds, mask, position_ids=pos, past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        next_ids, done = writer.emit(active, torch.full((len(active),), t, dtype=torch.long), out.logits[:, -1, :])
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        pos = pos[:, -1:] + 1
        if bool(done.any()):
            keep = (~done).nonzero().flatten()
            idx = keep.to(device)
            cache.batch_select_indices(idx)
            mask, pos, next_ids, active = mask[idx], pos[idx], next_ids[idx], active[keep]
        embeds = policy.embed(next_ids[:, None])
