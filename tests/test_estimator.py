"""ALGORITHM.md section 3 on hand-worked minibatches, edge cases, and systematic resampling."""

import math

import pytest
import torch

from trice.estimators.trice import (cv_coefficients, estimator_terms, merge_duplicates,
                             subsample_terms, systematic_resample, trice_weights)

T, F = True, False


def weights_of(proposal_correct, memory_correct):
    return trice_weights(torch.tensor(proposal_correct), torch.tensor(memory_correct))


def test_hand_worked_minibatch_matches_the_table():
    # c~ = [T, F, F, T, F], c = [F, T, F, T, T]: Mv = 4, sum c~ = 2, beta_m = (2 - c~_m) / 3.
    weights, signs, beta, mask = weights_of([T, F, F, T, F], [F, T, F, T, T])
    assert mask.tolist() == [T, T, F, T, T]
    assert beta.tolist() == pytest.approx([1 / 3, 2 / 3, 0, 1 / 3, 2 / 3])
    # memory terms: accepted 1 - beta, rejected-but-covered 1, neither 0
    assert weights[:5].tolist() == pytest.approx([2 / 3, 1, 0, 2 / 3, 1])
    # proposal terms: only rejected-but-covered get beta
    assert weights[5:].tolist() == pytest.approx([0, 2 / 3, 0, 0, 2 / 3])
    assert signs.tolist() == [1] * 5 + [-1] * 5
    coefs = cv_coefficients(weights, signs, mask)
    assert coefs.tolist() == pytest.approx([w / 4 for w in [2 / 3, 1, 0, 2 / 3, 1]]
                                           + [-w / 4 for w in [0, 2 / 3, 0, 0, 2 / 3]])


@pytest.mark.parametrize("proposal, memory, expected_w, expected_beta", [
    ([F, F, F], [F, F, F], [0] * 6, [0, 0, 0]),             # Mv = 0: nothing to learn from
    ([F, F], [T, F], [1, 0, 0, 0], [0, 0]),                   # Mv = 1, rejected: beta 0
    ([T, F], [F, F], [1, 0, 0, 0], [0, 0]),                   # Mv = 1, accepted: weight 1 - 0
    ([T, T, T], [F, T, F], [0] * 6, [1, 1, 1]),               # all accepted: beta 1, all weights 0
    ([F, F, F], [T, T, T], [1, 1, 1, 0, 0, 0], [0, 0, 0]),    # none accepted: no control variate
    ([T, F], [T, T], [1, 1, 0, 1], [0, 1]),                   # M = 2, leave-one-out
])
def test_edge_cases(proposal, memory, expected_w, expected_beta):
    weights, signs, beta, mask = weights_of(proposal, memory)
    assert weights.tolist() == pytest.approx(expected_w)
    assert beta.tolist() == pytest.approx(expected_beta)
    assert torch.isfinite(weights).all() and torch.isfinite(beta).all()
    assert (weights >= 0).all()
    assert torch.isfinite(cv_coefficients(weights, signs, mask)).all()


def test_no_valid_example_or_zero_weights_give_zero_gradient():
    for proposal, memory in [([F, F, F], [F, F, F]), ([T, T, T], [T, F, F])]:
        weights, signs, _, mask = weights_of(proposal, memory)
        indices, term_weights = subsample_terms(weights, signs, mask, 4)
        assert indices.numel() == 0 and term_weights.numel() == 0
        for estimator in ("trice", "trice-full"):
            terms = estimator_terms(torch.tensor(proposal), torch.tensor(memory), estimator, 4)
            assert terms.coefs.abs().sum() == 0


@pytest.mark.parametrize("num_samples", [1, 3, 10, 25])
def test_subsample_sizes_smaller_and_larger_than_2m(num_samples):
    weights, signs, _, mask = weights_of([T, F, F, T, F], [F, T, F, T, T])
    indices, term_weights = subsample_terms(weights, signs, mask, num_samples,
                                            torch.Generator().manual_seed(0))
    assert indices.shape == (num_samples,)
    total = float(weights.sum())
    assert term_weights.tolist() == pytest.approx((signs[indices] * total / 4).tolist())
    assert (weights[indices] > 0).all()  # zero-weight terms are never drawn


def test_merge_duplicates_sums_and_drops_zero():
    terms = merge_duplicates(torch.tensor([3, 1, 3, 2, 2]), torch.tensor([0.5, 1.0, 0.5, 1.0, -1.0]))
    assert terms.indices.tolist() == [1, 3] and terms.coefs.tolist() == [1.0, 1.0]


def test_basic_estimator_weights_covered_memory_by_one_over_m():
    terms = estimator_terms(torch.tensor([T, F, F, F]), torch.tensor([F, T, F, F]), "trice-nocv")
    assert terms.indices.tolist() == [0, 1] and terms.coefs.tolist() == [0.25, 0.25]


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        trice_weights(torch.tensor([T, F]), torch.tensor([T]))
    with pytest.raises(ValueError):
        systematic_resample(torch.tensor([0.0, 0.0]), 3)
    with pytest.raises(ValueError):
        systematic_resample(torch.tensor([0.5, 0.5]), 0)
    with pytest.raises(ValueError):
        estimator_terms(torch.tensor([T]), torch.tensor([T]), "nope", 1)


# --- systematic resampling ------------------------------------------------------------------
def test_systematic_resampling_counts_are_floor_or_ceil_and_skip_zeros():
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        size = int(torch.randint(1, 12, (1,), generator=g))
        probs = torch.rand(size, generator=g, dtype=torch.float64)
        probs[torch.rand(size, generator=g) < 0.3] = 0.0
        if probs.sum() == 0:
            probs[0] = 1.0
        probs /= probs.sum()
        num_samples = int(torch.randint(1, 40, (1,), generator=g))
        counts = torch.bincount(systematic_resample(probs, num_samples, g), minlength=size)
        expected = num_samples * probs
        assert counts.sum() == num_samples
        assert ((counts >= torch.floor(expected - 1e-9)) & (counts <= torch.ceil(expected + 1e-9))).all()
        assert (counts[probs == 0] == 0).all()


def test_systematic_resampling_frequencies_match_probs():
    # 20,000 independent draws of L = 3 from P: each count is a sum of bounded independent terms,
    # so the empirical frequency is within 4 standard errors of P (per index, fixed seed).
    probs = torch.tensor([0.05, 0.0, 0.4, 0.15, 0.3, 0.1], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    draws, num_samples = 20_000, 3
    counts = torch.zeros(len(probs), dtype=torch.float64)
    for _ in range(draws):
        counts += torch.bincount(systematic_resample(probs, num_samples, g), minlength=len(probs))
    freq = counts / (draws * num_samples)
    stderr = torch.sqrt(probs * (1 - probs) / (draws * num_samples)) + 1e-12
    assert freq[1] == 0
    assert ((freq - probs).abs() <= 4 * stderr + 1e-12).all(), (freq, probs)


def test_systematic_resampling_is_reproducible_with_a_seeded_generator():
    probs = torch.tensor([0.2, 0.3, 0.5])
    a = systematic_resample(probs, 7, torch.Generator().manual_seed(5))
    b = systematic_resample(probs, 7, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and math.isclose(float(probs.sum()), 1.0)
