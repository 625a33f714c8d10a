"""Every method trains through the one loop on a tiny random model (issue 5, must-show 1)."""

import json

import pytest
import torch

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.methods import METHODS
from trice.estimators.policy_gradient import rejection_sampling_coefficients, rloo_coefficients


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("params", ["prompt", "lora"])
def test_each_method_changes_trainable_and_only_trainable_parameters(tmp_path, method, params):
    model, tok = make_tiny_lm(0)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainConfig(method=method, params=params, steps=4, batch_size=4, subsample=4, k=2,
                         star_inner_steps=2, max_new_tokens=6, n_eval=2, lr=0.05, threads=1,
                         out=str(tmp_path / "run"))
    from trice.training import loop as trainer

    captured = {}
    original = trainer.Policy.create

    def create(*args, **kwargs):
        policy = original(*args, **kwargs)
        captured["initial"] = [p.detach().clone() for p in policy.trainable_parameters()]
        captured["policy"] = policy
        return policy

    trainer.Policy.create = create
    try:
        summary = train(config, model=model, tokenizer=tok, task=coin_task(10, 4, gold=True))
    finally:
        trainer.Policy.create = original
    after = [p.detach() for p in captured["policy"].trainable_parameters()]
    changed = [not torch.equal(a, b) for a, b in zip(after, captured["initial"])]
    if method == "fewshot-cot":
        assert not any(changed)
    elif params == "prompt":
        assert all(changed)
    else:  # LoRA: every adapter tensor moves after two or more steps (B starts at 0)
        assert all(changed), [n for (n, p), c in zip(captured["policy"].model.named_parameters(), changed) if not c]
    for name, p in model.named_parameters():
        if name in base_before:
            assert torch.equal(p.detach(), base_before[name]), name
    assert summary["method"] == method
    # training-set coverage: TRICE's memory and STaR's kept set report it, the others have none
    has_coverage = method.startswith(("trice", "star"))
    assert (summary["memory_coverage"] is not None) == has_coverage
    if has_coverage:
        assert 0 <= summary["memory_coverage"] <= 1
    steps = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum("loss" in s for s in steps) == (0 if method == "fewshot-cot" else 4)
    if method == "star":  # the collection's accuracy; hint-rationalised examples only add to the coverage
        assert all(0 <= s["proposal_accuracy"] <= s["memory_coverage"] for s in steps if "loss" in s)


def test_rloo_and_rs_coefficients():
    reward = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    rloo = rloo_coefficients(reward) * reward.numel()  # (the 1 / (k M) aside)
    assert rloo[0].tolist() == pytest.approx([1 - 1 / 3, -2 / 3, -2 / 3, 1 - 1 / 3])
    assert rloo[1].abs().sum() == 0  # a group with no reward difference gives no gradient
    assert rloo.sum(1).tolist() == pytest.approx([0.0, 0.0])  # leave-one-out advantages sum to 0
    assert (rejection_sampling_coefficients(reward) * reward.numel()).tolist() == reward.tolist()


def test_star_does_not_start_an_iteration_the_token_budget_cannot_pay_for(tmp_path):
    """With room for one collection but not two, STaR does not collect again (which would reset it to theta_0
    and be cut a step later): its first iteration goes on fine-tuning on its kept set until the run ends."""
    def run(budget, out):
        model, tok = make_tiny_lm(0)
        config = TrainConfig(method="star", params="lora", steps=9, batch_size=4, star_inner_steps=3,
                             max_new_tokens=6, n_eval=0, lr=0.05, threads=1, token_budget=budget,
                             out=str(tmp_path / out))
        return train(config, model=model, tokenizer=tok, task=coin_task(10, 4, gold=True))

    unlimited = run(None, "all")
    first_collection = json.loads((tmp_path / "all" / "metrics.jsonl").read_text().splitlines()[1])["tokens_sampled"]
    assert unlimited["steps_done"] == 9 and unlimited["tokens_sampled"] > 2 * first_collection
    budget = int(first_collection * 1.5)  # one collection fits, a second would not
    limited = run(budget, "budget")
    steps = [json.loads(line) for line in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    assert limited["steps_done"] == 9 and [s["step"] for s in steps if s["outer_restart"]] == [1]
    assert limited["tokens_sampled"] == first_collection <= budget
    assert all(s["sequences_scored"] > 0 for s in steps)  # every step trained on the kept set


def test_trice_auto_rule_uses_past_steps_only():
    """trice-auto's estimator: the basic one until the mean proposal accuracy of the last 10 steps reaches 0.7."""
    from trice.methods.trice import AUTO_THRESHOLD, AUTO_WINDOW, auto_estimator

    assert (AUTO_THRESHOLD, AUTO_WINDOW) == (0.7, 10)
    assert auto_estimator([]) == "trice-nocv"  # nothing measured yet
    assert auto_estimator([0.69] * 10) == "trice-nocv" and auto_estimator([0.7] * 10) == "trice"
    assert auto_estimator([1.0] * 3 + [0.6] * 10) == "trice-nocv"  # only the last 10 steps count
    assert auto_estimator([0.0] * 20 + [0.8] * 10) == "trice"


@pytest.mark.parametrize("threshold, expected", [(0.0, [False, True, True, True]), (1.01, [False] * 4)])
def test_trice_auto_switches_estimator_by_running_acceptance(tmp_path, monkeypatch, threshold, expected):
    """Step 1 has no measured rate (basic estimator); after it the control variate is used exactly when the
    running rate reaches the threshold; the running rate is part of the resumable state."""
    import trice.methods.trice as trice_method

    monkeypatch.setattr(trice_method, "AUTO_THRESHOLD", threshold)
    model, tok = make_tiny_lm(0)
    config = TrainConfig(method="trice-auto", params="lora", steps=4, batch_size=4, subsample=3, max_new_tokens=6,
                         n_eval=0, lr=0.05, threads=1, out=str(tmp_path / "run"))
    train(config, model=model, tokenizer=tok, task=coin_task(10, 4, gold=True))
    steps = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s]
    assert [s["control_variate"] for s in steps] == expected
    # the basic estimator scores the M memory terms; the paper's the L = 3 subsampled ones
    assert [s["num_terms"] <= (3 if cv else 4) for s, cv in zip(steps, expected)] == [True] * 4
    from trice.methods.memory import Memory

    method = trice_method.TriceMethod("trice-auto")
    method.load_state_dict({"memory": Memory(1).state_dict(), "recent_acceptance": [0.5, 1.0]})
    assert method.state_dict()["recent_acceptance"] == [0.5, 1.0]
