"""BIG-Bench Hard: loading, the per-task 60/40 split, CoT exemplars, and the answer check.

The loader is tested anywhere on small synthetic files in the BIG-Bench-Hard layout
(tests/fixtures/data/bbh: three tasks of toy questions and cot-prompts written for these tests). The
checks against the real data run where $TRICE_DATA_DIR names a directory holding bbh/ (the 27 task
files and cot-prompts/; never copied into the project) and are skipped, saying so, elsewhere. The
check itself, case by case against lm-evaluation-harness's rule, is in tests/test_bbh_check.py.
"""

import json
import os
import re
import sys
import types
from pathlib import Path

import pytest

from trice.errors import TriceError
from trice.tasks import get_task
from trice.tasks.bbh import TASKS, BBHTask, parse_cot_prompt

from test_bbh_check import lm_eval_verdict

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"  # synthetic, in the BIG-Bench-Hard layout
DATA = Path(os.environ["TRICE_DATA_DIR"]).expanduser() if os.environ.get("TRICE_DATA_DIR") else None
BBH = DATA / "bbh" if DATA is not None else None
needs_data = pytest.mark.skipif(
    BBH is None or not (BBH / "cot-prompts").is_dir(),
    reason="set TRICE_DATA_DIR to a directory with bbh/ (the BIG-Bench Hard <task>.json files and "
           "cot-prompts/) to run the checks against the real data")


@pytest.fixture(scope="module")
def combined():
    return get_task("bbh", data_dir=str(BBH))


@pytest.fixture(scope="module")
def singles():
    return {name: get_task(f"bbh/{name}", data_dir=str(BBH)) for name in TASKS}


# --- the real data ($TRICE_DATA_DIR) -----------------------------------------------------------
@needs_data
def test_27_tasks_and_6511_examples(combined, singles):
    assert len(TASKS) == 27 == len(list(BBH.glob("*.json")))
    assert len(combined.train) + len(combined.test) == 6511
    assert {ex.meta["task"] for ex in combined.train + combined.test} == set(TASKS)
    assert sum(len(t.train) + len(t.test) for t in singles.values()) == 6511


@needs_data
def test_each_split_is_deterministic_disjoint_and_60_40(combined, singles):
    for name, task in singles.items():
        n = len(json.loads((BBH / f"{name}.json").read_text())["examples"])
        assert len(task.train) == n * 3 // 5 and len(task.train) + len(task.test) == n  # floor(0.6 n)
        assert not {ex.question for ex in task.train} & {ex.question for ex in task.test}
        again = get_task(f"bbh/{name}", data_dir=str(BBH), seed=0)
        assert [ex.question for ex in again.train] == [ex.question for ex in task.train]
        assert [ex.question for ex in again.test] == [ex.question for ex in task.test]
        other = get_task(f"bbh/{name}", data_dir=str(BBH), seed=1)
        assert {ex.question for ex in other.train} != {ex.question for ex in task.train}
        # the combined task uses the same per-task splits
        assert [ex.question for ex in combined.train if ex.meta["task"] == name] == \
               [ex.question for ex in task.train]


def _another_answer(answer: str) -> str:
    """A different answer of the same form."""
    swaps = {"True": "False", "False": "True", "Yes": "No", "No": "Yes", "yes": "no", "no": "yes",
             "valid": "invalid", "invalid": "valid"}
    if answer in swaps:
        return swaps[answer]
    if m := re.fullmatch(r"\(([A-Z])\)", answer):
        return "(B)" if m.group(1) == "A" else "(A)"
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + 1)
    if set(answer) <= set(")]}> "):
        return answer + " )"
    return " ".join(reversed(answer.split()))  # word_sorting: a wrong order


@needs_data
def test_every_cot_exemplar_checks_correct_and_a_different_answer_wrong(singles):
    for name, task in singles.items():
        assert len(task.exemplars) == 3, name
        targets = {ex.answer for ex in task.train + task.test}
        for ex in task.exemplars:
            assert ex.question and ex.rationale.endswith(f"So the answer is {ex.answer}.")
            assert not ex.rationale.startswith("Let's think step by step")
            assert task.check(ex.rationale, ex) and task.is_correct(ex.rationale, ex.answer), name
            assert lm_eval_verdict(ex.rationale, ex.answer), name  # lm-eval agrees
            wrong = _another_answer(ex.answer)
            assert wrong != ex.answer and not task.is_correct(ex.rationale, wrong), (name, wrong)
            if len(targets) <= 20:  # categorical tasks: the exemplar's answer is a valid target
                assert ex.answer in targets, (name, ex.answer)
        if name == "word_sorting":
            assert all(ex.answer.split() == sorted(ex.answer.split()) for ex in task.exemplars)


@needs_data
def test_combined_task_carries_each_tasks_exemplars(combined, singles):
    assert combined.exemplars is None
    for ex in combined.test[:: 97]:
        assert combined.exemplars_for(ex) == singles[ex.meta["task"]].exemplars
        assert combined.exemplars_by_task[ex.meta["task"]] == singles[ex.meta["task"]].exemplars


@needs_data
def test_trice_data_dir_root_is_used(monkeypatch):
    monkeypatch.setenv("TRICE_DATA_DIR", str(DATA))
    task = get_task("bbh/navigate")
    assert task.source == str(BBH) and len(task.train) == 150 and len(task.exemplars) == 3


# --- the synthetic fixtures (tests/fixtures/data/bbh): the same behaviour, anywhere ----------
FIXTURE_BBH = FIXTURES / "bbh"
FIXTURE_TASKS = ("boolean_expressions", "date_understanding", "object_counting")
HOW = ["data_dir", "data_dir root", "TRICE_DATA_DIR"]


def _fixture_task(name, monkeypatch, how="data_dir", seed=0):
    """``bbh/<name>`` (or ``bbh`` for the fixture's tasks together) from the fixtures, through ``data_dir``
    (the bbh folder or the root above it) or ``$TRICE_DATA_DIR``."""
    if how == "TRICE_DATA_DIR":
        monkeypatch.setenv("TRICE_DATA_DIR", str(FIXTURES))
        return BBHTask(name, seed=seed) if isinstance(name, list) else get_task(f"bbh/{name}", seed=seed)
    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    root = str(FIXTURES if how == "data_dir root" else FIXTURE_BBH)
    if isinstance(name, list):
        return BBHTask(name, data_dir=root, seed=seed)
    return get_task(f"bbh/{name}", data_dir=root, seed=seed)


def _fixture_rows(name):
    return json.loads((FIXTURE_BBH / f"{name}.json").read_text())["examples"]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", FIXTURE_TASKS)
def test_fixture_split_is_60_40_disjoint_and_deterministic(monkeypatch, name, how):
    task = _fixture_task(name, monkeypatch, how)
    assert task.source == str(FIXTURE_BBH) and task.name == f"bbh/{name}"
    rows = _fixture_rows(name)
    n = len(rows)
    assert len(task.train) == n * 3 // 5 and len(task.train) + len(task.test) == n  # floor(0.6 n)
    # every example once, as in the file, and tagged with its task
    assert sorted((ex.question, ex.answer) for ex in task.train + task.test) == \
           sorted((r["input"], r["target"]) for r in rows)
    assert all(ex.meta == {"task": name} for ex in task.train + task.test)
    assert not {ex.question for ex in task.train} & {ex.question for ex in task.test}
    again = _fixture_task(name, monkeypatch, how, seed=0)
    assert [ex.question for ex in again.train] == [ex.question for ex in task.train]
    assert [ex.question for ex in again.test] == [ex.question for ex in task.test]
    others = [_fixture_task(name, monkeypatch, how, seed=s) for s in (1, 2, 3)]
    assert any({ex.question for ex in o.train} != {ex.question for ex in task.train} for o in others)


def test_fixture_repeated_question_stays_on_one_side(monkeypatch):
    rows = _fixture_rows("boolean_expressions")
    repeated = {r["input"] for r in rows if sum(x["input"] == r["input"] for x in rows) > 1}
    assert len(repeated) == 1  # the fixture holds one question twice, as the real data holds a few
    for seed in range(8):
        task = _fixture_task("boolean_expressions", monkeypatch, seed=seed)
        sides = [sum(ex.question in repeated for ex in part) for part in (task.train, task.test)]
        assert sorted(sides) == [0, 2], seed
        assert len(task.train) == len(rows) * 3 // 5


EXPECTED_EXEMPLARS = {  # (question's start, answer) of each block of cot-prompts/<task>.txt
    "boolean_expressions": [("not True or True is", "True"), ("True and not True is", "False"),
                            ("False or ( True and True ) is", "True")],
    "date_understanding": [("Today is 05/10/2002.", "(A)"), ("Today is 07/01/2003.", "(B)"),
                           ("Today is 12/31/2004.", "(C)")],
    "object_counting": [("I have a lemon", "3"), ("I have a banana", "1"), ("I have three cherries", "4")],
}


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", FIXTURE_TASKS)
def test_fixture_cot_exemplars_parse_and_check(monkeypatch, name, how):
    task = _fixture_task(name, monkeypatch, how)
    prompt = FIXTURE_BBH / "cot-prompts" / f"{name}.txt"
    assert [(ex.question[:len(q)], ex.answer) for ex, (q, _) in zip(task.exemplars, EXPECTED_EXEMPLARS[name])] \
        == EXPECTED_EXEMPLARS[name] and len(task.exemplars) == 3
    targets = {ex.answer for ex in task.train + task.test}
    for i, ex in enumerate(task.exemplars, start=1):
        assert ex.meta == {"task": name, "source": f"{prompt}#{i}"}
        assert "\nA:" not in ex.question and not ex.question.startswith("Q:")
        assert ex.rationale.endswith(f"So the answer is {ex.answer}.")
        assert not ex.rationale.startswith("Let's think step by step")
        assert ex.rationale in prompt.read_text()  # the block's text as written, multi-line steps kept
        assert task.check(ex.rationale, ex) and task.is_correct(ex.rationale, ex.answer)
        assert lm_eval_verdict(ex.rationale, ex.answer)  # lm-eval agrees
        wrong = _another_answer(ex.answer)
        assert wrong != ex.answer and not task.is_correct(ex.rationale, wrong)
        assert ex.answer in targets  # the exemplar's answer is a valid target of the task
    if name == "date_understanding":  # the question keeps its options
        assert task.exemplars[0].question.endswith("Options:\n(A) 05/09/2002\n(B) 05/11/2002\n(C) 04/10/2002")


@pytest.mark.parametrize("name", FIXTURE_TASKS)
def test_fixture_check_accepts_right_answers_and_rejects_wrong_ones(monkeypatch, name):
    task = _fixture_task(name, monkeypatch)
    for ex in task.train + task.test:
        right, wrong = f"Step by step. So the answer is {ex.answer}.", f"So the answer is {_another_answer(ex.answer)}."
        assert task.check(right, ex) and lm_eval_verdict(right, ex.answer)
        assert not task.check(wrong, ex) and not lm_eval_verdict(wrong, ex.answer)
        assert not task.check(f"So the answer is {ex.answer}", ex)  # no final period: lm-eval reads one less
    spelled = {"boolean_expressions": lambda a: a.lower(), "date_understanding": lambda a: a.strip("()"),
               "object_counting": lambda a: f"{a}.0"}[name]
    ex = task.test[0]
    assert task.check(f"So the answer is {spelled(ex.answer)}.", ex)  # an equivalent spelling of the task's kind


@pytest.mark.parametrize("how", HOW)
def test_fixture_combined_task_keeps_each_tasks_split_and_exemplars(monkeypatch, how):
    combined = _fixture_task(list(FIXTURE_TASKS), monkeypatch, how)
    singles = {name: _fixture_task(name, monkeypatch, how) for name in FIXTURE_TASKS}
    assert combined.exemplars is None and combined.task_names == list(FIXTURE_TASKS)
    assert len(combined.train) + len(combined.test) == sum(len(_fixture_rows(n)) for n in FIXTURE_TASKS)
    for name, task in singles.items():
        assert [ex.question for ex in combined.train if ex.meta["task"] == name] == [ex.question for ex in task.train]
        assert [ex.question for ex in combined.test if ex.meta["task"] == name] == [ex.question for ex in task.test]
        assert combined.exemplars_by_task[name] == task.exemplars
    for ex in combined.test:
        assert combined.exemplars_for(ex) == singles[ex.meta["task"]].exemplars
        assert combined.check(f"So the answer is {ex.answer}.", ex)
        assert not combined.check(f"So the answer is {_another_answer(ex.answer)}.", ex)


# --- malformed inputs ------------------------------------------------------------------------
def test_unknown_subtask_names_it_and_suggests():
    with pytest.raises(TriceError, match=r"unknown BBH task 'bbh/navigat' \(did you mean 'navigate'"):
        get_task("bbh/navigat")
    with pytest.raises(TriceError, match=r"unknown BBH task 'bbh/nope' \(known: boolean_expres"):
        get_task("bbh/nope")
    with pytest.raises(TriceError, match=r"bbh: unknown option\(s\) n_shots"):
        get_task("bbh/navigate", n_shots=3)


@pytest.mark.parametrize("content, message", [
    ('{"examples": [{"input": "q", "target": "Yes"},\n  {"input": }]}', r"navigate\.json:2: invalid JSON"),
    ('{"examples": [{"input": "q", "target": "Yes"}, {"input": "q2"}]}',
     r"navigate\.json: example 2: needs string fields 'input' and 'target'"),
    ('[1, 2]', r"navigate\.json: expected an object with an 'examples' list"),
    ('{"examples": 5}', r"navigate\.json: expected an object with an 'examples' list"),
    ('{"examples": []}', r"navigate\.json: no examples"),
])
def test_malformed_task_files(tmp_path, content, message):
    (tmp_path / "navigate.json").write_text(content)
    with pytest.raises(TriceError, match=message) as info:
        get_task("bbh/navigate", data_dir=str(tmp_path))
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_missing_task_file_and_bad_prompt_file(tmp_path):
    with pytest.raises(TriceError, match=r"bbh/navigate: .*navigate\.json not found"):
        get_task("bbh/navigate", data_dir=str(tmp_path))
    (tmp_path / "navigate.json").write_text('{"examples": [{"input": "q", "target": "Yes"}]}')
    (tmp_path / "cot-prompts").mkdir()
    (tmp_path / "cot-prompts" / "navigate.txt").write_text("header\n\nQ: q\nA: no conclusion\n")
    with pytest.raises(TriceError, match=r"cot-prompts/navigate\.txt: exemplar 1 is not"):
        get_task("bbh/navigate", data_dir=str(tmp_path))


def test_missing_prompts_warn_and_leave_exemplars_none(tmp_path):
    (tmp_path / "navigate.json").write_text('{"examples": [{"input": "q", "target": "Yes"}]}')
    with pytest.warns(RuntimeWarning, match="no cot-prompts"):
        task = get_task("bbh/navigate", data_dir=str(tmp_path))
    assert task.exemplars is None


def test_parse_cot_prompt_format():
    text = ("canary line\n-----\nTask description.\n\n"
            "Q: first?\nOptions:\n(A) x\n(B) y\nA: Let's think step by step.\nStep. So the answer is (B).\n\n"
            "Q: second?\nA: Let's think step by step. Inline. So the answer is yes.")
    first, second = parse_cot_prompt(text, "toy", "toy.txt")
    assert (first.question, first.rationale, first.answer) == \
           ("first?\nOptions:\n(A) x\n(B) y", "Step. So the answer is (B).", "(B)")
    assert (second.question, second.rationale, second.answer) == \
           ("second?", "Inline. So the answer is yes.", "yes")


# --- the hub path (no network: a stand-in `datasets` module) ---------------------------------
def test_hub_path_uses_lukaemon_bbh(monkeypatch):
    calls = []

    def load_dataset(name, task, split):
        calls.append((name, task, split))
        return [{"input": f"{task} q{i}", "target": "(A)"} for i in range(10)]

    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = get_task("bbh/snarks")
    assert calls == [("lukaemon/bbh", "snarks", "test")]
    assert (len(task.train), len(task.test), task.exemplars) == (6, 4, None)
    assert len(get_task("bbh").train) == 27 * 6


def test_hub_failure_and_missing_datasets_are_clear_errors(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("hub unreachable")

    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(TriceError, match=r"bbh/snarks: cannot load lukaemon/bbh from the hub"):
        get_task("bbh/snarks")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TriceError, match=r"bbh(/\w+)?: no local data .* `datasets` package is not installed"):
        get_task("bbh")
