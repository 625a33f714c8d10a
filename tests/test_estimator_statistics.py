"""Statistical proofs on the enumerable model (fixed seeds, stated tolerances).

z-tests are per coordinate of the gradient; with D coordinates and |z| <= 4.5 the chance of a false
alarm for an unbiased estimator is below D * 7e-6 (Bonferroni), so a failure means a real bias.
"""

import pytest
import torch

from trice.enumerable import EnumerableModel, gradient_draws, with_acceptance_rate
from trice.estimators.trice import estimator_terms, trice_weights

Z_MAX = 4.5


def z_scores(draws: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|mean - target| / standard error, per coordinate.

    Where every draw is the same (zero spread) the score is 0 on exact agreement (up to 1e-12),
    else infinite.
    """
    mean, stderr = draws.mean(0), draws.std(0) / len(draws) ** 0.5
    diff = (mean - target.flatten()).abs()
    constant = stderr < 1e-12
    exact = torch.where(diff < 1e-12, 0.0, float("inf"))
    return torch.where(constant, exact, diff / stderr.clamp_min(1e-12))


def fixed_step():
    """A fixed minibatch (memory and proposals already drawn) covering every case of the table."""
    model = EnumerableModel.random(num_questions=6, num_rationales=5, seed=7)
    g = torch.Generator().manual_seed(0)
    q = torch.arange(6)
    correct_z = model.correct.float().argmax(-1)        # a correct rationale per question
    wrong_z = (~model.correct).float().argmax(-1)        # a wrong one (each row has one here)
    assert (~model.correct).any(-1).all()
    proposal_correct = torch.tensor([True, False, False, True, False, True])
    memory_correct = torch.tensor([False, True, False, True, True, False])
    proposals = torch.where(proposal_correct, correct_z, wrong_z)
    memory = torch.where(memory_correct, correct_z, wrong_z)
    updated = torch.where(proposal_correct, proposals, memory)
    grads = model.grad_log_prob(torch.cat([q, q]), torch.cat([updated, proposals])).flatten(1)
    return grads, proposal_correct, memory_correct, g


def draw_mean(grads, terms):
    return (terms.coefs.double()[:, None] * grads[terms.indices]).sum(0)


def test_closed_form_score_function_matches_autograd():
    for features in (None, 3):
        model = EnumerableModel.random(4, 5, seed=2, num_features=features)
        q, z = torch.tensor([0, 3, 1]), torch.tensor([4, 0, 2])
        closed = model.grad_log_prob(q, z)
        for b in range(3):
            (auto,) = torch.autograd.grad(model.log_probs()[q[b], z[b]], model.theta)
            assert torch.allclose(closed[b], auto, atol=1e-12)


def test_subsampled_estimator_is_unbiased_for_the_full_cv_estimator():
    grads, proposal_correct, memory_correct, g = fixed_step()
    full = draw_mean(grads, estimator_terms(proposal_correct, memory_correct, "trice-full"))
    draws = torch.stack([draw_mean(grads, estimator_terms(proposal_correct, memory_correct,
                                                          "trice", 3, g)) for _ in range(10_000)])
    assert z_scores(draws, full).max() < Z_MAX


def test_drawing_terms_proportional_to_exp_w_is_detected_as_biased():
    """The reference notebook's rule (resampling from log_softmax(w), i.e. P ∝ exp(w)) is biased."""
    grads, proposal_correct, memory_correct, g = fixed_step()
    full = draw_mean(grads, estimator_terms(proposal_correct, memory_correct, "trice-full"))
    weights, signs, _, mask = trice_weights(proposal_correct, memory_correct)
    probs = torch.softmax(weights.double(), 0)
    total, num_valid, num_samples = float(weights.sum()), int(mask.sum()), 3
    draws = []
    for _ in range(10_000):
        idx = torch.multinomial(probs, num_samples, replacement=True, generator=g)
        draws.append((signs[idx].double() * total / num_valid / num_samples)[:, None].mul(grads[idx]).sum(0))
    assert z_scores(torch.stack(draws), full).max() > 3 * Z_MAX


@pytest.mark.parametrize("estimator, num_samples, features", [
    ("trice-full", None, None), ("trice", 4, None), ("trice", 4, 3), ("trice-nocv", None, None)])
def test_expectation_equals_the_exact_gradient_with_posterior_memory(estimator, num_samples, features):
    model = EnumerableModel.random(num_questions=5, num_rationales=4, seed=11, num_features=features)
    draws = gradient_draws(model, 20_000, estimator, num_samples, seed=3)
    assert z_scores(draws, model.exact_gradient()).max() < Z_MAX
    # and it is not trivially zero: the exact gradient is many standard errors away from 0
    assert z_scores(draws, torch.zeros_like(model.theta)).max() > 10


def test_a_wrong_memory_is_detected_by_the_same_test():
    """Power check: with the memory drawn from the prior instead of the posterior, the test fails."""
    model = EnumerableModel.random(num_questions=5, num_rationales=4, seed=11)
    prior = model.log_probs().detach().exp()
    draws = gradient_draws(model, 20_000, "trice-full", seed=3, memory_probs=prior)
    assert z_scores(draws, model.exact_gradient()).max() > 2 * Z_MAX


@pytest.mark.parametrize("rate, max_ratio", [(0.5, 0.97), (0.7, 0.85), (0.9, 0.5)])
def test_control_variate_lowers_variance_at_high_acceptance(rate, max_ratio):
    """Total variance (trace of the covariance) of CV over basic, 6,000 draws each.

    Measured ratios (benchmarks/variance_vs_acceptance.py): ~0.91 at 0.5, ~0.74 at 0.7, ~0.35 at
    0.9; the bounds leave a margin of several relative standard errors (~2.5% each at 6,000 draws).
    """
    model = with_acceptance_rate(EnumerableModel.random(8, 6, seed=3, correct_fraction=0.3), rate)
    acceptance = (model.log_probs().exp() * model.correct).sum(-1)
    assert torch.allclose(acceptance, torch.full_like(acceptance, rate))
    cv = gradient_draws(model, 6_000, "trice-full", seed=1).var(0).sum()
    basic = gradient_draws(model, 6_000, "trice-nocv", seed=1).var(0).sum()
    assert cv / basic < max_ratio
