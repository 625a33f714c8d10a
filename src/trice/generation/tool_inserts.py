"""Tool results fed into a sampled row as forced tokens, shared by both sampling engines
(:mod:`trice.generation.slot_engine` and :mod:`trice.generation.plain_engine`; the protocol is in :mod:`trice.tools`)."""

from __future__ import annotations

import torch

from .stops import stop_candidates


def triggers(hook) -> tuple[str, ...]:
    """The strings a hook's ``trigger`` names (one string or several): a call can only be complete where the text
    newly contains one; () when the hook names none (then every token is a candidate)."""
    trigger = getattr(hook, "trigger", None)
    return (trigger,) if isinstance(trigger, str) else tuple(trigger or ())


class ToolInserts:
    """Tool results waiting to be fed, shared by both engines: after a row's new token, if the token may
    complete a call (its text contains ``hook.trigger``), the hook gets the row's text so far and may
    return text to append; its tokens then replace the row's next draws, one per step, marked in
    ``forced`` (so the row's randomness index t still counts every token)."""

    def __init__(self, hook, tokenizer, vocab: int, device, forced: torch.Tensor):
        self.hook, self.tokenizer, self.forced = hook, tokenizer, forced
        self.candidates = stop_candidates(tokenizer, vocab, triggers(hook), device) if triggers(hook) else None
        self.pending: dict[int, list[int]] = {}  # row -> token ids still to feed

    def substitute(self, rows: list[int], t: list[int], next_cpu: torch.Tensor) -> torch.Tensor:
        """Replace the draws of rows with pending tool tokens; returns which were replaced ([k] bool)."""
        replaced = torch.zeros(len(rows), dtype=torch.bool)
        if self.pending:
            for k, r in enumerate(rows):
                queue = self.pending.get(r)
                if queue:
                    next_cpu[k] = queue.pop(0)
                    replaced[k] = True
                    self.forced[r, t[k]] = True
                    if not queue:
                        del self.pending[r]
        return replaced

    def after(self, rows: list[int], next_cpu: torch.Tensor, skip: torch.Tensor, tokens_of) -> None:
        """Call the hook for rows whose new token may complete a call (not ``skip``ped: done or forced);
        ``tokens_of(k)`` is the k-th row's tokens so far."""
        may = ~skip if self.candidates is None else self.candidates[next_cpu.to(self.candidates.device)].cpu() & ~skip
        for k in may.nonzero().flatten().tolist():
            inserted = self.hook(self.tokenizer.decode(tokens_of(k), skip_special_tokens=True))
            if inserted:
                self.pending[rows[k]] = self.tokenizer(inserted, add_special_tokens=False).input_ids

    def retire(self, rows: list[int]) -> None:
        for r in rows:
            self.pending.pop(r, None)
