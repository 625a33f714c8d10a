"""Leave-one-out baselines: for each entry, a statistic of the *other* entries of its group, which does not
depend on the entry itself, so subtracting it from a score-function term adds no bias. TRICE's beta,
RLOO's and LaTRO's baselines (the mean) and JEPO's (the log-mean-exp) all come from here.

>>> import torch
>>> leave_one_out_mean(torch.tensor([1.0, 0.0, 1.0, 1.0])).tolist()
[0.6666666666666666, 1.0, 0.6666666666666666, 0.6666666666666666]
>>> leave_one_out_mean(torch.tensor([1.0, 0.0, 1.0]), mask=torch.tensor([True, True, False])).tolist()
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import math

import torch


def leave_one_out_mean(values: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """float64 mean of the other valid entries along ``dim``, (sum of valid - x_i) / (n_valid - 1); 0 where
    the entry is not valid (``mask`` False) or no other valid entry exists."""
    values = values.double()
    mask = torch.ones_like(values, dtype=torch.bool) if mask is None else mask.bool()
    valid = values * mask
    count = mask.sum(dim, keepdim=True).double()
    others = (valid.sum(dim, keepdim=True) - valid) / (count - 1).clamp(min=1)
    return torch.where(mask & (count > 1), others, torch.zeros_like(others))


def leave_one_out_logmeanexp(values: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of the mean of exp(x_j) over the other entries j != i along ``dim`` (k >= 2 entries), in float64.

    >>> leave_one_out_logmeanexp(torch.tensor([[0.0, 0.0, 3.0]])).exp().tolist()  # doctest: +ELLIPSIS
    [[10.54..., 10.54..., 1.0]]
    """
    values = values.double().movedim(dim, -1)
    k = values.shape[-1]
    others = torch.stack([torch.logsumexp(torch.cat([values[..., :i], values[..., i + 1:]], -1), -1)
                          for i in range(k)], -1) - math.log(k - 1)
    return others.movedim(-1, dim)
