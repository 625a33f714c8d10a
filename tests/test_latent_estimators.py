"""trice-soft, JEPO and LaTRO on the enumerable model with a soft answer likelihood (fixed seeds).

As in test_estimator_statistics: per-coordinate z-tests with |z| <= 4.5 (Bonferroni over the coordinates
keeps a false alarm below D * 7e-6), plus a power check that the test detects a real bias.
"""

import pytest
import torch

from test_estimator_statistics import Z_MAX, z_scores
from trice.enumerable.soft import SoftModel, soft_gradient_draws
from trice.estimators.trice import trice_weights
from trice.estimators.likelihood import (jepo_coefficients, latro_coefficients, soft_acceptance, soft_mh_step,
                                     soft_weights)


def test_closed_form_score_functions_match_autograd():
    model = SoftModel.random(3, 4, seed=1)
    q, z = torch.tensor([0, 2, 2]), torch.tensor([3, 1, 0])
    rc, ac = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 0.3, -0.7])
    objective = (rc * model.log_probs()[q, z]).sum() + (ac * model.loglik()[q, z]).sum()
    assert torch.allclose(model.grads(q, z, rc, ac), model.gradient(objective), atol=1e-12)


def test_soft_acceptance_is_the_mh_ratio():
    proposal = torch.tensor([0.2, 0.8, 0.0, 0.5]).log()
    memory = torch.tensor([0.4, 0.4, 0.0, 0.0]).log()
    assert soft_acceptance(proposal, memory).tolist() == pytest.approx([0.5, 1.0, 0.0, 1.0])
    g = torch.Generator().manual_seed(0)
    accepted = torch.stack([soft_mh_step(proposal, memory, g)[1] for _ in range(4000)]).double().mean(0)
    assert accepted[0] == pytest.approx(0.5, abs=4 * (0.25 / 4000) ** 0.5) and accepted[1:].tolist() == [1, 0, 1]


def test_trice_soft_reduces_to_trice_with_a_zero_one_likelihood():
    g = torch.Generator().manual_seed(5)
    for _ in range(300):
        memory_correct = torch.rand(9, generator=g) < 0.5
        proposal_correct = torch.rand(9, generator=g) < 0.4
        as_loglik = lambda c: torch.where(c, 0.0, float("-inf")).double()
        alpha, accepted = soft_mh_step(as_loglik(proposal_correct), as_loglik(memory_correct), g)
        assert torch.equal(accepted, proposal_correct)  # accept iff correct
        updated = torch.where(accepted, as_loglik(proposal_correct), as_loglik(memory_correct))
        soft = soft_weights(alpha, accepted, updated)
        hard = trice_weights(proposal_correct, memory_correct)
        for a, b in zip(soft, hard):
            assert torch.equal(a.double(), b.double()) if a.dtype != torch.bool else torch.equal(a, b)


@pytest.mark.parametrize("estimator, objective", [
    ("trice-soft", lambda m: m.marginal_loglik()),
    ("jepo", lambda m: m.jensen_bound(3)),
    ("latro", lambda m: m.latro_objective(0.05))])
def test_expectation_equals_the_gradient_of_the_claimed_objective(estimator, objective):
    model = SoftModel.random(4, 3, seed=2)
    model.theta0 = model.theta0 + torch.randn(model.theta0.shape, generator=torch.Generator().manual_seed(9),
                                              dtype=torch.float64)  # p_0 != p, so the KL term is live
    draws = soft_gradient_draws(model, 20_000, estimator, k=3, kl=0.05, seed=4)
    exact = model.gradient(objective(model))
    assert z_scores(draws, exact).max() < Z_MAX
    assert z_scores(draws, torch.zeros_like(exact)).max() > 10  # and it is far from trivially zero


def test_with_a_zero_one_likelihood_trice_soft_is_trices_gradient():
    """With l in {0, 1} (psi = +-30) trice-soft's expectation is the gradient of TRICE's objective,
    log sum_z p(z | x) c(z, y), in theta (psi's gradient vanishes at saturation)."""
    model = SoftModel.random(4, 4, seed=6, hard=True)
    draws = soft_gradient_draws(model, 20_000, "trice-soft", seed=1)
    correct = model.psi.detach() > 0
    hard = torch.logsumexp(model.log_probs().masked_fill(~correct, float("-inf")), -1).mean()
    (exact_theta,) = torch.autograd.grad(hard, model.theta)
    n = model.theta.numel()
    assert z_scores(draws[:, :n], exact_theta).max() < Z_MAX
    assert draws[:, n:].abs().max() < 1e-9


def test_a_memory_not_from_the_posterior_is_detected():
    """Power check: trice-soft with the memory drawn from p (not ∝ p l) fails the same test."""
    model = SoftModel.random(4, 3, seed=2)
    prior = model.log_probs().detach().exp()
    draws = soft_gradient_draws(model, 20_000, "trice-soft", seed=4, memory_probs=prior)
    assert z_scores(draws, model.gradient(model.marginal_loglik())).max() > 2 * Z_MAX


def test_the_leave_one_out_baselines_do_not_depend_on_their_own_sample():
    """Recover each sample's baseline b_i from the coefficients (JEPO: coef_i M = bound - b_i; LaTRO:
    coef_i k M = r_i - b_i): changing sample 1's likelihood leaves b_1 alone and moves b_0 and b_2."""
    loglik = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
    bumped = loglik.clone()
    bumped[0, 1] = -0.1
    zeros = torch.zeros_like(loglik)

    def jepo_baseline(l):
        return torch.logsumexp(l, 1, keepdim=True) - torch.log(torch.tensor(3.0)) - jepo_coefficients(l).rationale

    def latro_baseline(l):
        return l - 3 * latro_coefficients(l, zeros, zeros).rationale

    for baseline in (jepo_baseline, latro_baseline):
        before, after = baseline(loglik)[0], baseline(bumped)[0]
        assert after[1] == pytest.approx(float(before[1]), abs=1e-12)
        assert abs(float(after[0] - before[0])) > 0.1 and abs(float(after[2] - before[2])) > 0.1
