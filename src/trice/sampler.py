"""Batched sampling of continuations from a :class:`~trice.model.Policy`, with a KV cache.

Row i's input is ``policy.prefix_embeds()`` then the embeddings of ``tokenizer(prompts[i],
add_special_tokens=False)``. The prefix is run once (batch 1) and its KV cache copied across the batch.
Prompts of different lengths are left-padded *between* the prefix and the prompt; pads get attention
mask 0 and positions are ``cumsum(mask) - 1``, so every row sees exactly what it would see alone.

Randomness is per row: one key is drawn from ``generator`` per call, and the t-th token of the call's
row i is drawn by inverting its CDF at a uniform that is a hash of (key, i, t). So a row's sample does
not depend on the batch it is grouped in, on ``batch_size``, or on which process samples it
(:mod:`trice.distributed`), and the generator advances by the same amount whatever the prompts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .distributed import world
from .errors import TriceError

DEFAULT_STOP = ("\n\n", "\nQuestion:")


@dataclass
class Sample:
    """One continuation: ``text`` cut before the first stop string, ``num_tokens`` generated
    (including the EOS or the tokens that completed a stop string), ``finished`` False if it ran
    out of ``max_new_tokens`` without EOS or a stop string."""

    text: str
    num_tokens: int
    finished: bool
    token_ids: list[int] | None = None  # set by samplers that report them (vLLM)
    logprobs: list[float] | None = None  # log-prob of each sampled token, where the sampler reports it


def _stop_ids(policy) -> set[int]:
    # EOS ids from the tokenizer and the generation config, plus any special token: a continuation is
    # text, and a special token would be dropped from the decoded text anyway.
    tok = policy.tokenizer
    ids = set(tok.all_special_ids)
    for source in (tok.eos_token_id, getattr(getattr(policy.base_model, "generation_config", None),
                                             "eos_token_id", None)):
        if source is not None:
            ids.update(source if isinstance(source, (list, tuple)) else [source])
    return ids


def _cut(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one occurred."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def sample(policy, prompts: list[str], *, max_new_tokens: int = 64, temperature: float = 1.0,
           stop: tuple[str, ...] = DEFAULT_STOP, generator: torch.Generator | None = None,
           batch_size: int = 32) -> list["Sample"]:
    """Sample one continuation per prompt (temperature 0 = greedy).

    >>> import torch  # doctest: +SKIP
    >>> from trice.model import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model(), params="lora")  # doctest: +SKIP
    >>> out = sample(policy, ["Question: 2+3?\\nAnswer:"], temperature=0, max_new_tokens=16,
    ...              generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> isinstance(out[0].text, str)  # doctest: +SKIP
    True
    """
    if temperature < 0:
        raise TriceError(f"temperature must be >= 0, got {temperature}")
    if batch_size < 1 or max_new_tokens < 0:
        raise TriceError("batch_size must be >= 1 and max_new_tokens >= 0")
    key = int(torch.randint(0, 2 ** 62, (1,), generator=generator)) if temperature > 0 else 0
    if not prompts:
        return []
    if policy.params != "prompt" and len(policy._prefix_ids) == 0 and any(p == "" for p in prompts):
        raise TriceError("cannot sample from an empty prompt without a prefix")  # (on every rank alike)
    # Several processes: each samples its own rows; all of them get every row back.
    here = world()
    mine = here.rows(len(prompts))
    return here.gather_rows(len(prompts), _sample_rows(policy, [prompts[i] for i in mine], mine, key,
                                                       max_new_tokens, temperature, stop, batch_size))


def _sample_rows(policy, prompts, row_ids, key, max_new_tokens, temperature, stop, batch_size):
    if not prompts:
        return []
    tok = policy.tokenizer
    ids = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    results: list[Sample | None] = [None] * len(prompts)
    with torch.inference_mode():
        prefix = policy.prefix_embeds()
        if prefix.shape[0] == 0 and any(len(x) == 0 for x in ids):
            raise TriceError("cannot sample from an empty prompt without a prefix")
        # Cache all prefix tokens but the last; the last one is fed with each prompt so that every row
        # has at least one input token (empty prompts are fine with a prefix).
        prefix_cache = DynamicCache(config=policy.base_model.config)
        if prefix.shape[0] > 1:
            ones = torch.ones(1, prefix.shape[0] - 1, dtype=torch.long, device=prefix.device)
            policy.forward(prefix[None, :-1], ones, position_ids=ones.cumsum(-1) - 1,
                           past_key_values=prefix_cache, use_cache=True, logits_to_keep=1)
        # Longest prompts first so that each batch has little padding; results go back in order.
        order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = _sample_batch(policy, [ids[i] for i in rows], [row_ids[i] for i in rows], key, prefix,
                                  prefix_cache, max_new_tokens, temperature, stop)
            for i, s in zip(rows, batch):
                results[i] = s
    return results


def _sample_batch(policy, ids, row_ids, key, prefix, prefix_cache, max_new_tokens, temperature, stop):
    tok, device = policy.tokenizer, policy.device
    n, width, num_prefix = len(ids), max(len(x) for x in ids), prefix.shape[0]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros(n, num_prefix + width, dtype=torch.long)
    mask[:, :num_prefix] = 1
    for r, x in enumerate(ids):  # left-pad: every prompt ends at the last column
        if x:
            input_ids[r, width - len(x):] = torch.tensor(x)
            mask[r, num_prefix + width - len(x):] = 1
    mask = mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    first = max(num_prefix - 1, 0)  # columns before `first` are already in the prefix cache
    embeds = torch.cat([prefix[first:][None].expand(n, -1, -1), policy.embed(input_ids)], dim=1)
    pos = pos[:, first:]
    cache = copy.deepcopy(prefix_cache)  # the shared prefix, repeated over the batch
    cache.batch_repeat_interleave(n)

    stop_ids = torch.tensor(sorted(_stop_ids(policy)), device=device)
    stop_set = set(stop_ids.tolist())
    # Enough trailing tokens to contain any stop string: every non-special token decodes to >= 1 character.
    tail = max([len(s) for s in stop] + [0]) + 1
    generated = [[] for _ in range(n)]
    finished = [False] * n
    active = list(range(n))  # original row of each row still in the batch
    rows = torch.tensor(row_ids, dtype=torch.long)  # each live row's id in the call, for its randomness
    for t in range(max_new_tokens):
        out = policy.forward(embeds, mask, position_ids=pos, past_key_values=cache, use_cache=True,
                             logits_to_keep=1)
        logits = out.logits[:, -1, :].float()
        if temperature == 0:
            next_ids = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            next_ids = inverse_cdf(probs, uniforms(key, rows, t).to(probs.device))
        done = torch.isin(next_ids, stop_ids).tolist()
        for r, t in zip(active, next_ids.tolist()):
            generated[r].append(t)
        # Stop strings: decode only the last few tokens of each row still going.
        live = [k for k, d in enumerate(done) if not d]
        if stop and live:
            tails = tok.batch_decode([generated[active[k]][-tail:] for k in live], skip_special_tokens=True)
            for k, text in zip(live, tails):
                done[k] = any(s and s in text for s in stop)
        for k, d in enumerate(done):
            finished[active[k]] |= d
        if all(done):
            break
        # Next step: the new tokens, one more attended column, positions one further; drop finished rows.
        mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
        pos = pos[:, -1:] + 1
        if any(done):
            keep = [k for k, d in enumerate(done) if not d]
            idx = torch.tensor(keep, device=device)
            cache.batch_select_indices(idx)
            mask, pos, next_ids, rows = mask[idx], pos[idx], next_ids[idx], rows[keep]
            active = [active[k] for k in keep]
        embeds = policy.embed(next_ids[:, None])

    samples = []
    for r in range(n):
        toks = generated[r]
        text = tok.decode(toks[:-1] if toks and toks[-1] in stop_set else toks, skip_special_tokens=True)
        text, hit = _cut(text, stop)
        samples.append(Sample(text, len(toks), finished[r] or hit))
    return samples


# --- counter-based randomness ------------------------------------------------------------------
# Written by hand: torch's generators are streams, so a row's draws would depend on the other rows of
# its batch. A stateless hash of (key, row, step) gives every row its own reproducible uniforms in one
# vectorised call. All arithmetic stays below 2**63 in int64 (32-bit words, 16-bit multiplier halves).
_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (lowbias32: full avalanche), on int64 tensors holding 32-bit words."""
    x = x & _MASK32
    x = _mul32(x ^ (x >> 16), 0x7FEB352D)
    x = _mul32(x ^ (x >> 15), 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(key: int, rows: torch.Tensor, step: int) -> torch.Tensor:
    """float64 uniforms in [0, 1) with 53 random bits, one per row, a function of (key, row, step):
    two independent 32-bit lanes, each seeded from both halves of the key."""
    k_lo, k_hi = torch.tensor([key & _MASK32]), torch.tensor([(key >> 32) & _MASK32])
    t = torch.tensor([step])
    lanes = []
    for salt in (0x68E31DA4, 0x1B56C4E9):
        seed = _hash32(k_lo ^ _hash32(k_hi ^ salt))
        lanes.append(_hash32(_hash32(seed ^ rows) ^ _hash32(t ^ salt)))
    hi, lo = lanes
    return ((hi >> 11).double() * 2.0 ** 32 + lo.double()) / 2.0 ** 53


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Row-wise draws from ``probs`` [n, V] at uniforms ``u`` [n]: the first index whose cumulative
    probability exceeds u * total (float64, so zero-probability tokens are never drawn)."""
    cdf = probs.double().cumsum(-1)
    if not torch.isfinite(cdf[:, -1]).all():
        raise TriceError("the model produced non-finite probabilities while sampling (NaN/inf logits)")
    target = (u.double() * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)
