"""The TRICE gradient estimator as pure functions over tensors (ALGORITHM.md section 3).

Written by hand because no library computes it: the leave-one-out control variate (``beta``), the
2M signed terms, and the unbiased subsample drawn by systematic resampling with P_j ∝ |w_j|.

Term layout, used everywhere in trice: for a minibatch of M examples there are 2M terms, the M
*memory* terms (on z'_m, the memory after the MH update) first, then the M *proposal* terms (on
z~_m). An estimator returns ``(indices, coefs)`` over those 2M sequences, and the loss to minimise is

    loss = -sum_i coefs[i] * log p_theta(seq[indices[i]] | x)

so every method (full CV, subsampled CV, basic) feeds the same scorer and optimiser step.

>>> import torch
>>> proposal_correct = torch.tensor([True, False, False])
>>> memory_correct = torch.tensor([False, True, False])
>>> weights, signs, beta, mask = trice_weights(proposal_correct, memory_correct)
>>> weights.tolist(), beta.tolist(), mask.tolist()
([1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [True, True, False])
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .leave_one_out import leave_one_out_mean

ESTIMATORS = ("trice", "trice-full", "trice-nocv")


def trice_weights(proposal_correct: torch.Tensor, memory_correct: torch.Tensor):
    """Weights, signs, beta and mask of the control-variate estimator (ALGORITHM.md 3.4-3.6).

    Args:
        proposal_correct: bool [M], c~_m = c(z~_m, y_m).
        memory_correct: bool [M], c_m = c(z_m, y_m) for the memory entry *before* the update.

    Returns:
        weights: float64 [2M], non-negative; memory terms first, then proposal terms.
        signs: float64 [2M], +1 for memory terms, -1 for proposal terms.
        beta: float64 [M], leave-one-out acceptance rate (sum_m' c~_m' - c~_m) / (Mv - 1); 0 where
            the example is not valid (mask 0) or when Mv <= 1 (no other example to leave in).
        mask: bool [M], c~_m or c_m (the example holds a correct rationale after the update).
    """
    proposal_correct = torch.as_tensor(proposal_correct, dtype=torch.bool)
    memory_correct = torch.as_tensor(memory_correct, dtype=torch.bool)
    if proposal_correct.shape != memory_correct.shape or proposal_correct.dim() != 1:
        raise ValueError("proposal_correct and memory_correct must be bool tensors of shape [M]")
    mask = proposal_correct | memory_correct
    beta = leave_one_out_mean(proposal_correct, mask)  # the other valid examples' acceptance rate
    rejected_but_covered = (~proposal_correct) & memory_correct
    memory_w = torch.where(proposal_correct, 1.0 - beta,
                           torch.where(rejected_but_covered, 1.0, 0.0))
    proposal_w = torch.where(rejected_but_covered, beta, torch.zeros_like(beta))
    weights = torch.cat([memory_w, proposal_w])
    signs = torch.cat([torch.ones_like(memory_w), -torch.ones_like(proposal_w)])
    return weights, signs, beta, mask


def cv_coefficients(weights: torch.Tensor, signs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-term coefficients s_j w_j / Mv of the full (unsubsampled) CV estimator; zeros if Mv = 0."""
    num_valid = int(mask.sum())
    if num_valid == 0:
        return torch.zeros_like(weights)
    return signs * weights / num_valid


def systematic_resample(probs: torch.Tensor, num_samples: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``num_samples`` indices with systematic resampling from ``probs`` (need not sum to 1).

    One u ~ U[0, 1/L); the l-th draw is the index whose cumulative-probability interval contains
    u + l/L. Each index j is drawn floor(L P_j) or ceil(L P_j) times; zero-probability indices never.

    >>> systematic_resample(torch.tensor([0.5, 0.0, 0.5]), 4).tolist()
    [0, 0, 2, 2]
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    probs = torch.as_tensor(probs, dtype=torch.float64)
    if probs.dim() != 1 or (probs < 0).any() or not torch.isfinite(probs).all() or probs.sum() <= 0:
        raise ValueError("probs must be a 1-D tensor of finite non-negative numbers with a positive sum")
    cdf = torch.cumsum(probs / probs.sum(), 0)
    u = torch.rand((), generator=generator, dtype=torch.float64) / num_samples
    points = u + torch.arange(num_samples, dtype=torch.float64) / num_samples
    indices = torch.searchsorted(cdf, points, right=True)
    # Rounding can leave cdf[-1] a hair below 1: send such points to the last positive index.
    last_positive = int(torch.nonzero(probs > 0)[-1])
    return indices.clamp(max=last_positive)


def subsample_terms(weights: torch.Tensor, signs: torch.Tensor, mask: torch.Tensor,
                    num_samples: int, generator: torch.Generator | None = None):
    """Draw L terms ∝ |w_j| by systematic resampling; each drawn term gets s_j * W / Mv.

    g_sub = (1/L) sum_l term_weights[l] * grad log p(z_{indices[l]}) has expectation g_CV exactly.
    With no valid example or all weights zero the gradient is zero: both outputs are empty.
    """
    num_valid = int(mask.sum())
    total = float(weights.abs().sum())
    if num_valid == 0 or total == 0.0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    indices = systematic_resample(weights.abs(), num_samples, generator)
    term_weights = signs[indices] * total / num_valid
    return indices, term_weights


class Terms(NamedTuple):
    """Unique term indices into the 2M sequences (memory then proposals) and their loss coefficients."""

    indices: torch.Tensor
    coefs: torch.Tensor


def merge_duplicates(indices: torch.Tensor, coefs: torch.Tensor) -> Terms:
    """Sum the coefficients of repeated indices so each sequence is scored once; drop zeros."""
    if indices.numel() == 0:
        return Terms(indices.long(), coefs.double())
    unique, inverse = torch.unique(indices, return_inverse=True)
    summed = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, coefs.double())
    keep = summed != 0
    return Terms(unique[keep], summed[keep])


def estimator_terms(proposal_correct: torch.Tensor, memory_correct: torch.Tensor,
                    estimator: str = "trice", num_samples: int | None = None,
                    generator: torch.Generator | None = None) -> Terms:
    """The terms to score for one step: the loss is ``-sum(coefs * log p(seq[indices]))``.

    ``estimator``:
      - ``"trice"`` (default): CV with a subsample of ``num_samples`` (L) terms, coef s W / (Mv L);
      - ``"trice-full"``: CV over all 2M terms, coef s_j w_j / Mv;
      - ``"trice-nocv"``: the basic estimator, (1/M) sum_m c(z'_m) grad log p(z'_m) (memory terms only).
    """
    if estimator == "trice":
        if num_samples is None:
            raise ValueError("estimator 'trice' needs num_samples (L)")
        weights, signs, _, mask = trice_weights(proposal_correct, memory_correct)
        indices, term_weights = subsample_terms(weights, signs, mask, num_samples, generator)
        return merge_duplicates(indices, term_weights / num_samples)
    if estimator == "trice-full":
        weights, signs, _, mask = trice_weights(proposal_correct, memory_correct)
        coefs = cv_coefficients(weights, signs, mask)
        return merge_duplicates(torch.arange(len(coefs)), coefs)
    if estimator == "trice-nocv":
        covered = torch.as_tensor(proposal_correct, dtype=torch.bool) | torch.as_tensor(
            memory_correct, dtype=torch.bool)
        return merge_duplicates(torch.arange(len(covered)), covered.double() / len(covered))
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
