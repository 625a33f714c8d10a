"""Log-probabilities of continuations under a :class:`~trice.modeling.Policy`, differentiable.

Tokenization contract (shared with the sampler): prompt and continuation are tokenized separately with
``add_special_tokens=False`` and the ids concatenated, so a continuation's tokens are exactly
``tokenizer(continuation, add_special_tokens=False).input_ids``.

Layout of a batch row (:mod:`trice.modeling.layout`, shared with the sampler): ``[cached prefix | left pads |
last prefix token | prompt | continuation]``; the LM head runs only on the columns that predict a
continuation token, in chunks (:func:`chunked_logprobs`).
"""

from __future__ import annotations

import torch
import torch.utils.checkpoint

from ..errors import TriceError
from ..tools import CLOSE, OPEN, segments
from .layout import attention_mask, prefix_cache, row_block


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False).input_ids if t else [] for t in texts]


def _encode_marked(tokenizer, texts: list[str]) -> tuple[list[list[int]], list[list[bool] | None]]:
    """Token ids of continuations that may hold tool-inserted spans (:mod:`trice.tools`), and for each
    one which tokens the model chose (None: all of them). Each span, and each piece of the model's text
    between them, is tokenized alone, as the sampler produced them."""
    ids, chosen = [], []
    for text in texts:
        if OPEN not in text and CLOSE not in text:
            ids.append(tokenizer(text, add_special_tokens=False).input_ids if text else [])
            chosen.append(None)
            continue
        row, flags = [], []
        for piece, inserted in segments(text):
            piece_ids = tokenizer(piece, add_special_tokens=False).input_ids
            row += piece_ids
            flags += [not inserted] * len(piece_ids)
        ids.append(row)
        chosen.append(flags)
    return ids, chosen


def _batch_logprobs(policy, prompt_ids, cont_ids, chosen=None):
    """``([B, Lc] log-probs, [B, Lc] bool mask)`` for one batch; ``chosen[i]`` (None: every token) says
    which of row i's continuation tokens the model chose: the others (a tool's) are context only, with
    log-prob 0 and no gradient, and out of the mask."""
    device = policy.device
    # A sharded model (--fsdp) gathers its embedding and LM head only inside its own forward: token ids go in,
    # and the logits come out of that forward (the chunked head below would bypass it).
    sharded = getattr(policy, "sharded", False)
    prefix = policy.prefix_ids.to(device) if sharded else policy.prefix_embeds()
    if sharded and prefix.shape[0]:
        # and no prefix cache: FSDP2 cannot backpropagate twice through a unit per step (the prefix's forward
        # and the rows'), so each row carries the whole prefix (more compute, the same log-probs)
        prompt_ids = [prefix.tolist() + list(p) for p in prompt_ids]
        prefix = prefix[:0]
    n, num_prefix = len(prompt_ids), prefix.shape[0]
    lc = max(len(x) for x in cont_ids)
    if lc == 0:
        return prefix.new_zeros(n, 0).float(), torch.zeros(n, 0, dtype=torch.bool, device=device)
    if any(num_prefix + len(p) == 0 < len(c) for p, c in zip(prompt_ids, cont_ids)):
        raise TriceError("cannot score a continuation with an empty prompt and no prefix")
    # Each row's block is [last prefix token, prompt, continuation], right-aligned (trice.modeling.layout); the
    # shared prefix runs once, at batch 1 and with gradient, and its KV cache is repeated over the
    # batch, so gradients flow back through the cache into the soft prompt or the LoRA weights.
    embeds, real, positions = row_block(policy, [p + c for p, c in zip(prompt_ids, cont_ids)], prefix)
    width = embeds.shape[1]
    cache = prefix_cache(policy, prefix)
    if cache is not None:
        cache.batch_repeat_interleave(n)
    mask = attention_mask(real, prefix)
    lengths = torch.tensor([len(c) for c in cont_ids], device=device)
    cont_mask = torch.arange(lc, device=device)[None, :] < lengths[:, None]  # [n, lc], left-aligned
    # The hidden state at column t predicts the token at t + 1: the columns before each continuation
    # token are the row's last len(c) columns but one.
    keep = torch.arange(width - lc - 1, width - 1, device=device)
    kept = torch.arange(lc, device=device)[None, :] >= (lc - lengths)[:, None]  # [n, lc], right-aligned
    ids = [torch.tensor(c, dtype=torch.long) for c in cont_ids if c]
    targets = torch.cat(ids).to(device) if ids else torch.zeros(0, dtype=torch.long, device=device)
    model_dtype = policy.base_model.get_input_embeddings().weight.dtype
    acc = torch.promote_types(model_dtype, torch.float32)  # log-probs in float32, or float64 for a float64 model
    logprobs = torch.zeros(n, lc, dtype=acc, device=device)
    head = policy.base_model.get_output_embeddings()
    if sharded or head is None or not _plain_head(policy.base_model.config):  # the model's own logits
        logits = policy.forward(embeds, mask, position_ids=positions, past_key_values=cache,
                                use_cache=cache is not None, logits_to_keep=keep).logits
        if logits.shape[1] != lc:  # the model ignored logits_to_keep
            logits = logits[:, keep]
        flat = -torch.nn.functional.cross_entropy(logits[kept].to(acc), targets, reduction="none")
    else:
        # The transformer's last hidden states, then the LM head over chunks of the real continuation
        # tokens: the [rows, length, vocab] logits never exist whole.
        hidden = policy.hidden_states(embeds, mask, position_ids=positions, past_key_values=cache,
                                      use_cache=cache is not None)[:, keep]
        flat = chunked_logprobs(head, hidden[kept], targets)
    if chosen is not None and any(c is not None for c in chosen):
        model_tokens = torch.tensor([f for c, ids in zip(chosen, cont_ids) for f in (c or [True] * len(ids))],
                                    dtype=torch.bool, device=device)
        flat = torch.where(model_tokens, flat, torch.zeros_like(flat))  # no gradient through a tool's tokens
        logprobs = logprobs.masked_scatter(cont_mask, flat.to(acc))
        return logprobs, cont_mask.masked_scatter(cont_mask, model_tokens)
    logprobs = logprobs.masked_scatter(cont_mask, flat.to(acc))
    return logprobs, cont_mask


def _plain_head(config) -> bool:
    """True when the model's logits are just ``lm_head(hidden)`` (no soft-capping or scaling)."""
    for name in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        value = getattr(config, name, None)
        if value is not None and value != 1:
            return False
    return True


def _chunk_logprobs(head, hidden, targets):
    logits = head(hidden)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 at least
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


FROZEN_HEAD = True  # False: checkpoint a frozen head's chunks too (the benchmarks' and tests' comparison)
# Float32 logits per chunk, by device: a CPU's chunk fits its caches (64 MB); a GPU's is large, because its small
# chunks were launch-bound (the log-softmax was 16% of an H100's scoring time in [chunk, 151,936] pieces,
# benchmarks/PROFILE.md); the GPU size is not yet measured against others.
CHUNK_BYTES = {"cpu": 2 ** 26, "cuda": 2 ** 30}


def chunk_rows(vocab: int, device: torch.device | str = "cpu") -> int:
    """Rows of logits computed at once by :func:`chunked_logprobs` for a ``vocab``-wide head on ``device``.

    >>> chunk_rows(49152), chunk_rows(49152, "cuda")
    (341, 5461)
    """
    return max(16, CHUNK_BYTES.get(torch.device(device).type, CHUNK_BYTES["cpu"]) // (4 * vocab))


def chunked_logprobs(head, hidden: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``log softmax(head(hidden))[targets]`` for ``[T, d]`` hidden states, ``chunk`` rows at a time, so that
    at most one chunk's ``[chunk, vocab]`` logits are alive at once, forward or backward. A frozen head (soft
    prompt, LoRA) computes each chunk's gradient with respect to the hidden states in the forward pass
    (:class:`_FrozenHeadLogprobs`: nothing is recomputed); a trained head recomputes each chunk in the backward
    pass (activation checkpointing). Written by hand: the fused linear cross-entropy kernels (Liger, Apple's
    cut-cross-entropy) are GPU-only Triton."""
    vocab = head.weight.shape[0]
    chunk = chunk or chunk_rows(vocab, hidden.device)
    trained_head = any(p.requires_grad for p in head.parameters())
    if FROZEN_HEAD and torch.is_grad_enabled() and hidden.requires_grad and not trained_head \
            and type(head) is torch.nn.Linear:
        return _FrozenHeadLogprobs.apply(hidden, head.weight, head.bias, targets, chunk)
    parts = []
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s:s + chunk], targets[s:s + chunk]
        if torch.is_grad_enabled() and (h.requires_grad or trained_head):
            parts.append(torch.utils.checkpoint.checkpoint(_chunk_logprobs, head, h, y, use_reentrant=False))
        else:
            parts.append(_chunk_logprobs(head, h, y))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


class _FrozenHeadLogprobs(torch.autograd.Function):
    """``log softmax(h W^T + b)[y]`` per row, for a head that is not trained. Its gradient with respect to
    ``h`` is ``(onehot(y) - softmax(h W^T + b)) W``, a ``[T, d]`` tensor: computed chunk by chunk in the forward
    pass, while the chunk's logits are at hand, the backward is one scaling by the incoming gradient. Against
    checkpointing the chunks, this saves recomputing the head's logits (``2 * d * vocab`` FLOPs a token; ~10% of
    a LoRA scoring step of SmolLM2-135M), for one saved ``[T, d]`` tensor, as checkpointing saves the chunks'
    inputs; tests/test_scoring_head.py compares it with autograd through the plain head."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        out, unit = [], []
        for s in range(0, hidden.shape[0], chunk):
            logits = torch.nn.functional.linear(hidden[s:s + chunk], weight, bias)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 at least
            y = targets[s:s + chunk, None]
            logprobs = logits.log_softmax(-1)
            out.append(logprobs.gather(-1, y).squeeze(-1))
            minus = logprobs.exp_().neg_().scatter_add_(-1, y, torch.ones_like(y, dtype=logits.dtype))  # onehot - p
            unit.append(minus.to(weight.dtype) @ weight)
        ctx.save_for_backward(torch.cat(unit) if unit else hidden.new_zeros(hidden.shape))
        return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad):
        (unit,) = ctx.saved_tensors
        return grad[:, None].to(unit.dtype) * unit, None, None, None, None


def _batches(policy, prompts, continuations, batch_size):
    if len(prompts) != len(continuations):
        raise TriceError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
    tok = policy.tokenizer
    prompt_ids, (cont_ids, chosen) = _encode(tok, prompts), _encode_marked(tok, continuations)
    size = batch_size or max(len(prompts), 1)
    for start in range(0, len(prompts), size):
        rows = slice(start, start + size)
        yield _batch_logprobs(policy, prompt_ids[rows], cont_ids[rows], chosen[rows])


def score(policy, prompts: list[str], continuations: list[str], *, batch_size: int | None = None) -> torch.Tensor:
    """``[B]`` tensor of log p(continuation | prefix + prompt), summed over the continuation tokens the model
    chose (a tool's marked spans, :mod:`trice.tools`, are context only).

    Differentiable w.r.t. ``policy.trainable_parameters()``; an empty continuation scores 0.

    >>> from trice.modeling import Policy, load_model  # doctest: +SKIP
    >>> policy = Policy.create(*load_model(), params="prompt", prefix_text="Answer carefully.")  # doctest: +SKIP
    >>> logp = score(policy, ["Question: 1+1?\\nAnswer:"], [" 1+1=2. The answer is 2."])  # doctest: +SKIP
    >>> (-logp.mean()).backward()  # gradients land on the soft prompt  # doctest: +SKIP
    """
    parts = [lp.sum(-1) for lp, _ in _batches(policy, prompts, continuations, batch_size)]
    if not parts:
        return torch.zeros(0, device=policy.device)
    return torch.cat(parts)


def weighted_backward(policy, prompts: list[str], continuations: list[str], coefs: torch.Tensor, *,
                      batch_size: int | None = None, chunks: int | None = None) -> tuple[torch.Tensor, int]:
    """Backpropagate ``loss = -sum(coefs * log p(continuation | prefix + prompt))``; returns the loss
    (detached) and the number of tokens scored (prompt + continuation, the shared prefix not counted).

    The rows go through forward and backward ``batch_size`` at a time and their gradients accumulate, so
    the gradient is the one-pass gradient (up to float rounding) while only one batch's activations are
    alive at once: scoring 64 rows of a 0.5B model in one pass took over 75 GiB on an H100. ``chunks``: run
    this many passes even if there are fewer batches (or no row), the others on a one-token row with weight 0:
    with sharded weights every process must run as many forwards and backwards (trice.runtime.sharding).

    >>> loss, tokens = weighted_backward(policy, prompts, texts, torch.tensor([0.5, -0.5]), batch_size=16)  # doctest: +SKIP
    """
    if len(coefs) != len(prompts):
        raise TriceError(f"got {len(prompts)} prompts but {len(coefs)} coefficients")
    size = batch_size or max(len(prompts), 1)
    loss = torch.zeros((), device=policy.device)
    starts = list(range(0, len(prompts), size))
    for start in starts:
        rows = slice(start, start + size)
        log_probs = score(policy, prompts[rows], continuations[rows])
        part = -(coefs[rows].to(log_probs) * log_probs).sum()
        part.backward()
        loss += part.detach()
    for _ in range((chunks or 0) - len(starts)):  # zero-weight passes, so that every process runs as many
        (0.0 * score(policy, [" "], [" "]).sum()).backward()
    return loss, count_tokens(policy.tokenizer, prompts, continuations)


def continuation_lengths(tokenizer, continuations: list[str]) -> list[int]:
    """The tokens of each continuation that the model chose and the scorer scores (a tool's marked spans are
    context, not counted): GRPO's |o_i|."""
    ids, chosen = _encode_marked(tokenizer, continuations)
    return [len(x) if c is None else sum(c) for x, c in zip(ids, chosen)]


def count_tokens(tokenizer, prompts: list[str], continuations: list[str]) -> int:
    """Tokens of the rows as the scorer runs them: each prompt's and each continuation's (a tool's marked
    spans tokenized alone, as sampled); the shared prefix is not counted (trice.training.budget)."""
    return sum(len(p) + len(c) for p, c in zip(_encode(tokenizer, prompts), _encode_marked(tokenizer, continuations)[0]))


def token_logprobs(policy, prompts: list[str], continuations: list[str], *,
                   batch_size: int | None = None) -> list[torch.Tensor]:
    """Per-token log-probs of each continuation (a 1-D tensor per example, length = its token count)."""
    out = []
    for lp, mask in _batches(policy, prompts, continuations, batch_size):
        out += [row[m] for row, m in zip(lp, mask)]
    return out
