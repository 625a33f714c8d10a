"""Methods whose signal is the model's own likelihood of the gold answer, l(z) = p(y | x, z)
(ALGORITHM.md section 6; estimators in :mod:`trice.estimators.likelihood`, l in
:mod:`trice.modeling.answer_likelihood`). Experimental: measured at small scale only (docs/latent).

- ``trice-soft``: TRICE's memory with the soft MH step (accept with probability min(1, l(z~)/l(z))) and the
  control variate generalised to it; the memory terms also train log p(y | x, z').
- ``jepo``: k samples, the multi-sample Jensen bound with a leave-one-out baseline.
- ``latro``: k samples, self-reward log l(z) with a KL penalty to the initial policy, RLOO baseline.

None of them needs the task's checker to train (it only logs proposal accuracy), so they also train on
free-form answers. Every l(z) is recomputed under the current parameters each step (it moves with them),
and those forward passes are charged to the compute budget (``Weighted.tokens_forward``).
"""

from __future__ import annotations

import torch

from ...estimators.likelihood import (
    LATRO_KL,
    jepo_coefficients,
    latro_coefficients,
    soft_answer_coefficients,
    soft_mh_step,
    soft_weights,
)
from ...estimators.trice import merge_duplicates, subsample_terms
from ...modeling.answer_likelihood import answer_logliks, answer_row, rationale_logprobs
from ..base import Context, Method, Weighted
from ..trice import TriceMethod


class SoftTrice(TriceMethod):
    """TRICE's memory (from the hinted guide, saved and resumed the same way) with the soft MH step."""

    def __init__(self, exemplars=None):
        super().__init__("trice-soft", exemplars)

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        prompts = [self.prompt(e.question) for e in examples]
        answers = [e.answer for e in examples]
        proposals = [s.text for s in ctx.sample(prompts)]
        memory = [self.memory.rationales[i] for i in batch]
        loglik, forward = answer_logliks(ctx.policy, prompts + prompts, memory + proposals, answers + answers,
                                         self.format, ctx.config.score_batch_size)
        m = len(batch)
        alpha, accepted = soft_mh_step(loglik[m:], loglik[:m], ctx.resampler_rng)
        updated = [z_new if a else z for z, z_new, a in zip(memory, proposals, accepted.tolist())]
        proposal_correct = ctx.task.verdicts(proposals, examples)  # logged; the checker does not train
        for j, i in enumerate(batch):
            if accepted[j]:
                self.memory.rationales[i] = proposals[j]
                self.memory.correct[i] = bool(proposal_correct[j])
            self.memory.acceptances[i] += int(accepted[j])
            self.memory.proposals[i] += 1
        weights, signs, beta, mask = soft_weights(alpha, accepted, torch.where(accepted, loglik[m:], loglik[:m]))
        indices, term_weights = subsample_terms(weights, signs, mask, ctx.config.subsample, ctx.resampler_rng)
        terms = merge_duplicates(indices, term_weights / ctx.config.subsample)
        sequences = updated + proposals
        chosen = terms.indices.tolist()
        answer_coefs = soft_answer_coefficients(mask)
        rows = [answer_row(prompts[j], updated[j], answers[j], self.format) for j in range(m) if answer_coefs[j] != 0]
        metrics = {"proposal_accuracy": sum(proposal_correct) / m, "memory_coverage": self.memory.coverage(),
                   "acceptance": float(accepted.double().mean()), "mean_alpha": float(alpha.mean()),
                   "mean_beta": float(beta[mask].mean()) if mask.any() else 0.0,
                   "answer_loglik": float(loglik[:m].mean()), "num_terms": len(chosen)}
        return Weighted([prompts[j % m] for j in chosen] + [r[0] for r in rows],
                        [sequences[j] + self.format.end for j in chosen] + [r[1] for r in rows],
                        torch.cat([terms.coefs, answer_coefs[answer_coefs != 0]]), metrics, tokens_forward=forward)


class LikelihoodKSample(Method):
    """``jepo`` or ``latro``: k fresh samples per example, weighted by their answer likelihoods."""

    def __init__(self, name: str, k: int = 4):
        self.name, self.k = name, k
        self.initial: list[torch.Tensor] = []  # latro: the initial parameters (its reference policy p_0)

    def setup(self, ctx: Context) -> None:
        if self.name == "latro":
            self.initial = ctx.policy.trainable_values()

    def state_dict(self):
        return {"initial": [p.clone() for p in self.initial]}

    def load_state_dict(self, state) -> None:
        self.initial = [p.clone() for p in state["initial"]]

    def step(self, ctx: Context, batch: list[int]) -> Weighted:
        examples = [ctx.train_set[i] for i in batch]
        m, k = len(batch), self.k
        prompts = [self.prompt(e.question) for e in examples for _ in range(k)]
        answers = [e.answer for e in examples for _ in range(k)]
        texts = [s.text for s in ctx.sample(prompts)]
        loglik, forward = answer_logliks(ctx.policy, prompts, texts, answers, self.format, ctx.config.score_batch_size)
        continuations = [z + self.format.end for z in texts]
        if self.name == "jepo":
            coefs = jepo_coefficients(loglik.view(m, k))
        else:
            logp, f1 = rationale_logprobs(ctx.policy, prompts, continuations, ctx.config.score_batch_size)
            with ctx.policy.swapped(self.initial):
                logp0, f2 = rationale_logprobs(ctx.policy, prompts, continuations, ctx.config.score_batch_size)
            forward += f1 + f2
            kl = getattr(ctx.config, "latro_kl", LATRO_KL)
            coefs = latro_coefficients(loglik.view(m, k), logp.view(m, k), logp0.view(m, k), kl)
        rationale, answer = coefs.rationale.flatten(), coefs.answer.flatten()
        keep = (rationale != 0).nonzero().flatten().tolist()
        rows = [answer_row(prompts[i], texts[i], answers[i], self.format) for i in range(m * k)]
        correct = ctx.task.verdicts(texts, [examples[i // k] for i in range(m * k)])
        metrics = {"proposal_accuracy": sum(correct) / len(correct), "answer_loglik": float(loglik.mean()),
                   "num_terms": len(keep) + m * k}
        return Weighted([prompts[i] for i in keep] + [r[0] for r in rows],
                        [continuations[i] for i in keep] + [r[1] for r in rows],
                        torch.cat([rationale[keep], answer]), metrics, tokens_forward=forward)
