"""The rows a sampling call produces, and the one way each new token is drawn, checked and recorded.

Both engines (:mod:`.slot_engine`, :mod:`.plain_engine`) compute logits their own way, then hand them to
:meth:`RowWriter.emit`: the draw (:func:`.draw.next_tokens`), tool results replacing draws
(:mod:`.tool_inserts`), the stop check (:class:`.stops.StopCheck`), and the bookkeeping of ``tokens``,
``count``, ``finished`` and ``forced``. So a row's tokens are the same whichever engine runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tools import mark
from .draw import next_tokens
from .stops import StopCheck
from .tool_inserts import ToolInserts


def row_text(tokenizer, tokens: list[int], forced: list[bool] | None, stop_ids) -> str:
    """A row's text: its tokens decoded (a final stop token dropped), each run of a tool's tokens decoded alone and
    marked as the tool's (:func:`trice.tools.mark`), as the scorer tokenizes them back."""
    kept = len(tokens) - 1 if tokens and tokens[-1] in stop_ids else len(tokens)
    tokens, forced = tokens[:kept], (forced or [])[:kept]
    if not any(forced):
        return tokenizer.decode(tokens, skip_special_tokens=True)
    text, start = [], 0
    for end in range(1, len(tokens) + 1):
        if end == len(tokens) or forced[end] != forced[start]:
            piece = tokenizer.decode(tokens[start:end], skip_special_tokens=True)
            text.append(mark(piece) if forced[start] else piece)
            start = end
    return "".join(text)


@dataclass
class Rows:
    """What a sampling call returns for n prompts: ``tokens[i, :count[i]]`` and how each row ended."""

    tokens: torch.Tensor  # [n, max_new_tokens] long (CPU)
    count: torch.Tensor  # [n] long
    finished: torch.Tensor  # [n] bool: ended at a stop token or stop string
    forced: torch.Tensor  # [n, max_new_tokens] bool: inserted by a tool hook, not sampled

    @classmethod
    def empty(cls, n: int, max_new_tokens: int) -> "Rows":
        return cls(torch.zeros(n, max_new_tokens, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                   torch.zeros(n, dtype=torch.bool), torch.zeros(n, max_new_tokens, dtype=torch.bool))


def vocab_size(policy) -> int:
    """Rows of the LM head (the logits' width), else the tokenizer's size."""
    head = policy.base_model.get_output_embeddings()
    return head.weight.shape[0] if head is not None else len(policy.tokenizer)


class RowWriter:
    """Draws, checks and records the next token of given rows of a call (``rows`` is each row's index in
    the call's prompts; ``row_ids`` its index for the randomness, which does not depend on the process)."""

    def __init__(self, policy, out: Rows, row_ids: list[int], key: int, *, temperature: float, stop: tuple[str, ...],
                 stop_ids: set[int], hook=None):
        self.out, self.key, self.temperature = out, key, temperature
        self.row_ids = torch.tensor(row_ids, dtype=torch.long)
        self.max_new = out.tokens.shape[1]
        vocab, device = vocab_size(policy), policy.device
        self.stops = StopCheck(policy.tokenizer, vocab, stop, stop_ids, device)
        self.tools = ToolInserts(hook, policy.tokenizer, vocab, device, out.forced) if hook is not None else None

    def emit(self, rows: torch.Tensor, t: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next token of ``rows`` (CPU long ``[k]``, at token index ``t`` ``[k]``) from their ``[k, V]``
        logits: returns ``(next_ids on the logits' device, done [k] bool on the CPU)``; a done row is
        recorded as finished when it hit a stop (not merely ``max_new_tokens``)."""
        out = self.out
        next_ids = next_tokens(logits, self.temperature, self.key, self.row_ids[rows], t)
        next_cpu = next_ids.cpu()
        replaced = torch.zeros(len(rows), dtype=torch.bool)
        if self.tools is not None:  # pending tool tokens replace the draws
            replaced = self.tools.substitute(rows.tolist(), t.tolist(), next_cpu)
            if bool(replaced.any()):
                next_ids = next_cpu.to(next_ids.device)
        out.tokens[rows, t] = next_cpu
        out.count[rows] = t + 1
        ends = (t + 1).tolist()

        def tokens_of(k: int) -> list[int]:
            return out.tokens[int(rows[k]), :ends[k]].tolist()

        hit = self.stops.hits(next_ids, next_cpu, tokens_of)
        done = hit | (t + 1 >= self.max_new)
        if self.tools is not None:
            self.tools.after(rows.tolist(), next_cpu, done | replaced, tokens_of)
        if bool(done.any()):
            out.finished[rows[done]] = hit[done]
            if self.tools is not None:
                self.tools.retire(rows[done].tolist())
        return next_ids, done
