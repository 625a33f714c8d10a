"""An exactly enumerable latent-variable model, for proving the estimator and the loop correct.

Each question n has K candidate rationales; p_theta(z | x_n) is a softmax over them (free logits,
or logits x_n @ W from features); c(z, y_n) is a fixed 0/1 table. Then log p(y | x), the posterior
p(z | x, y) and the exact gradient of the average marginal log-likelihood are sums over K.

>>> model = EnumerableModel.random(num_questions=4, num_rationales=5, seed=0)
>>> history = run_trice(model, steps=200, batch_size=4, num_samples=4, lr=0.1, seed=0)
>>> history[-1]["marginal_loglik"] > history[0]["marginal_loglik"]
True
"""

from __future__ import annotations

from typing import Any

import torch

from ..estimators.trice import estimator_terms, trice_weights
from ..methods.memory import Memory


class EnumerableModel:
    """p_theta(z | x_n) = softmax(logits_n), logits_n = theta[n] (free) or features[n] @ theta."""

    def __init__(self, correct: torch.Tensor, theta: torch.Tensor,
                 features: torch.Tensor | None = None):
        self.correct = torch.as_tensor(correct, dtype=torch.bool)  # c(z, y_n): [N, K]
        self.features = features  # [N, D] or None for free logits
        self.theta = torch.nn.Parameter(theta.clone().double())

    @classmethod
    def random(cls, num_questions: int, num_rationales: int, seed: int = 0,
               correct_fraction: float = 0.3, num_features: int | None = None,
               logit_scale: float = 1.0) -> "EnumerableModel":
        """A random model in which every question has at least one correct rationale."""
        g = torch.Generator().manual_seed(seed)
        correct = torch.rand(num_questions, num_rationales, generator=g) < correct_fraction
        correct[torch.arange(num_questions), torch.randint(num_rationales, (num_questions,), generator=g)] = True
        if num_features is None:
            return cls(correct, logit_scale * torch.randn(num_questions, num_rationales, generator=g))
        features = torch.randn(num_questions, num_features, generator=g, dtype=torch.float64)
        theta = logit_scale * torch.randn(num_features, num_rationales, generator=g) / num_features**0.5
        return cls(correct, theta, features)

    @property
    def num_questions(self) -> int:
        return self.correct.shape[0]

    def logits(self) -> torch.Tensor:
        return self.theta if self.features is None else self.features @ self.theta

    def log_probs(self) -> torch.Tensor:
        """log p_theta(z | x_n), [N, K]."""
        return torch.log_softmax(self.logits(), dim=-1)

    def marginal_loglik(self) -> torch.Tensor:
        """L(theta) = (1/N) sum_n log sum_z p_theta(z | x_n) c(z, y_n) (exact)."""
        masked = self.log_probs().masked_fill(~self.correct, float("-inf"))
        return torch.logsumexp(masked, dim=-1).mean()

    def max_marginal_loglik(self) -> float:
        """sup over theta of L: 0 for free logits (all mass on correct rationales)."""
        return 0.0

    def exact_gradient(self) -> torch.Tensor:
        """grad_theta L(theta), by autograd through the enumeration."""
        (grad,) = torch.autograd.grad(self.marginal_loglik(), self.theta)
        return grad

    def posterior(self) -> torch.Tensor:
        """p(z | x_n, y_n), [N, K]."""
        return torch.softmax(self.log_probs().detach().masked_fill(~self.correct, float("-inf")), -1)

    def sample(self, questions: torch.Tensor, generator=None, probs: torch.Tensor | None = None):
        """One z per question from p_theta (or from ``probs`` [N, K] if given)."""
        probs = self.log_probs().detach().exp() if probs is None else probs
        return torch.multinomial(probs[questions], 1, generator=generator).squeeze(1)

    def is_correct(self, questions: torch.Tensor, rationales: torch.Tensor) -> torch.Tensor:
        return self.correct[questions, rationales]

    def grad_log_prob(self, questions: torch.Tensor, rationales: torch.Tensor) -> torch.Tensor:
        """grad_theta log p_theta(z_b | x_b) for each pair, [B, *theta.shape] (closed form)."""
        probs = self.log_probs().detach().exp()[questions]  # [B, K]
        delta = torch.nn.functional.one_hot(rationales, probs.shape[-1]).double() - probs
        if self.features is None:
            grads = torch.zeros(len(questions), *self.theta.shape, dtype=torch.float64)
            grads[torch.arange(len(questions)), questions] = delta
            return grads
        return self.features[questions][:, :, None] * delta[:, None, :]


def guide_probs(model: EnumerableModel, hint: float = 4.0) -> torch.Tensor:
    """A hinted guide: p_theta with correct rationales up-weighted by (1 + hint); never exact."""
    probs = model.log_probs().detach().exp() * (1.0 + hint * model.correct.double())
    return probs / probs.sum(-1, keepdim=True)


def run_trice(model: EnumerableModel, steps: int, batch_size: int, num_samples: int | None = None,
              lr: float = 0.1, estimator: str = "trice", seed: int = 0, hint: float = 4.0
              ) -> list[dict[str, Any]]:
    """The whole TRICE loop on the enumerable model: guide init, proposals, MH, estimator, Adam.

    Returns one record per step: exact marginal log-likelihood, memory coverage, mean beta.
    """
    g = torch.Generator().manual_seed(seed)
    n = model.num_questions
    if num_samples is None:
        num_samples = batch_size
    memory = Memory(n)
    everyone = torch.arange(n)
    init = model.sample(everyone, g, probs=guide_probs(model, hint))
    memory.initialize(everyone.tolist(), init.tolist(), model.is_correct(everyone, init).tolist())
    optimizer = torch.optim.Adam([model.theta], lr=lr)
    history: list[dict[str, Any]] = []
    order, cursor = torch.randperm(n, generator=g), 0
    for step in range(steps):
        if cursor + batch_size > n:  # epoch-wise minibatches
            order, cursor = torch.randperm(n, generator=g), 0
        batch = order[cursor:cursor + batch_size]
        cursor += batch_size
        proposals = model.sample(batch, g)
        proposal_correct = model.is_correct(batch, proposals)
        memory_correct, _ = memory.update(batch.tolist(), proposals.tolist(), proposal_correct.tolist())
        memory_now = torch.tensor([memory.rationales[i] for i in batch.tolist()])
        sequences = torch.cat([memory_now, proposals])
        questions = torch.cat([batch, batch])
        terms = estimator_terms(proposal_correct, memory_correct, estimator, num_samples, g)
        log_probs = model.log_probs()[questions[terms.indices], sequences[terms.indices]]
        loss = -(terms.coefs.double() * log_probs).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _, _, beta, mask = trice_weights(proposal_correct, memory_correct)
        with torch.no_grad():
            history.append({"step": step, "marginal_loglik": model.marginal_loglik().item(),
                            "coverage": memory.coverage(),
                            "mean_beta": float(beta[mask].mean()) if mask.any() else 0.0})
    return history


def gradient_draws(model: EnumerableModel, num_draws: int, estimator: str = "trice-full",
                   num_samples: int | None = None, seed: int = 0,
                   memory_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Independent draws of an estimator's gradient over the whole data set as one minibatch.

    Each draw samples the memory from ``memory_probs`` (default: the exact posterior, so every
    entry is correct), proposals from p_theta, does the MH step and evaluates the estimator in
    closed form. Returns [num_draws, theta.numel()]. The estimators ascend L, so their expectation
    is compared with ``model.exact_gradient()`` (with M = N the CV normaliser is 1/N).
    """
    g = torch.Generator().manual_seed(seed)
    questions = torch.arange(model.num_questions)
    memory_probs = model.posterior() if memory_probs is None else memory_probs
    draws = torch.empty(num_draws, model.theta.numel(), dtype=torch.float64)
    for r in range(num_draws):
        memory = model.sample(questions, g, probs=memory_probs)
        proposals = model.sample(questions, g)
        proposal_correct = model.is_correct(questions, proposals)
        memory_correct = model.is_correct(questions, memory)
        updated = torch.where(proposal_correct, proposals, memory)  # z'_m after the MH step
        sequences = torch.cat([updated, proposals])
        terms = estimator_terms(proposal_correct, memory_correct, estimator, num_samples, g)
        grads = model.grad_log_prob(torch.cat([questions, questions])[terms.indices],
                                    sequences[terms.indices])
        draws[r] = (terms.coefs.double()[:, None] * grads.flatten(1)).sum(0)
    return draws


def with_acceptance_rate(model: EnumerableModel, rate: float) -> EnumerableModel:
    """A free-logit copy of ``model`` whose every question has p_theta(correct) = ``rate``."""
    log_probs = model.log_probs().detach()
    mass = log_probs.masked_fill(~model.correct, float("-inf")).logsumexp(-1, keepdim=True)
    rest = log_probs.masked_fill(model.correct, float("-inf")).logsumexp(-1, keepdim=True)
    shift = torch.log(torch.tensor(rate / (1 - rate), dtype=torch.float64)) - (mass - rest)
    return EnumerableModel(model.correct, log_probs + shift * model.correct.double())
