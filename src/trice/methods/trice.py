"""TRICE (ALGORITHM.md section 3): memory, independence-sampler MH step, control-variate estimator.

``estimator`` is "trice" (CV, subsampled; the default), "trice-full" (CV over all 2M terms) or
"trice-nocv" (the basic estimator).
"""

from __future__ import annotations

import torch

from ..estimator import estimator_terms, trice_weights
from ..initialise import init_memory
from ..tools import tool_stats
from .base import Context, Method, Weighted


class TriceMethod(Method):
    def __init__(self, estimator: str = "trice", exemplars=None):
        self.name = estimator
        self.estimator = estimator
        self.exemplars = exemplars

    def setup(self, ctx: Context) -> None:
        # Memory from the hinted guide, drawn from the untuned model: at this point the policy equals
        # the untuned model (LoRA B = 0, soft prompt = exemplar text) and the guide replaces its prefix.
        self.memory = init_memory(ctx.sampler, ctx.task, ctx.train_set, self.exemplars, ctx.progress,
                                  fmt=self.format)

    def state_dict(self):
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state) -> None:
        from ..memory import Memory

        self.memory = Memory(len(state["memory"]["rationales"]))
        self.memory.load_state_dict(state["memory"])

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        prompts = [self.prompt(e.question) for e in examples]
        # Proposals z~_m ~ p_theta(z | x_m); correctness; MH step (accept iff correct).
        proposals = [s.text for s in ctx.sample(prompts)]
        proposal_correct = ctx.task.verdicts(proposals, examples)
        memory_correct, _ = self.memory.update(batch, proposals, proposal_correct)
        proposal_correct = torch.tensor(proposal_correct)
        # Which of the 2M sequences (memory z'_m, then proposals z~_m) to score, and their weights.
        terms = estimator_terms(proposal_correct, memory_correct, self.estimator,
                                ctx.config.subsample, ctx.resampler_rng)
        sequences = [self.memory.rationales[i] for i in batch] + proposals
        chosen = terms.indices.tolist()
        _, _, beta, mask = trice_weights(proposal_correct, memory_correct)
        metrics = {"proposal_accuracy": float(proposal_correct.float().mean()),
                   "memory_coverage": self.memory.coverage(),
                   "mean_beta": float(beta[mask].mean()) if mask.any() else 0.0,
                   "num_valid": int(mask.sum()), "num_terms": len(chosen),
                   **(tool_stats(proposals) if ctx.config.tools != "none" else {})}
        return Weighted([prompts[j % len(batch)] for j in chosen],
                        [sequences[j] + self.format.end for j in chosen], terms.coefs, metrics)
