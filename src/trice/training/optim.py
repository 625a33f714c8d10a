"""The optimiser step's pieces: Adam with the reference's cosine decay, and the gradient norm logged each step."""

from __future__ import annotations

import math

import torch


def cosine_schedule(step: int, total: int, final_ratio: float) -> float:
    """Learning-rate factor: cosine decay from 1 to ``final_ratio`` over ``total`` steps.

    >>> cosine_schedule(0, 100, 0.1), cosine_schedule(100, 100, 0.1)
    (1.0, 0.1)
    """
    progress = min(step / max(total, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(params, config) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam at the config's learning rate, decayed by :func:`cosine_schedule` over ``config.steps``, as the
    reference (ALGORITHM.md 3.8)."""
    optimizer = torch.optim.Adam(params, lr=config.resolved_lr())
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_schedule(s, config.steps, config.lr_final_ratio))
    return optimizer, scheduler


def grad_norm(params) -> float:
    """The L2 norm of the parameters' gradients (0 when none has one)."""
    grads = [p.grad.detach().flatten() for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0
