"""TRICE (ALGORITHM.md section 3): memory, independence-sampler MH step, control-variate estimator.

``estimator`` is "trice" (the paper's: CV, subsampled), "trice-full" (CV over all 2M terms),
"trice-nocv" (the basic estimator) or "trice-auto" (the default: the basic estimator while the running
acceptance rate is below AUTO_THRESHOLD, the paper's above it; see :func:`auto_estimator`).
"""

from __future__ import annotations

import torch

from ..estimators.trice import estimator_terms, trice_weights
from ..tools import tool_stats
from .base import Context, Method, Weighted
from .initialisation import init_memory
from .memory import Memory

# trice-auto's rule, measured (docs/estimator-variance.md): per unit of compute (token-passes) the basic
# estimator's gradient variance is 0.45x [0.40, 0.51] the paper's at acceptance 0.31 and 0.49x [0.40, 0.58]
# at 0.46 on the packaged SmolLM2; on the enumerable model (benchmarks/variance_vs_acceptance.py, L = M) the
# paper's estimator has 1.48x the basic one's variance at 0.3, 1.34x at 0.5, 0.99x at 0.7 and 0.41x at 0.9.
# So the control variate pays from about 0.7 on; below, the basic estimator is the cheaper one.
AUTO_THRESHOLD = 0.7
AUTO_WINDOW = 10  # steps of proposal accuracy in the running acceptance rate


def auto_estimator(recent_acceptance: list[float], threshold: float | None = None) -> str:
    """trice-auto's estimator for the next step: "trice" (the paper's, control variate) when the mean
    proposal accuracy of the last AUTO_WINDOW steps is at least ``threshold`` (AUTO_THRESHOLD), else
    "trice-nocv"; before any step (no rate measured yet) "trice-nocv". Only past steps count: choosing by this step's own
    proposals would make the choice depend on the sample the estimate is made from.

    >>> auto_estimator([]), auto_estimator([0.5] * 10), auto_estimator([0.0] * 5 + [0.8] * 10)
    ('trice-nocv', 'trice-nocv', 'trice')
    """
    threshold = AUTO_THRESHOLD if threshold is None else threshold
    recent = recent_acceptance[-AUTO_WINDOW:]
    return "trice" if recent and sum(recent) / len(recent) >= threshold else "trice-nocv"


class TriceMethod(Method):
    def __init__(self, estimator: str = "trice", exemplars=None):
        self.name = estimator
        self.estimator = estimator
        self.exemplars = exemplars
        self.recent_acceptance: list[float] = []  # trice-auto: proposal accuracy of the last steps

    def setup(self, ctx: Context) -> None:
        # Memory from the hinted guide, drawn from the untuned model: at this point the policy equals
        # the untuned model (LoRA B = 0, soft prompt = exemplar text) and the guide replaces its prefix.
        self.memory = init_memory(ctx.sampler, ctx.task, ctx.train_set, self.exemplars, ctx.progress,
                                  fmt=self.format)

    def state_dict(self):
        return {"memory": self.memory.state_dict(), "recent_acceptance": list(self.recent_acceptance)}

    def load_state_dict(self, state) -> None:
        self.memory = Memory(len(state["memory"]["rationales"]))
        self.memory.load_state_dict(state["memory"])
        self.recent_acceptance = list(state.get("recent_acceptance", []))

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        prompts = [self.prompt(e.question) for e in examples]
        # Proposals z~_m ~ p_theta(z | x_m); correctness; MH step (accept iff correct).
        proposals = [s.text for s in ctx.sample(prompts)]
        proposal_correct = ctx.task.verdicts(proposals, examples)
        memory_correct, _ = self.memory.update(batch, proposals, proposal_correct)
        proposal_correct = torch.tensor(proposal_correct)
        accuracy = float(proposal_correct.float().mean())
        estimator = auto_estimator(self.recent_acceptance) if self.estimator == "trice-auto" else self.estimator
        self.recent_acceptance = (self.recent_acceptance + [accuracy])[-AUTO_WINDOW:]
        # Which of the 2M sequences (memory z'_m, then proposals z~_m) to score, and their weights.
        terms = estimator_terms(proposal_correct, memory_correct, estimator,
                                ctx.config.subsample, ctx.resampler_rng)
        sequences = [self.memory.rationales[i] for i in batch] + proposals
        chosen = terms.indices.tolist()
        _, _, beta, mask = trice_weights(proposal_correct, memory_correct)
        metrics = {"proposal_accuracy": accuracy,
                   "memory_coverage": self.memory.coverage(),
                   "mean_beta": float(beta[mask].mean()) if mask.any() else 0.0,
                   "num_valid": int(mask.sum()), "num_terms": len(chosen),
                   "control_variate": estimator != "trice-nocv",
                   **(tool_stats(proposals) if ctx.config.tools != "none" else {})}
        return Weighted([prompts[j % len(batch)] for j in chosen],
                        [sequences[j] + self.format.end for j in chosen], terms.coefs, metrics)
