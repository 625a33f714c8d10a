"""Methods that learn from k fresh samples per example, with no memory (weights in
:mod:`trice.estimators.policy_gradient`).

- ``rs``: rejection sampling (the paper's RS, k = 4): keep the correct samples, weight 1/(k M).
- ``rloo``: a policy-gradient peer with a leave-one-out group baseline (RLOO): every sample weighted
  (r_j - mean_{j' != j} r_j') / (k M).
- ``grpo``: GRPO exactly as TRL's ``GRPOTrainer`` defines it (one update per batch of samples, so the
  importance ratio is 1): advantages (r - group mean) / (std + 1e-4) (``scale_rewards``), token losses
  normalised as ``loss_type`` says (dapo, TRL's default: by the tokens of every completion in the batch).
  The reward is the task's check (1 or 0) or its ``--reward`` functions' sum, as TRL sums them.

All share TRICE's sampler, scorer, checker and loop.
"""

from __future__ import annotations

import torch

from ..estimators.policy_gradient import (group_advantages, grpo_coefficients, rejection_sampling_coefficients,
                                          rloo_coefficients)
from ..modeling.scoring import continuation_lengths
from ..tools import tool_stats
from .base import Context, Method, Weighted


class KSampleMethod(Method):
    def __init__(self, name: str, k: int = 4, loss_type: str = "dapo", scale_rewards: str = "group"):
        self.name, self.k, self.loss_type, self.scale_rewards = name, k, loss_type, scale_rewards

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        prompts = [self.prompt(e.question) for e in examples for _ in range(self.k)]
        texts = [s.text for s in ctx.sample(prompts)]
        repeated = [examples[j // self.k] for j in range(len(texts))]
        continuations = [text + self.format.end for text in texts]
        if self.name == "grpo":  # a real-valued reward where the task has reward functions
            reward = torch.tensor(ctx.task.rewards(texts, repeated), dtype=torch.float64).view(len(batch), self.k)
            advantages = group_advantages(reward, self.scale_rewards)
            lengths = torch.tensor(continuation_lengths(ctx.policy.tokenizer, continuations)).view_as(reward)
            coefs = grpo_coefficients(advantages, lengths, self.loss_type, ctx.config.max_new_tokens)
            threshold = getattr(ctx.task.check, "threshold", 0.5)  # reward functions' --reward-threshold; 0/1 else
            correct = (reward > threshold).double()  # (a NaN reward is not above it)
        else:
            correct = reward = torch.tensor(ctx.task.verdicts(texts, repeated), dtype=torch.float64).view(len(batch),
                                                                                                      self.k)
            coefs = (rejection_sampling_coefficients if self.name == "rs" else rloo_coefficients)(reward)
        coefs = coefs.flatten()
        keep = (coefs != 0).nonzero().flatten().tolist()
        metrics = {"proposal_accuracy": float(correct.mean()),
                   "examples_with_a_correct_sample": float((correct.sum(1) > 0).float().mean()),
                   "num_terms": len(keep), **(tool_stats(texts) if ctx.config.tools != "none" else {}),
                   **({"mean_reward": float(torch.nanmean(reward))} if self.name == "grpo" else {})}
        return Weighted([prompts[j] for j in keep], [continuations[j] for j in keep], coefs[keep], metrics)
