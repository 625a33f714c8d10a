"""Gradient estimators that use the model's own likelihood of the answer, l(z) = p(y | x, z), as pure
functions over tensors (ALGORITHM.md section 6): ``trice-soft``, ``jepo`` and ``latro``.

Each returns per-sequence coefficients of two score terms, so that the loss to minimise is

    loss = -sum_i rationale_coefs[i] * log p(z_i | x) - sum_i answer_coefs[i] * log p(y | x, z_i),

i.e. the rationale scored after the prompt, and the answer scored after prompt + rationale. Written by
hand because no library computes them; each is checked on the enumerable model
(:mod:`trice.enumerable.soft`): its expectation is the gradient of the objective it claims.

>>> import torch
>>> lik = torch.tensor([[0.5, 0.1], [0.2, 0.2]], dtype=torch.float64)  # l(z): 2 examples x k = 2 samples
>>> jepo_coefficients(lik.log()).answer.mul(12).round().tolist()  # share of the example's likelihood / M
[[5.0, 1.0], [3.0, 3.0]]
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .leave_one_out import leave_one_out_logmeanexp, leave_one_out_mean


class Coefficients(NamedTuple):
    """Loss coefficients of log p(z_i | x) (``rationale``) and log p(y | x, z_i) (``answer``)."""

    rationale: torch.Tensor
    answer: torch.Tensor


# ------------------------------------------------------------------------------------------ trice-soft
def soft_acceptance(proposal_loglik: torch.Tensor, memory_loglik: torch.Tensor) -> torch.Tensor:
    """alpha_m = min(1, l(z~_m) / l(z_m)) of the independence MH step with target ∝ p(z | x) l(z) and
    proposal p(z | x); 1 where only the proposal has l > 0, 0 where neither has (log l = -inf)."""
    proposal_loglik, memory_loglik = proposal_loglik.double(), memory_loglik.double()
    ratio = (proposal_loglik - memory_loglik).clamp(max=0.0).exp()
    ratio = torch.where(torch.isneginf(memory_loglik), (~torch.isneginf(proposal_loglik)).double(), ratio)
    return torch.nan_to_num(ratio, nan=0.0)


def soft_mh_step(proposal_loglik: torch.Tensor, memory_loglik: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, accepted)``: accept proposal m with probability alpha_m (one uniform per example).
    With a 0/1 likelihood alpha is 0 or 1 and this is TRICE's "accept iff correct"."""
    alpha = soft_acceptance(proposal_loglik, memory_loglik)
    u = torch.rand(alpha.shape, generator=generator, dtype=torch.float64)
    return alpha, u < alpha


def soft_weights(alpha: torch.Tensor, accepted: torch.Tensor, updated_loglik: torch.Tensor):
    """TRICE's weights and signs over the 2M terms (memory z'_m first, then proposals z~_m) with the
    soft acceptance: ``(weights, signs, beta, mask)`` as :func:`trice.estimators.trice.trice_weights`.

    mask_m = l(z'_m) > 0; beta_m = the leave-one-out mean of alpha over the other valid examples (it does
    not depend on z~_m, so beta_m grad log p(z~_m) has mean 0); the memory term gets 1 - beta_m when the
    proposal was accepted (then z'_m = z~_m and the two terms merge), else 1 and the proposal term beta_m.
    With l in {0, 1}: alpha_m mask_m = c~_m and accepted = c~_m, so these are exactly TRICE's."""
    alpha, accepted = alpha.double(), accepted.bool()
    mask = ~torch.isneginf(updated_loglik.double())
    beta = leave_one_out_mean(alpha, mask)
    rejected = mask & ~accepted
    memory_w = torch.where(accepted & mask, 1.0 - beta, torch.where(rejected, 1.0, 0.0))
    proposal_w = torch.where(rejected, beta, torch.zeros_like(beta))
    weights = torch.cat([memory_w, proposal_w])
    signs = torch.cat([torch.ones_like(memory_w), -torch.ones_like(proposal_w)])
    return weights, signs, beta, mask


def soft_answer_coefficients(mask: torch.Tensor) -> torch.Tensor:
    """Coefficients of log p(y | x, z'_m) on the M memory terms: 1 / Mv for each valid example (the
    Fisher identity's second term, E_pi[grad log l(z)]; no control variate on it)."""
    num_valid = int(mask.sum())
    return mask.double() / num_valid if num_valid else torch.zeros(len(mask), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------ jepo
def jepo_coefficients(loglik: torch.Tensor) -> Coefficients:
    """JEPO (Tang et al. 2025), the multi-sample Jensen bound L_k = E[log (1/k) sum_i l(z_i)] with k samples
    z_i ~ p(z | x) per example, averaged over the M examples of ``loglik`` [M, k] (log l(z_i)).

    grad L_k = E[sum_i (log mean_j l_j - b_i) grad log p(z_i)] + E[sum_i (l_i / sum_j l_j) grad log l(z_i)]
    with the leave-one-out baseline b_i = log mean_{j != i} l_j (it does not depend on z_i, so it adds no
    bias; VIMCO's construction). k = 1 is the single-sample bound E[log l(z)] with no baseline."""
    loglik = loglik.double()
    m, k = loglik.shape
    bound = torch.logsumexp(loglik, 1, keepdim=True) - math.log(k)
    others = leave_one_out_logmeanexp(loglik, 1) if k > 1 else torch.zeros_like(loglik)
    share = torch.softmax(loglik, 1)
    return Coefficients((bound - others) / m, share / m)


# ----------------------------------------------------------------------------------------------- latro
LATRO_KL = 0.05  # the KL coefficient trice uses for latro unless told otherwise (--latro-kl)


def latro_coefficients(loglik: torch.Tensor, logp: torch.Tensor, logp_initial: torch.Tensor,
                       kl: float = LATRO_KL) -> Coefficients:
    """LaTRO (Chen et al. 2024): maximise E_{z ~ p}[log l(z)] - kl * KL(p(. | x) || p_0(. | x)) with k samples
    per example ([M, k] tensors: log l(z_i), log p(z_i | x) and log p_0(z_i | x) under the initial policy).

    The self-reward r_i = log l(z_i) - kl * (log p(z_i) - log p_0(z_i)) goes through a leave-one-out (RLOO)
    baseline, r_i - mean_{j != i} r_j, on grad log p(z_i); grad log l(z_i) has coefficient 1 / (k M). (The
    reward's own dependence on theta, -kl grad log p(z_i), has mean 0 and is left out.)"""
    loglik, logp, logp_initial = loglik.double(), logp.double(), logp_initial.double()
    m, k = loglik.shape
    reward = loglik - kl * (logp - logp_initial)
    advantage = reward - leave_one_out_mean(reward, dim=1)
    return Coefficients(advantage / (k * m), torch.full_like(reward, 1.0 / (k * m)))
