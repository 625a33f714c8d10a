"""Policy-gradient weights for k fresh samples per question, as pure functions over ``[M, k]`` tensors (M
questions, k samples each): rejection sampling's, RLOO's and GRPO's exactly as TRL defines it.

Each returns per-sequence loss coefficients, so the loss is ``-sum_i coefs[i] * log p(z_i | x_i)`` with
log p summed over the sequence's tokens, as every trice method's. GRPO follows TRL 1.16's ``GRPOTrainer``
with one optimisation step per generation batch (``num_iterations=1``, so the importance ratio is 1 and
clipping never acts, ``beta=0``): its per-token loss -A_i log p_t, normalised as ``loss_type`` says, has
the gradient of these per-sequence coefficients (tests/against_trl/test_grpo_equals_trl.py checks it against
TRL's own loss). Written by hand because TRL's loss lives inside its trainer.

>>> import torch
>>> rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
>>> group_advantages(rewards, "none").tolist()
[[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]
>>> grpo_coefficients(group_advantages(rewards, "none"), torch.tensor([[2, 4, 2, 8], [1, 1, 1, 1]]), "dapo").tolist()
[[0.025, -0.025, -0.025, 0.025], [0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import torch

from ..choices import GRPO_LOSS_TYPES as LOSS_TYPES, GRPO_SCALE_REWARDS as SCALE_REWARDS
from .leave_one_out import leave_one_out_mean

STD_EPSILON = 1e-4  # TRL adds it to the standard deviation


def rejection_sampling_coefficients(rewards: torch.Tensor) -> torch.Tensor:
    """The paper's RS: each correct sample (reward 1) weighted 1 / (k M), the others 0."""
    return rewards.double() / rewards.numel()


def rloo_coefficients(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO: (r_j - the mean reward of the question's other k - 1 samples) / (k M)."""
    rewards = rewards.double()
    return (rewards - leave_one_out_mean(rewards, dim=1)) / rewards.numel()


def _nanstd(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    """The Bessel-corrected standard deviation of the non-NaN entries, as TRL's ``nanstd``."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True).double() if dim is not None else (~torch.isnan(x)).sum().double()
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True) * count / (count - 1)
    return var.sqrt() if keepdim or dim is None else var.sqrt().squeeze(dim)


def group_advantages(rewards: torch.Tensor, scale: str = "group") -> torch.Tensor:
    """GRPO's advantages A = r - the group mean, divided by the group's (``"group"``) or the whole batch's
    (``"batch"``) standard deviation + 1e-4, or not divided (``"none"``). A NaN reward (every reward function
    returned None) is left out of the statistics and gets advantage 0, as in TRL."""
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale must be one of {SCALE_REWARDS}, got {scale!r}")
    rewards = rewards.double()
    centred = rewards - torch.nanmean(rewards, dim=1, keepdim=True)
    if scale == "group":
        centred = centred / (_nanstd(rewards, dim=1, keepdim=True) + STD_EPSILON)
    elif scale == "batch":
        centred = centred / (_nanstd(rewards) + STD_EPSILON)
    return torch.nan_to_num(centred, nan=0.0)


def grpo_coefficients(advantages: torch.Tensor, lengths: torch.Tensor, loss_type: str = "dapo",
                      max_completion_length: int | None = None) -> torch.Tensor:
    """Per-sequence coefficients of GRPO's loss over one generation batch (all M k sequences; ``lengths``:
    each completion's scored tokens):

    - ``"grpo"``: the mean over sequences of each sequence's token mean, A_i / (|o_i| N);
    - ``"dr_grpo"``: A_i / (N max_completion_length);
    - ``"dapo"`` (TRL's default): A_i / (the tokens of every completion in the batch)."""
    advantages, lengths = advantages.double(), lengths.double()
    n = advantages.numel()
    if loss_type == "grpo":
        return advantages / (lengths.clamp(min=1) * n)
    if loss_type == "dr_grpo":
        if not max_completion_length:
            raise ValueError("loss_type dr_grpo needs max_completion_length")
        return advantages / (n * max_completion_length)
    if loss_type == "dapo":
        return advantages / lengths.sum().clamp(min=1)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
