"""BIG-Bench Hard: loading, the per-task 60/40 split, CoT exemplars, and the answer check.

The data tests read /work/shared/data/bbh (never copied into the project) and are skipped when it
is missing. The check is compared with lm-evaluation-harness's BBH CoT rule, re-implemented below
(bbh/cot_fewshot: regex "(?<=the answer is )(.*)(?=.)", take_first, exact_match).
"""

import json
import re
import sys
import types
from pathlib import Path

import pytest

from trice.errors import TriceError
from trice.tasks import get_task
from trice.tasks.bbh import TASKS, BBHTask, bbh_correct, parse_cot_prompt

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BBH = DATA / "bbh"
needs_data = pytest.mark.skipif(not (BBH / "cot-prompts").is_dir(),
                                reason=f"shared BBH data not found at {BBH}")


def lm_eval_verdict(response: str, target: str) -> bool:
    """lm-evaluation-harness bbh_cot_fewshot: RegexFilter + take_first, then exact_match."""
    found = re.findall(r"(?<=the answer is )(.*)(?=.)", response)
    prediction = found[0].strip() if found else "[invalid]"
    return prediction == target


@pytest.fixture(scope="module")
def combined():
    return get_task("bbh", data_dir=str(BBH))


@pytest.fixture(scope="module")
def singles():
    return {name: get_task(f"bbh/{name}", data_dir=str(BBH)) for name in TASKS}


# --- the shared data -------------------------------------------------------------------------
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


# --- the check vs lm-evaluation-harness ------------------------------------------------------
# (rationale, target, task, our verdict, how it relates to lm-eval's verdict)
#   "same": lm-eval gives the same verdict;  "norm": lm-eval says wrong, we accept an
#   equivalent spelling (or ignore trailing whitespace of the whole rationale).
CASES = [
    ("So the answer is (A).", "(A)", "date_understanding", True, "same"),
    ("the answer is (A).", "(A)", "date_understanding", True, "same"),
    ("So the answer is A.", "(A)", "date_understanding", True, "norm"),
    ("So the answer is (a).", "(A)", "snarks", True, "norm"),
    ("So the answer is (B).", "(A)", "date_understanding", False, "same"),
    ("So the answer is (A) 01/01/2000.", "(A)", "date_understanding", False, "same"),
    ("So the answer is (A)", "(A)", "date_understanding", False, "same"),  # no final period
    ("So the answer is (A)!", "(A)", "date_understanding", True, "same"),  # any last character
    ("So the answer is (A). I hope that helps.", "(A)", "hyperbaton", False, "same"),
    ("So the answer is (A).\nI hope that helps.", "(A)", "hyperbaton", True, "same"),
    ("At first the answer is (B).\nOn reflection the answer is (A).", "(A)", "snarks", False, "same"),
    ("At first the answer is (B).\nOn reflection the answer is (A).", "(B)", "snarks", True, "same"),
    ("So the answer is (A). No, the answer is (B).", "(B)", "snarks", False, "same"),
    ("So the answer is (A).\n\nQ: next\nA: So the answer is (B).", "(A)", "snarks", True, "same"),
    ("So The Answer Is (A).", "(A)", "snarks", False, "same"),
    ("The answer is (A).", "(A)", "snarks", True, "direct"),  # lm-eval's phrase is lower case; pt-direct's target
    ("So the answer is (B). The answer is (A).", "(A)", "snarks", False, "same"),  # lm-eval's phrase first
    ("So the answer is   (A).", "(A)", "snarks", True, "same"),
    ("So the answer is (A).\n", "(A)", "snarks", True, "same"),
    ("So the answer is (A).   \n ", "(A)", "snarks", True, "norm"),  # trailing whitespace
    ("So the answer is\n(A).", "(A)", "snarks", False, "same"),
    ("I cannot decide.", "(A)", "snarks", False, "same"),
    ("", "(A)", "snarks", False, "same"),
    ("So the answer is B.", "(B)", None, True, "norm"),  # no task name: kind from the target
    ("So the answer is True.", "True", "boolean_expressions", True, "same"),
    ("So the answer is true.", "True", "boolean_expressions", True, "norm"),
    ("So the answer is FALSE.", "False", "boolean_expressions", True, "norm"),
    ("So the answer is False.", "True", "boolean_expressions", False, "same"),
    ("So the answer is True", "True", "boolean_expressions", False, "same"),
    ("So the answer is valid.", "valid", "formal_fallacies", True, "same"),
    ("So the answer is Valid.", "valid", "formal_fallacies", True, "norm"),
    ("So the answer is invalid.", "valid", "formal_fallacies", False, "same"),
    ("So the answer is valid.", "invalid", "formal_fallacies", False, "same"),
    ("So the answer is Yes.", "Yes", "causal_judgement", True, "same"),
    ("So the answer is yes.", "Yes", "web_of_lies", True, "norm"),
    ("So the answer is Yes.", "yes", "sports_understanding", True, "norm"),
    ("So the answer is No.", "Yes", "navigate", False, "same"),
    ("So the answer is yes, probably.", "yes", "sports_understanding", False, "same"),
    ("So the answer is ant bee cat.", "ant bee cat", "word_sorting", True, "same"),
    ("So the answer is ant, bee, cat.", "ant bee cat", "word_sorting", True, "norm"),
    ("So the answer is bee ant cat.", "ant bee cat", "word_sorting", False, "same"),
    ("So the answer is ant bee.", "ant bee cat", "word_sorting", False, "same"),
    ("So the answer is ] ) >.", "] ) >", "dyck_languages", True, "same"),
    ("So the answer is ])>.", "] ) >", "dyck_languages", True, "norm"),
    ("So the answer is ] ) .", "] ) >", "dyck_languages", False, "same"),
    ("So the answer is ] ) > ).", "] ) >", "dyck_languages", False, "same"),
    ("So the answer is 24.", "24", "multistep_arithmetic_two", True, "same"),
    ("So the answer is -50.", "-50", "multistep_arithmetic_two", True, "same"),
    ("So the answer is 24.0.", "24", "multistep_arithmetic_two", True, "norm"),
    ("So the answer is 1,024.", "1024", "multistep_arithmetic_two", True, "norm"),
    ("So the answer is 42", "42", "object_counting", False, "same"),  # lm-eval reads "4"
    ("So the answer is 23.", "24", "object_counting", False, "same"),
    ("So the answer is six.", "6", "object_counting", False, "same"),
    ("So the answer is Acme, Inc.", "Acme, Inc", "movie_recommendation", True, "same"),
    ("So the answer is (A).", "Acme, Inc", "movie_recommendation", False, "same"),
]


@pytest.mark.parametrize("rationale, target, task, verdict, relation", CASES)
def test_check_matches_lm_evaluation_harness(rationale, target, task, verdict, relation):
    assert bbh_correct(rationale, target, task) is verdict
    if relation == "same":
        assert lm_eval_verdict(rationale, target) is verdict
    else:  # we only ever accept more, never less: normalised answers, and the direct-answer form
        assert verdict is True and lm_eval_verdict(rationale, target) is False


def test_check_uses_the_examples_task_name(tmp_path):
    rows = {"examples": [{"input": f"q{i}", "target": "ant bee cat"} for i in range(5)]}
    (tmp_path / "word_sorting.json").write_text(json.dumps(rows))
    with pytest.warns(RuntimeWarning, match="no cot-prompts"):
        task = BBHTask(["word_sorting"], data_dir=tmp_path)
    ex = task.train[0]
    assert task.check("So the answer is ant, bee, cat.", ex)
    assert task.is_correct("So the answer is ant, bee, cat.", ex.answer)


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
    with pytest.raises(TriceError, match=r"bbh: no local data .* `datasets` package is not installed"):
        get_task("bbh")


@pytest.mark.parametrize("answer", ["yes", "(B)", "False", "42"])
def test_the_direct_answer_target_is_read_by_the_bbh_check(answer):
    """pt-direct trains on prompts.direct_target(y); the BBH check must read it (lm-eval's CoT regex alone is
    case-sensitive and never did, so a direct-answer run scored 0 on every BBH task)."""
    from trice.prompts import PLAIN

    target = PLAIN.direct_target(answer)
    assert bbh_correct(target, answer) and not bbh_correct(PLAIN.direct_target("maybe"), answer)
