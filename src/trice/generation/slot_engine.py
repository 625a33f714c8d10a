"""The torch sampling engine: a pre-allocated KV cache whose rows are refilled as they finish.

``B`` slots share one KV cache of ``L`` columns, allocated once. The shared prefix (all its tokens but
the last) is computed once at batch 1 and kept once, not per slot: every query attends to it through
one matmul over all the slots' queries (compute-bound), and only the slots' own columns are read per
slot (memory-bound), as in cascade/shared-prefix attention. Every decode step writes each slot's
new key/value at the same column ``c`` and advances ``c``; a slot's own tokens may sit at any columns, because what a token attends to is decided by a per-slot mask of
valid columns and where it is in the sequence by its explicit position id (rotary embeddings are
applied before caching). So:

- a finished slot is refilled with the next waiting prompt: its prompt (with the last prefix token in
  front) is run for the refilled slots alone and written just below ``c``, over the finished row's
  columns, and the slot's mask is reset to those columns; the decode batch stays full (continuous
  batching);
- when ``c`` reaches ``L`` the valid columns of every slot are packed to the left (rare: every
  ``max_new_tokens`` steps or so); when no prompt is waiting and half the slots are done, the
  batch shrinks to the live slots;
- per step the Python work does not depend on the number of rows: tokens go into a preallocated
  tensor, EOS is a tensor test, and a stop string is looked for only in rows whose new token can end
  one (a per-vocabulary table), which is rare.

Attention goes through a small function registered with transformers' ``AttentionInterface`` that
groups query heads by key/value head instead of repeating the cache (transformers' SDPA path copies
the whole cache per layer and step under grouped-query attention with a mask, as here).

Written by hand because transformers' StaticCache writes every row at the same positions and has no
refill, and its continuous-batching generator (``generate_batch``, paged attention) takes token ids
only: it cannot start from a soft prompt's embeddings, take per-row counter-based randomness (a
row's sample must not depend on its batch, its slot or its refill time) or insert tool results
mid-sequence. Models this engine does not cover (sliding-window or soft-capped attention, attention
sinks) use the plain path in :mod:`trice.generation.plain_engine`. Each new token is drawn, checked
and recorded by :class:`~trice.generation.rows.RowWriter`, as the plain path does.

``engine="compiled"`` runs the decode step with fixed shapes through ``torch.compile``
(:mod:`trice.generation.compiled_decode`); the refills stay eager.
"""

from __future__ import annotations

import torch

from ..modeling.layout import cached_prefix_length, row_block
from ..runtime import interrupts
from . import compiled_decode
from .rows import Rows, RowWriter

ATTENTION = "trice_slots"


# ------------------------------------------------------------------------------------------ attention
def slot_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention with an additive ``[B, 1, q, L]`` mask over the slots' own columns, plus the shared
    prefix of the active :class:`SlotCache` (unmasked, once for all slots). Query heads are grouped by
    their key/value head (head h uses key/value head h // groups, as transformers' ``repeat_kv``), so
    no cache is copied. Returns ``([B, q, H, D], None)`` as transformers' attention functions do."""
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scaling = dim ** -0.5 if scaling is None else scaling
    grouped = query.reshape(batch, kv_heads, groups * q_len, dim)
    scores = torch.matmul(grouped, key.transpose(-1, -2)).view(batch, kv_heads, groups, q_len, -1)
    scores = scores.float() * scaling + attention_mask[:, :, None]
    prefix = _ACTIVE[0].prefix(module.layer_idx) if _ACTIVE else None
    if prefix is None:
        probs = scores.softmax(-1).to(value.dtype).view(batch, kv_heads, groups * q_len, -1)
        out = torch.matmul(probs, value)
    else:  # the shared prefix: one [kv_heads, B * groups * q, D] x [kv_heads, D, P] matmul for all slots
        p_keys, p_values = prefix  # [kv_heads, P, D]
        stacked = grouped.transpose(0, 1).reshape(kv_heads, batch * groups * q_len, dim)
        p_scores = torch.matmul(stacked, p_keys.transpose(-1, -2)).float() * scaling
        p_scores = p_scores.view(kv_heads, batch, groups, q_len, -1).transpose(0, 1)
        probs = torch.cat([p_scores, scores], dim=-1).softmax(-1).to(value.dtype)
        num_prefix = p_keys.shape[1]
        own = probs[..., num_prefix:].reshape(batch, kv_heads, groups * q_len, -1)
        shared = probs[..., :num_prefix].transpose(0, 1).reshape(kv_heads, batch * groups * q_len, num_prefix)
        out = torch.matmul(own, value) + torch.matmul(shared, p_values).view(
            kv_heads, batch, groups * q_len, dim).transpose(0, 1)
    out = out.reshape(batch, heads, q_len, dim)
    return out.transpose(1, 2).contiguous(), None


_ACTIVE: list = []  # the SlotCache whose forward is running (its shared prefix is read by slot_attention)


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, slot_attention)


def supports(model) -> bool:
    """Whether this engine computes exactly what the model computes: plain full causal attention."""
    config = model.config
    if getattr(config, "attn_logit_softcapping", None) or getattr(config, "use_sliding_window", False):
        return False
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return False
    if getattr(config, "sliding_window", None) and not layer_types and getattr(config, "model_type", "") in (
            "mistral", "mixtral", "gemma2", "gemma3", "gemma3_text", "cohere2", "gpt_oss"):
        return False
    return config.model_type not in ("gpt_oss",)  # attention sinks


class _UseSlotAttention:
    def __init__(self, model):
        self.config = model.config

    def __enter__(self):
        _register_attention()
        self.previous = self.config._attn_implementation
        self.config._attn_implementation = ATTENTION

    def __exit__(self, *exc):
        self.config._attn_implementation = self.previous
        _ACTIVE.clear()
        return False


# ---------------------------------------------------------------------------------------------- cache
class SlotCache:
    """Per-layer ``[B, kv_heads, L, D]`` key/value buffers, allocated at the first write.

    A forward writes its ``w`` new columns at ``[start, start + w)`` of the slots ``rows`` (all slots
    if None) and attends to columns ``[0, upto)``. Duck-typed to what transformers' attention layers
    call (``update``, ``get_seq_length``)."""

    is_compileable = False

    def __init__(self, batch: int, length: int):
        self.batch, self.length = batch, length
        self.keys: list[torch.Tensor | None] = []
        self.values: list[torch.Tensor | None] = []
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer, [kv_heads, P, D] each
        self.rows: torch.Tensor | None = None
        self.start, self.upto = 0, length
        self.column: torch.Tensor | None = None  # static decode (compiled_decode): write here, return all L columns

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        while len(self.keys) <= layer_idx:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer_idx] is None:
            shape = (self.batch, key_states.shape[1], self.length, key_states.shape[-1])
            self.keys[layer_idx] = key_states.new_zeros(shape)
            self.values[layer_idx] = value_states.new_zeros(shape[:3] + (value_states.shape[-1],))
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self.column is not None:  # the static step: one column of every slot, the whole buffers back
            keys.index_copy_(2, self.column, key_states)
            values.index_copy_(2, self.column, value_states)
            return keys, values
        end = self.start + key_states.shape[2]
        if self.rows is None:
            keys[:, :, self.start:end] = key_states
            values[:, :, self.start:end] = value_states
            return keys[:, :, :self.upto], values[:, :, :self.upto]
        keys[self.rows, :, self.start:end] = key_states
        values[self.rows, :, self.start:end] = value_states
        return keys[self.rows, :, :self.upto], values[self.rows, :, :self.upto]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.column is not None else self.start  # (a constant in the static step: no recompile)

    def prefix(self, layer_idx: int):
        return self.prefix_kv[layer_idx] if self.prefix_kv else None

    def select(self, slots: torch.Tensor) -> None:
        """Keep only ``slots`` (shrink the batch)."""
        self.keys = [k[slots] for k in self.keys]
        self.values = [v[slots] for v in self.values]
        self.batch = len(slots)

    def gather_columns(self, index: torch.Tensor) -> None:
        """Column ``j`` of slot b becomes its column ``index[b, j]`` (packing)."""
        width = index.shape[1]
        for buffers in (self.keys, self.values):
            for t in buffers:
                idx = index[:, None, :, None].expand(t.shape[0], t.shape[1], width, t.shape[3])
                t[:, :, :width] = t.gather(2, idx)


# ---------------------------------------------------------------------------------------------- engine
def run(policy, ids: list[list[int]], row_ids: list[int], key: int, *, max_new_tokens: int, temperature: float,
        stop: tuple[str, ...], stop_ids: set[int], batch_size: int, hook=None, compiled: bool = False) -> Rows:
    """Generate for every prompt (token ids, without the prefix) with continuous batching; ``hook``
    inserts tool results (:mod:`trice.generation.tool_inserts`); ``compiled``: the decode step with fixed
    shapes through ``torch.compile`` (:mod:`trice.generation.compiled_decode`)."""
    rows = Rows.empty(len(ids), max_new_tokens)
    if not ids or max_new_tokens == 0:
        return rows
    writer = RowWriter(policy, rows, row_ids, key, temperature=temperature, stop=stop, stop_ids=stop_ids, hook=hook)
    with _UseSlotAttention(policy.base_model):
        _Engine(policy, ids, batch_size, max_new_tokens, writer, compiled).loop()
    return rows


class _Engine:
    def __init__(self, policy, ids, batch_size, max_new_tokens, writer: RowWriter, compiled: bool = False):
        self.policy, self.ids, self.writer, self.max_new = policy, ids, writer, max_new_tokens
        self.compiled = compiled
        self.device = device = policy.device
        prefix = policy.prefix_embeds()  # (sampler._sample_rows refused an empty prompt without a prefix)
        self.prefix = prefix
        self.p0 = cached_prefix_length(prefix)  # prefix tokens cached once, shared by every slot
        self.lead = prefix.shape[0] - self.p0  # the last prefix token, fed with each prompt (0 or 1)
        self.width = max(len(x) for x in ids) + self.lead  # widest prompt input
        self.batch = min(batch_size, len(ids))
        length = self.width + 2 * max_new_tokens + 8  # the slots' own columns
        if compiled:
            length = compiled_decode.static_length(length)
        self.cache = SlotCache(self.batch, length)
        self.length = length
        self.valid = torch.zeros(self.batch, length, dtype=torch.bool, device=device)
        if self.p0:  # the shared prefix, once, at batch 1
            one = SlotCache(1, self.p0)
            ones = torch.ones(1, self.p0, dtype=torch.long, device=device)
            causal = torch.ones(self.p0, self.p0, dtype=torch.bool, device=device).triu(1)
            mask = torch.zeros(1, 1, self.p0, self.p0, device=device, dtype=prefix.dtype)
            mask.masked_fill_(causal, torch.finfo(prefix.dtype).min)
            policy.forward(prefix[None, :-1], mask, position_ids=ones.cumsum(-1) - 1, past_key_values=one,
                           use_cache=True, logits_to_keep=1)
            self.cache.prefix_kv = [(k[0], v[0]) for k, v in zip(one.keys, one.values)]
        _ACTIVE[:] = [self.cache]
        self.dtype = policy.base_model.get_input_embeddings().weight.dtype
        # slot state
        b = self.batch
        self.slot_row = torch.full((b,), -1, dtype=torch.long, device=device)  # prompt index, -1: free
        self.slot_pos = torch.zeros(b, dtype=torch.long, device=device)  # next position id
        self.slot_t = torch.zeros(b, dtype=torch.long, device=device)  # tokens generated
        self.last = torch.zeros(b, dtype=torch.long, device=device)  # last token of each slot
        self.queue = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # long prompts first
        self.column = self.width  # the next decode step writes this column of every slot

    # ------------------------------------------------------------------------------------ main loop
    def loop(self):
        self.refill(torch.arange(self.batch, device=self.device))
        while True:
            live = self.slot_row >= 0
            if not bool(live.any()):
                if not self.queue:
                    return
                self.refill(torch.arange(self.batch, device=self.device))
                continue
            free = (~live).nonzero().flatten()
            if self.queue and len(free) and (len(free) >= max(1, self.batch // 8) or len(free) == self.batch):
                self.refill(free)
                continue
            if not self.queue and int(live.sum()) <= self.batch // 2 and self.batch > 4 and not self.compiled:
                self.shrink(live.nonzero().flatten())
            interrupts.check()  # a SIGINT/SIGTERM ends a long sampling phase here, between decode steps
            self.decode()

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        """An additive attention mask: 0 where ``allowed``, the dtype's lowest value elsewhere."""
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        neg = torch.tensor(torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        return torch.where(allowed, zero, neg)

    def refill(self, slots: torch.Tensor) -> None:
        """Start the next waiting prompts in ``slots``: one forward over their prompts alone."""
        slots = slots[:len(self.queue)]
        if len(slots) == 0:
            return
        rows, self.queue = self.queue[:len(slots)], self.queue[len(slots):]
        inputs = [self.ids[i] for i in rows]
        w = max(len(x) for x in inputs) + self.lead
        c, device = self.column, self.device
        embeds, own, positions = row_block(self.policy, inputs, self.prefix, width=w)
        self.valid[slots] = False
        self.valid[slots, c - w:c] = own
        # mask [r, 1, w, c]: the slot's valid columns before the block, and causal within it; every
        # query may see itself (pads too, so that no row of scores is all -inf)
        cols = torch.arange(c, device=device)
        block = cols[None, :] - (c - w)
        causal = (block < 0) | (block <= torch.arange(w, device=device)[:, None])
        allowed = (self.valid[slots, None, :c] & causal[None]) | (block[None] == torch.arange(w, device=device)[None, :, None])
        mask = self._additive(allowed)[:, None]
        self.cache.rows, self.cache.start, self.cache.upto = slots, c - w, c
        out = self.policy.forward(embeds, mask, position_ids=positions, past_key_values=self.cache, use_cache=True,
                                  logits_to_keep=1)
        self.cache.rows = None
        row_t = torch.tensor(rows, dtype=torch.long, device=device)
        self.slot_row[slots] = row_t
        self.slot_pos[slots] = positions[:, -1] + 1
        self.slot_t[slots] = 0
        self.emit(slots, out.logits[:, -1, :])

    def decode(self) -> None:
        """One step for every slot: the last tokens in, one new token per slot out."""
        if self.column >= self.length:
            self.pack()
        c = self.column
        # Free slots see only their own new column (their output is unused; no row of scores may be all
        # -inf), and forget it after the step, so their stale columns never count when packing.
        self.valid[:, c] = True
        if self.compiled:  # every column attended to (the unwritten ones masked), written at a tensor index
            self.cache.rows, self.cache.column = None, torch.full((1,), c, dtype=torch.long, device=self.device)
            logits = compiled_decode.decode_logits(self.policy, self.cache, self.last,
                                                   self._additive(self.valid)[:, None, None, :], self.slot_pos)
            self.cache.column = None
        else:
            self.cache.rows, self.cache.start, self.cache.upto = None, c, c + 1
            embeds = self.policy.embed(self.last[:, None])
            logits = self.policy.forward(embeds, self._additive(self.valid[:, :c + 1])[:, None, None, :],
                                         position_ids=self.slot_pos[:, None],
                                         past_key_values=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        self.column = c + 1
        self.slot_pos += 1
        live_mask = self.slot_row >= 0
        self.valid[~live_mask, c] = False
        live = live_mask.nonzero().flatten()
        self.emit(live, logits[live])

    def emit(self, slots: torch.Tensor, logits: torch.Tensor) -> None:
        """Draw, check and record the next token of ``slots`` (:class:`RowWriter`); retire finished rows."""
        t = self.slot_t[slots]
        next_ids, done = self.writer.emit(self.slot_row[slots].cpu(), t.cpu(), logits)
        self.last[slots] = next_ids
        self.slot_t[slots] = t + 1
        if bool(done.any()):
            retired = slots[done.to(slots.device)]
            self.slot_row[retired] = -1
            self.valid[retired] = False  # a free slot holds no columns (packing ignores it)

    # ----------------------------------------------------------------------------------- housekeeping
    def pack(self) -> None:
        """Move every slot's valid columns to the left, in order."""
        c = self.column
        valid = self.valid[:, :c]
        width = max(int(valid.sum(-1).max()), self.width)
        index = torch.zeros(self.batch, width, dtype=torch.long, device=self.device)
        new_valid = torch.zeros(self.batch, self.length, dtype=torch.bool, device=self.device)
        for b in range(self.batch):
            cols = valid[b].nonzero().flatten()
            index[b, width - len(cols):] = cols  # the columns before them are unused and masked
            new_valid[b, width - len(cols):width] = True
        self.cache.gather_columns(index)
        self.valid = new_valid
        self.column = width

    def shrink(self, keep: torch.Tensor) -> None:
        """Keep only the slots ``keep`` (the queue is empty and most slots are done)."""
        self.cache.select(keep)
        self.valid, self.slot_row, self.slot_pos = self.valid[keep], self.slot_row[keep], self.slot_pos[keep]
        self.slot_t, self.last = self.slot_t[keep], self.last[keep]
        self.batch = len(keep)
