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


@pytest.mark.parametrize("method", ["trice", "pt-direct", "sft-gold", "rloo", "trice-soft", "latro"])
def test_every_method_stops_at_the_same_compute_budget(tmp_path, method):
    """Methods that sample nothing pay for scoring: each stops at the first step that reaches the budget,
    and the logged token-passes are sampled + 3 x scored tokens."""
    summary, records = run(tmp_path, method, method=method, compute_budget=3000)
    steps = [r for r in records if "loss" in r]
    assert summary["steps_done"] < 40 and summary["token_passes"] >= 3000
    assert len(steps) < 2 or steps[-2]["token_passes"] < 3000  # it did not run past the budget
    # trice-soft and latro also run tokens forward without gradient (the answer likelihood): one pass each
    assert all(r["token_passes"] == r["tokens_sampled"] + r.get("tokens_forward", 0) + 3 * r["tokens_scored"]
               for r in steps)
    assert summary["token_passes"] == summary["tokens_sampled"] + summary["tokens_forward"] + 3 * summary["tokens_scored"]
    assert (summary["tokens_forward"] > 0) == (method in ("trice-soft", "latro"))
    if method in ("pt-direct", "sft-gold"):
        assert summary["tokens_sampled"] == 0 < summary["tokens_scored"]


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
    assert evals[-1]["token_passes"] == summary["token_passes"] >= 4000
    assert all(0 <= r["subset_accuracy"] <= 1 for r in evals) and len(summary["verdicts_after"]) == 6


def test_star_does_not_start_an_iteration_the_compute_budget_cannot_pay_for(tmp_path):
    unlimited, records = run(tmp_path, "all", method="star", steps=9, n_eval=0)
    first_iteration = next(r for r in records if r.get("step") == 3 and "loss" in r)["token_passes"]
    budget = int(first_iteration * 1.5)  # one iteration fits, a second would not
    limited, _ = run(tmp_path, "budget", method="star", steps=9, n_eval=0, compute_budget=budget)
    assert unlimited["steps_done"] == 9 and limited["steps_done"] == 3
    assert limited["token_passes"] == first_iteration <= budget
