"""Checker isolation and the non-finite-step guard (issue 7)."""

import json
import time
import warnings

import pytest

from tiny import make_tiny_lm
from trice import TrainConfig, TriceError, train
from trice.tasks import Example, Task


class Flaky(Task):
    def __init__(self, behaviour):
        super().__init__("flaky", [Example("q", "a")], [])
        self.behaviour = behaviour

    def check(self, rationale, example):
        return self.behaviour(rationale)


def boom(text):
    raise ZeroDivisionError("bad checker")


def slow(text):
    time.sleep(5)
    return True


@pytest.mark.parametrize("behaviour, message", [(boom, "ZeroDivisionError"), (lambda t: "yes", "not a bool"),
                                                (lambda t: 1, "not a bool")])
def test_a_failing_checker_counts_wrong_and_is_reported_once(behaviour, message):
    task = Flaky(behaviour)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdicts = [task.verdict("So the answer is a.", task.train[0]) for _ in range(5)]
    assert verdicts == [False] * 5
    assert len(caught) == 1 and message in str(caught[0].message)


def test_a_slow_checker_times_out_as_wrong():
    task = Flaky(slow)
    task.checker_timeout = 0.2
    start = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="CheckerTimeout"):
        assert task.verdict("x", task.train[0]) is False
    assert time.perf_counter() - start < 2


def test_good_checkers_pass_through():
    assert Flaky(lambda t: True).verdict("x", Example("q", "a")) is True
    assert Flaky(lambda t: False).verdict("x", Example("q", "a")) is False


class Coin(Task):
    def is_correct(self, rationale, answer):
        return sum(map(ord, rationale)) % 2 == 0


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    from trice.modeling import scoring as scorer

    real_score = scorer.score
    calls = []

    def score(policy, prompts, continuations):  # finite for the first update, NaN after it
        calls.append(1)
        log_probs = real_score(policy, prompts, continuations)
        return log_probs if len(calls) == 1 else log_probs * float("nan")

    monkeypatch.setattr(scorer, "score", score)
    model, tok = make_tiny_lm(0)
    task = Coin("coin", [Example(f"{i} =", str(i)) for i in range(8)], [Example("9 =", "9")],
                exemplars=[Example("1 =", "1", rationale="So the answer is 1.")])
    config = TrainConfig(params="lora", lr=1e-3, steps=20, batch_size=4, subsample=4, max_new_tokens=4,
                         n_eval=1, threads=1, max_bad_steps=2, out=str(tmp_path / "run"))
    with pytest.raises(TriceError, match="2 steps in a row had a non-finite loss or gradient"):
        train(config, model=model, tokenizer=tok, task=task)
    rows = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in rows if r.get("skipped")]
    # (a step with nothing to score is finite and resets the count, so earlier skips may be isolated)
    assert len(skipped) >= 2 and skipped[-1]["step"] == skipped[-2]["step"] + 1 == rows[-1]["step"] < 20
    assert len(calls) >= 3
    assert (tmp_path / "run" / "checkpoints").is_dir()  # the state at the error is kept
