"""Methods that learn from k fresh samples per example, with no memory.

- ``rs``: rejection sampling (the paper's RS, k = 4): keep the correct samples, weight 1/(k M).
- ``rloo``: a policy-gradient peer with a leave-one-out group baseline (RLOO; GRPO without the
  std normalisation or clipping): every sample weighted (r_j - mean_{j' != j} r_j') / (k M).
Both share TRICE's sampler, scorer, checker and loop.
"""

from __future__ import annotations

import torch

from ..estimators.leave_one_out import leave_one_out_mean
from ..tools import tool_stats
from .base import Context, Method, Weighted


class KSampleMethod(Method):
    def __init__(self, name: str, k: int = 4):
        self.name, self.k = name, k

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        prompts = [self.prompt(e.question) for e in examples for _ in range(self.k)]
        texts = [s.text for s in ctx.sample(prompts)]
        reward = torch.tensor(ctx.task.verdicts(texts, [examples[j // self.k] for j in range(len(texts))]),
                              dtype=torch.float64).view(len(batch), self.k)
        coefs = self.coefficients(reward).flatten() / (self.k * len(batch))
        keep = (coefs != 0).nonzero().flatten().tolist()
        metrics = {"proposal_accuracy": float(reward.mean()),
                   "examples_with_a_correct_sample": float((reward.sum(1) > 0).float().mean()),
                   "num_terms": len(keep), **(tool_stats(texts) if ctx.config.tools != "none" else {})}
        return Weighted([prompts[j] for j in keep], [texts[j] + self.format.end for j in keep],
                        coefs[keep], metrics)

    def coefficients(self, reward: torch.Tensor) -> torch.Tensor:
        """[M, k] rewards -> [M, k] weights (before the 1/(k M) normalisation)."""
        if self.name == "rs":
            return reward
        return reward - leave_one_out_mean(reward, dim=1)  # the other k - 1 samples of the same question
