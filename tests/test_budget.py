"""The compute budget in token-passes and the learning curve along it (issue 15 items 1-2)."""

import json

import pytest

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.training.budget import PASSES_PER_SCORED_TOKEN, token_passes


def run(tmp_path, name, **overrides):
    model, tok = make_tiny_lm(0)
    options = dict(params="lora", steps=40, batch_size=4, subsample=4, k=2, star_inner_steps=3, max_new_tokens=6,
                   n_eval=6, lr=0.05, threads=1, checkpoint_every=0, out=str(tmp_path / name))
    summary = train(TrainConfig(**{**options, **overrides}), model=model, tokenizer=tok,
                    task=coin_task(10, 6, gold=True))
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return summary, records


def test_token_passes_charge_scoring_three_times_sampling():
    assert PASSES_PER_SCORED_TOKEN == 3 and token_passes(100, 0) == 100 and token_passes(100, 10) == 130


@pytest.mark.parametrize("method", ["trice", "pt-direct", "sft-gold", "rloo", "grpo", "trice-soft", "latro"])
def test_every_method_stops_before_a_step_its_budget_cannot_pay_for(tmp_path, method):
    """Methods that sample nothing pay for scoring. A step starts only when its predicted cost (the mean of the
    latest 5 steps' costs) fits in what is left, so each run ends within about one step of the budget, under it
    unless a step costs more than predicted; the logged token-passes are sampled + 3 x scored tokens."""
    from trice.training.budget import COST_WINDOW

    budget = 20000 if method in ("trice-soft", "latro") else 6000  # (their steps cost several of the others')
    summary, records = run(tmp_path, method, method=method, compute_budget=budget, steps=400)
    steps = [r for r in records if "loss" in r]
    spent = [next(r["token_passes"] for r in records if r.get("event") == "init")] + [r["token_passes"] for r in steps]
    costs = [b - a for a, b in zip(spent, spent[1:])]
    assert 1 < summary["steps_done"] < 400 and summary["token_passes"] == spent[-1]
    for i in range(1, len(steps) + 1):  # step i started because the mean of the costs before it fitted
        recent = costs[max(0, i - 1 - COST_WINDOW):i - 1]
        assert spent[i - 1] + (sum(recent) / len(recent) if recent else 0) <= budget
    recent = costs[-COST_WINDOW:]
    assert spent[-1] + sum(recent) / len(recent) > budget  # and the run ended for the budget, not the step count
    assert budget - max(costs) <= spent[-1] <= budget + max(costs) - min(costs)
    # trice-soft and latro also run tokens forward without gradient (the answer likelihood): one pass each
    assert all(r["token_passes"] == r["tokens_sampled"] + r.get("tokens_forward", 0) + 3 * r["tokens_scored"]
               for r in steps)
    assert summary["token_passes"] == summary["tokens_sampled"] + summary["tokens_forward"] + 3 * summary["tokens_scored"]
    assert (summary["tokens_forward"] > 0) == (method in ("trice-soft", "latro"))
    if method in ("pt-direct", "sft-gold"):
        assert summary["tokens_sampled"] == 0 < summary["tokens_scored"]


def test_a_single_step_dearer_than_the_budget_runs_and_says_why_the_budget_was_passed(tmp_path):
    """The first step has nothing to predict its cost from, so it starts even when it alone costs more than
    the budget; the run then warns, naming what it spent and the budget, and stops after that step."""
    with pytest.warns(RuntimeWarning, match=r"one step took it to [\d,]+ token_passes, past its budget of 50"):
        summary, _ = run(tmp_path, "latro", method="latro", compute_budget=50, steps=400)
    assert summary["steps_done"] == 1 and summary["token_passes"] > 50


def test_overshoot_speaks_only_for_a_limited_run_past_its_budget_after_one_step():
    from types import SimpleNamespace as NS
    from trice.training.budget import Budget

    def budget(step, passes, compute_budget=1000):
        config = NS(time_budget=None, compute_budget=compute_budget, token_budget=None, steps=10)
        return Budget(config, NS(tokens=passes), NS(step=step, tokens_scored=0, tokens_forward=0, step_costs=[]))

    assert "one step took it to 1,300 token_passes, past its budget of 1,000" in budget(1, 1300).overshoot()
    assert budget(1, 900).overshoot() is None  # within the budget
    assert budget(2, 1300).overshoot() is None  # a later step passed it: the prediction's doing, not this
    assert budget(1, 1300, compute_budget=None).overshoot() is None  # no budget: the step count ends the run


def test_tokens_scored_count_prompt_and_continuation_tokens(tmp_path, monkeypatch):
    from trice.modeling import scoring as scorer

    seen = []
    real = scorer.score

    def score(policy, prompts, continuations, **kw):
        seen.extend(len(p) + len(c) for p, c in zip(prompts, continuations))  # the tiny tokenizer: 1 char = 1 token
        return real(policy, prompts, continuations, **kw)

    monkeypatch.setattr(scorer, "score", score)
    summary, _ = run(tmp_path, "count", method="pt-direct", steps=3)
    assert summary["tokens_scored"] == sum(seen) > 0


def test_learning_curve_points_along_the_budget(tmp_path):
    """eval_points = 4: subset evaluations once 1/4, 2/4 and 3/4 of the budget are spent, in order, on the
    first eval_subset questions; full evaluations before and at the end, with the subset's accuracy."""
    summary, records = run(tmp_path, "curve", method="trice", compute_budget=4000, eval_points=4, eval_subset=3)
    evals = [r for r in records if r.get("event") == "eval"]
    curve = [r for r in evals if "curve_point" in r]
    assert [r["curve_point"] for r in curve] == [1, 2, 3]
    assert all(r["n_eval"] == 3 and r["budget_spent"] >= r["curve_point"] / 4 for r in curve)
    passes = [r["token_passes"] for r in evals]
    assert passes == sorted(passes) and evals[0]["n_eval"] == evals[-1]["n_eval"] == 6
    assert evals[-1]["token_passes"] == summary["token_passes"] and 3000 < summary["token_passes"] <= 4500
    assert all(0 <= r["subset_accuracy"] <= 1 for r in evals) and len(summary["verdicts_after"]) == 6


def test_star_does_not_start_an_iteration_the_compute_budget_cannot_pay_for(tmp_path):
    """One iteration fits, a second would not: STaR's first iteration trains on (no second collection)
    until the next step would pass the budget, and ends within about one step of it."""
    unlimited, records = run(tmp_path, "all", method="star", steps=9, n_eval=0)
    first_iteration = next(r for r in records if r.get("step") == 3 and "loss" in r)["token_passes"]
    budget = int(first_iteration * 1.5)
    limited, steps = run(tmp_path, "budget", method="star", steps=40, n_eval=0, compute_budget=budget)
    steps = [r for r in steps if "loss" in r]
    assert unlimited["steps_done"] == 9 and 3 < limited["steps_done"] < 40
    assert [r["step"] for r in steps if r["outer_restart"]] == [1]
    inner = steps[-1]["token_passes"] - steps[-2]["token_passes"]
    assert budget - 2 * inner < limited["token_passes"] <= budget
