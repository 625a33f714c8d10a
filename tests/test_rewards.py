"""TRL-style reward functions as checkers (``--reward module:function``): TRL's keywords, the sum of
several rewards, the threshold, None rewards, and the checker isolation (reported once per task)."""

import json
import textwrap
import time
import warnings

import pytest

from trice.config import TrainConfig
from trice.errors import TriceError
from trice.tasks import Example, Task, get_task, task_from_config
from trice.tasks.rewards import RewardChecker, load_rewards, use_rewards

REWARDS = textwrap.dedent("""
    import asyncio
    import time

    CALLS = []

    def has_solution(completions, solution, **kwargs):
        return [1.0 if s in c else 0.0 for c, s in zip(completions, solution)]

    def says_answer(completions, answer, **kwargs):
        return [0.5 if f"answer is {a}" in c else 0.0 for c, a in zip(completions, answer)]

    def keywords(prompts, completions, **kwargs):
        CALLS.append(dict(kwargs, prompts=prompts, completions=completions))
        return [1.0] * len(completions)

    def math_only(completions, kind, **kwargs):
        return [1.0 if k == "math" else None for k in kind]

    def negative(completions, **kwargs):
        return [-1.0 for _ in completions]

    def explodes(completions, **kwargs):
        raise RuntimeError("boom")

    def a_string(completions, **kwargs):
        return ["1.0" for _ in completions]

    def a_scalar(completions, **kwargs):
        return 1.0

    def too_many(completions, **kwargs):
        return [1.0, 1.0]

    def slow(completions, **kwargs):
        time.sleep(2)
        return [1.0]

    async def later(completions, **kwargs):
        await asyncio.sleep(0)
        return [2.0 for _ in completions]
""")


@pytest.fixture
def rewards_file(tmp_path):
    path = tmp_path / "myrewards.py"
    path.write_text(REWARDS)
    return path


@pytest.fixture
def qa(tmp_path):
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1), "solution": f"={i + 1}",
             "kind": "math" if i % 2 else "text"} for i in range(10)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _task(qa, rewards_file, *names, threshold=0.0):
    config = TrainConfig(task=f"jsonl:{qa}", reward=[f"{rewards_file}:{n}" for n in names],
                         reward_threshold=threshold)
    return task_from_config(config)


def test_reward_uses_a_dataset_column(qa, rewards_file):
    task = _task(qa, rewards_file, "has_solution")
    ex = task.train[0]
    assert task.verdict(f"{ex.question} {ex.meta['solution']}", ex) is True
    assert task.verdict("So the answer is nothing.", ex) is False
    assert "reward" in task.checker_name and "has_solution" in task.checker_name


def test_trl_keywords(qa, rewards_file):
    task = use_rewards(get_task(f"jsonl:{qa}"), [f"{rewards_file}:keywords"])
    ex = task.train[0]
    assert task.verdict("z", ex) is True
    (call,) = task.check.funcs[0].__globals__["CALLS"]
    # TRL: prompts, completions, completion_ids, trainer_state and every dataset column as keyword lists
    assert set(call) == {"prompts", "completions", "completion_ids", "trainer_state",
                         "question", "answer", "solution", "kind", "source", "line"}
    assert call["completions"] == ["z"] and call["prompts"] == [ex.question]
    assert call["question"] == [ex.question] and call["answer"] == [ex.answer]
    assert call["solution"] == [ex.meta["solution"]] and call["completion_ids"] is None


def test_hf_columns_under_their_own_names():
    from trice.tasks.hf import HFTask

    seen = []

    def reward(completions, prompt_text, gold, extra, **kwargs):
        seen.append((prompt_text, gold, extra))
        return [1.0]

    rows = [{"prompt_text": "2 + 2?", "gold": 4, "extra": {"a": 1}}] * 2
    task = use_rewards(HFTask({"train": rows, "test": rows}, question_field="prompt_text", answer_field="gold"),
                       [reward])
    assert task.verdict("anything", task.test[0]) and seen == [(["2 + 2?"], ["4"], [{"a": 1}])]


def test_rewards_are_summed_and_thresholded(qa, rewards_file):
    names = ("has_solution", "says_answer")
    ex = get_task(f"jsonl:{qa}").train[0]
    both = f"{ex.meta['solution']} so the answer is {ex.answer}."
    only_answer = f"So the answer is {ex.answer}."
    task = _task(qa, rewards_file, *names)
    assert task.check.score(both, ex) == 1.5 and task.check.score(only_answer, ex) == 0.5
    assert task.verdict(both, ex) and task.verdict(only_answer, ex)  # > 0 by default
    strict = _task(qa, rewards_file, *names, threshold=1.0)
    assert strict.verdict(both, ex) and not strict.verdict(only_answer, ex)
    assert not _task(qa, rewards_file, "negative").verdict(both, ex)  # -1 is not above 0
    weighted = RewardChecker(load_rewards([f"{rewards_file}:{n}" for n in names]), weights=[0.0, 2.0])
    assert weighted.score(both, ex) == 1.0


def test_none_rewards_are_left_out(qa, rewards_file):
    task = _task(qa, rewards_file, "math_only", "says_answer")
    math_ex = next(e for e in task.train if e.meta["kind"] == "math")
    text_ex = next(e for e in task.train if e.meta["kind"] == "text")
    assert task.check.rewards("x", text_ex) == [None, 0.0] and not task.verdict("x", text_ex)
    assert task.check.rewards("x", math_ex) == [1.0, 0.0] and task.verdict("x", math_ex)


def test_async_reward(qa, rewards_file):
    task = _task(qa, rewards_file, "later")
    assert task.check.score("x", task.train[0]) == 2.0


@pytest.mark.parametrize("name, problem", [
    ("explodes", "raised RuntimeError: boom"),
    ("a_string", "raised RewardNotANumber: reward a_string returned str '1.0', not a number"),
    ("a_scalar", "raised RewardNotANumber: reward a_scalar returned float 1.0, not a list"),
    ("too_many", "raised RewardWrongLength: reward too_many returned 2 rewards for 1 completion"),
])
def test_failing_reward_is_wrong_and_reported_once(qa, rewards_file, name, problem):
    task = _task(qa, rewards_file, "has_solution", name)
    good = [f"{e.meta['solution']}" for e in task.train]  # has_solution alone would pass these
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert task.verdicts(good, task.train) == [False] * len(task.train)  # wrong, and the run goes on
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert problem in message and f"{rewards_file}:{name}" in message and "reported once per task" in message


def test_slow_reward_times_out(qa, rewards_file):
    task = _task(qa, rewards_file, "slow")
    task.checker_timeout = 0.2
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert task.verdict("x", task.train[0]) is False and task.verdict("x", task.train[1]) is False
    assert time.perf_counter() - started < 1.5
    assert len(caught) == 1 and "CheckerTimeout" in str(caught[0].message)


def test_reward_applies_to_any_family(rewards_file):
    task = task_from_config(TrainConfig(task="gym/chain_sum", task_options={"n_train": 3, "n_test": 2},
                                        reward=[f"{rewards_file}:later"]))
    ex = task.test[0]
    assert task.verdict("no answer at all", ex) is True  # the reward, not the task's own check
    assert "entry" in task.check.columns(ex)  # reasoning-gym's entry reaches the reward as a column


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:f", r"cannot import reward 'no_such_module_xyz:f': ModuleNotFoundError"),
    ("json:no_such_function", r"reward 'json:no_such_function': module 'json' has no function"),
    ("just_a_name", r"reward 'just_a_name' must look like 'module:function'"),
])
def test_reward_that_cannot_be_loaded(qa, spec, message):
    with pytest.raises(TriceError, match=message) as info:
        task_from_config(TrainConfig(task=f"jsonl:{qa}", reward=[spec]))
    assert "\n" not in str(info.value)


def test_checker_needs_a_function():
    with pytest.raises(TriceError, match="no reward functions"):
        RewardChecker([])
    with pytest.raises(TriceError, match="2 weights for 1 reward functions"):
        RewardChecker([len], weights=[1, 2])
    task = use_rewards(Task("toy", [], []), [lambda completions, **kw: [1]])
    assert task.verdict("x", Example("q", "a")) is True
