"""Baselines with fixed targets and no sampling during training.

- ``fewshot-cot``: the untuned model with the 3-shot exemplars (evaluation only).
- ``pt-direct``: tune on the answer alone, log p(" The answer is y." | "Question: x\\nAnswer:").
- ``sft-gold``: tune on the task's gold rationales (GSM8K has them; some reasoning-gym tasks too).
"""

from __future__ import annotations

import torch

from ..errors import TriceError
from ..tools import mark_gold
from .base import Context, Method, Weighted


class FewShotCoT(Method):
    name = "fewshot-cot"
    trains = False


class DirectPromptTuning(Method):
    """Answers directly: the prompt ends at "Answer:" and the target is " The answer is y."."""

    name = "pt-direct"

    def prompt(self, question: str) -> str:
        return self.format.direct_prompt(question)

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        return Weighted([self.prompt(e.question) for e in examples],
                        [self.format.direct_target(e.answer) for e in examples],
                        torch.full((len(batch),), 1.0 / len(batch), dtype=torch.float64))


class GoldRationales(Method):
    name = "sft-gold"

    def setup(self, ctx: Context) -> None:
        if not any(e.rationale for e in ctx.train_set):
            raise TriceError(f"method sft-gold needs gold rationales, and task {ctx.task.name} has none")

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch if ctx.train_set[i].rationale]
        n = max(len(examples), 1)
        return Weighted([self.prompt(e.question) for e in examples],
                        [(mark_gold(e.rationale) if ctx.config.tools != "none" else e.rationale) + self.format.end
                         for e in examples],
                        torch.full((len(examples),), 1.0 / n, dtype=torch.float64))
