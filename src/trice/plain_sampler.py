"""The plain sampling path: a growing ``DynamicCache``, batches of prompts run to their end.

Used for models the slot engine (:mod:`trice.engine`) does not cover (sliding-window or soft-capped
attention) and as the reference the engine is tested against. Row i's input is the prefix, then
its prompt; prompts of different lengths are left-padded *between* the prefix and the prompt; pads
get attention mask 0 and positions are ``cumsum(mask) - 1``, so every row sees exactly what it would
see alone. Same randomness as the engine: the t-th token of row i uses ``uniforms(key, i, t)``.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache

from . import stopping
from .engine import Rows, vocab_size
from .tool_inserts import ToolInserts
from .layout import attention_mask, prefix_cache, row_block
from .randomness import inverse_cdf, uniforms


def run(policy, ids: list[list[int]], row_ids: list[int], key: int, *, max_new_tokens: int, temperature: float,
        stop: tuple[str, ...], stop_ids: set[int], batch_size: int, hook=None) -> Rows:
    n = len(ids)
    tokens = torch.zeros(n, max_new_tokens, dtype=torch.long)
    count = torch.zeros(n, dtype=torch.long)
    finished = torch.zeros(n, dtype=torch.bool)
    forced = torch.zeros(n, max_new_tokens, dtype=torch.bool)
    tools = ToolInserts(hook, policy.tokenizer, vocab_size(policy), "cpu", forced) if hook is not None else None
    prefix = policy.prefix_embeds()
    prefix_kv = prefix_cache(policy, prefix)  # all prefix tokens but the last (trice.layout)
    order = sorted(range(n), key=lambda i: -len(ids[i]))  # little padding per batch
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        out = _batch(policy, [ids[i] for i in rows], [row_ids[i] for i in rows], key, prefix, prefix_kv,
                     max_new_tokens, temperature, stop, stop_ids, tools, rows)
        for i, (toks, done) in zip(rows, out):
            tokens[i, :len(toks)] = torch.tensor(toks, dtype=torch.long)
            count[i], finished[i] = len(toks), done
    return Rows(tokens, count, finished, forced)


def _batch(policy, ids, row_ids, key, prefix, prefix_kv, max_new_tokens, temperature, stop, stop_ids, tools=None,
           call_rows=None):
    tok, device = policy.tokenizer, policy.device
    n = len(ids)
    embeds, real, pos = row_block(policy, ids, prefix)
    mask = attention_mask(real, prefix)
    if prefix_kv is None:
        cache = DynamicCache(config=policy.base_model.config)
    else:  # the shared prefix, repeated over the batch
        cache = copy.deepcopy(prefix_kv)
        cache.batch_repeat_interleave(n)

    stop_tensor = torch.tensor(sorted(stop_ids), device=device)
    tail = max([len(s) for s in stop] + [0]) + 1  # trailing tokens enough to contain any stop string
    generated = [[] for _ in range(n)]
    finished = [False] * n
    active = list(range(n))  # original row of each row still in the batch
    rows = torch.tensor(row_ids, dtype=torch.long)  # each live row's id in the call, for its randomness
    for t in range(max_new_tokens):
        stopping.check()  # a SIGINT/SIGTERM ends a long sampling phase between decode steps
        out = policy.forward(embeds, mask, position_ids=pos, past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        if temperature == 0:
            next_ids = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            next_ids = inverse_cdf(probs, uniforms(key, rows, t).to(probs.device))
        if tools is not None:  # pending tool tokens replace the draws (trice.engine.ToolInserts)
            next_cpu = next_ids.cpu()
            replaced = tools.substitute([call_rows[r] for r in active], [t] * len(active), next_cpu)
            next_ids = next_cpu.to(next_ids.device)
        done = torch.isin(next_ids, stop_tensor).tolist()
        for r, token in zip(active, next_ids.tolist()):
            generated[r].append(token)
        live = [k for k, d in enumerate(done) if not d]
        if stop and live:
            tails = tok.batch_decode([generated[active[k]][-tail:] for k in live], skip_special_tokens=True)
            for k, text in zip(live, tails):
                done[k] = any(s and s in text for s in stop)
        if tools is not None:
            ending = torch.tensor(done, dtype=torch.bool) | (t + 1 >= max_new_tokens)
            tools.after([call_rows[r] for r in active], next_cpu, ending | replaced, lambda k: generated[active[k]])
            tools.retire([call_rows[active[k]] for k in ending.nonzero().flatten().tolist()])
        for k, d in enumerate(done):
            finished[active[k]] |= d
        if all(done):
            break
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        pos = pos[:, -1:] + 1
        if any(done):
            keep = [k for k, d in enumerate(done) if not d]
            idx = torch.tensor(keep, device=device)
            cache.batch_select_indices(idx)
            mask, pos, next_ids, rows = mask[idx], pos[idx], next_ids[idx], rows[keep]
            active = [active[k] for k in keep]
        embeds = policy.embed(next_ids[:, None])
    return list(zip(generated, finished))
