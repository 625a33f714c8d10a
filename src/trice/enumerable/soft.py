"""An enumerable model with a soft answer likelihood, for proving ``trice-soft``, ``jepo`` and ``latro``
correct (:mod:`trice.estimators.likelihood`).

Question n has K candidate rationales; p_theta(z | x_n) = softmax(theta[n]) and the answer likelihood
l_psi(z) = p(y_n | x_n, z) = sigmoid(psi[n, z]) has its own parameters, so the estimators' answer terms are
checked too. Each objective below is exact (sums over K, or over K^k tuples for JEPO's k samples); its
gradient comes from autograd, and an estimator's draws are compared with it by z-tests.

>>> model = SoftModel.random(3, 4, seed=0)
>>> draws = soft_gradient_draws(model, 2, "trice-soft", seed=0)
>>> draws.shape == (2, model.num_params)
True
"""

from __future__ import annotations

import itertools
import math

import torch

from ..estimators.likelihood import (
    jepo_coefficients,
    latro_coefficients,
    soft_answer_coefficients,
    soft_mh_step,
    soft_weights,
)
from ..estimators.trice import cv_coefficients


class SoftModel:
    """theta: rationale logits [N, K]; psi: answer logits [N, K] (l = sigmoid(psi)); theta0: the initial
    rationale logits (LaTRO's reference policy p_0)."""

    def __init__(self, theta: torch.Tensor, psi: torch.Tensor):
        self.theta = torch.nn.Parameter(theta.clone().double())
        self.psi = torch.nn.Parameter(psi.clone().double())
        self.theta0 = theta.clone().double()

    @classmethod
    def random(cls, num_questions: int, num_rationales: int, seed: int = 0, hard: bool = False) -> "SoftModel":
        """Random logits; ``hard``: psi = +-30, i.e. a 0/1 likelihood (at least one 1 per question)."""
        g = torch.Generator().manual_seed(seed)
        theta = torch.randn(num_questions, num_rationales, generator=g, dtype=torch.float64)
        psi = 2.0 * torch.randn(num_questions, num_rationales, generator=g, dtype=torch.float64)
        if hard:
            psi = torch.where(psi > 0.5, 30.0, -30.0)
            psi[:, 0] = 30.0
        return cls(theta, psi)

    @property
    def num_questions(self) -> int:
        return self.theta.shape[0]

    @property
    def num_params(self) -> int:
        return self.theta.numel() + self.psi.numel()

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.theta, -1)

    def loglik(self) -> torch.Tensor:
        """log l(z) = log sigmoid(psi), [N, K]."""
        return torch.nn.functional.logsigmoid(self.psi)

    def gradient(self, objective: torch.Tensor) -> torch.Tensor:
        """d objective / d (theta, psi), flattened."""
        return torch.cat([g.flatten() for g in torch.autograd.grad(objective, [self.theta, self.psi])])

    # --- the objectives the estimators claim (means over questions) -----------------------------
    def marginal_loglik(self) -> torch.Tensor:
        """trice-soft: (1/N) sum_n log sum_z p(z | x_n) l(z)."""
        return torch.logsumexp(self.log_probs() + self.loglik(), -1).mean()

    def jensen_bound(self, k: int) -> torch.Tensor:
        """jepo: (1/N) sum_n E_{z_1..k ~ p}[log (1/k) sum_i l(z_i)], over all K^k tuples."""
        logp, loglik = self.log_probs(), self.loglik()
        total = 0.0
        for tup in itertools.product(range(logp.shape[1]), repeat=k):
            idx = torch.tensor(tup)
            weight = logp[:, idx].sum(1).exp()
            total = total + weight * (torch.logsumexp(loglik[:, idx], 1) - math.log(k))
        return total.mean()

    def latro_objective(self, kl: float) -> torch.Tensor:
        """latro: (1/N) sum_n E_p[log l(z)] - kl * KL(p || p_0)."""
        logp, logp0 = self.log_probs(), torch.log_softmax(self.theta0, -1)
        p = logp.exp()
        return ((p * self.loglik()).sum(-1) - kl * (p * (logp - logp0)).sum(-1)).mean()

    def posterior(self) -> torch.Tensor:
        return torch.softmax((self.log_probs() + self.loglik()).detach(), -1)

    # --- closed-form score functions --------------------------------------------------------------
    def grads(self, questions: torch.Tensor, rationales: torch.Tensor, rationale_coefs: torch.Tensor,
              answer_coefs: torch.Tensor) -> torch.Tensor:
        """sum_b rationale_coefs[b] grad log p(z_b | x_b) + answer_coefs[b] grad log l(z_b), flattened."""
        probs = self.log_probs().detach().exp()
        g_theta = torch.zeros_like(self.theta, dtype=torch.float64)
        g_psi = torch.zeros_like(self.psi, dtype=torch.float64)
        one_hot = torch.nn.functional.one_hot(rationales, probs.shape[1]).double()
        g_theta.index_add_(0, questions, rationale_coefs.double()[:, None] * (one_hot - probs[questions]))
        lik = torch.sigmoid(self.psi.detach())[questions, rationales]
        g_psi.index_put_((questions, rationales), answer_coefs.double() * (1 - lik), accumulate=True)
        return torch.cat([g_theta.flatten(), g_psi.flatten()])


def soft_gradient_draws(model: SoftModel, num_draws: int, estimator: str, k: int = 4, kl: float = 0.05,
                        seed: int = 0, memory_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Independent draws of an estimator's gradient with every question in the minibatch, [draws, params].

    ``trice-soft``: memory from ``memory_probs`` (default the exact posterior ∝ p l), one proposal per
    question, the soft MH step, the full control-variate estimator; ``jepo`` / ``latro``: k samples per
    question from p."""
    g = torch.Generator().manual_seed(seed)
    n = model.num_questions
    questions = torch.arange(n)
    probs = model.log_probs().detach().exp()
    loglik = model.loglik().detach()
    logp = model.log_probs().detach()
    logp0 = torch.log_softmax(model.theta0, -1)
    memory_probs = model.posterior() if memory_probs is None else memory_probs
    draws = torch.empty(num_draws, model.num_params, dtype=torch.float64)
    for r in range(num_draws):
        if estimator == "trice-soft":
            memory = torch.multinomial(memory_probs, 1, generator=g).squeeze(1)
            proposals = torch.multinomial(probs, 1, generator=g).squeeze(1)
            alpha, accepted = soft_mh_step(loglik[questions, proposals], loglik[questions, memory], g)
            updated = torch.where(accepted, proposals, memory)
            weights, signs, _, mask = soft_weights(alpha, accepted, loglik[questions, updated])
            coefs = cv_coefficients(weights, signs, mask)
            answer = torch.cat([soft_answer_coefficients(mask), torch.zeros(n, dtype=torch.float64)])
            draws[r] = model.grads(torch.cat([questions, questions]), torch.cat([updated, proposals]), coefs, answer)
            continue
        samples = torch.multinomial(probs, k, replacement=True, generator=g)  # [N, k]
        rows = questions[:, None].expand(n, k)
        if estimator == "jepo":
            coefs = jepo_coefficients(loglik[rows, samples])
        elif estimator == "latro":
            coefs = latro_coefficients(loglik[rows, samples], logp[rows, samples], logp0[rows, samples], kl)
        else:
            raise ValueError(f"unknown estimator {estimator!r}")
        draws[r] = model.grads(rows.flatten(), samples.flatten(), coefs.rationale.flatten(), coefs.answer.flatten())
    return draws
