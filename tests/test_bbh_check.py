"""The BIG-Bench Hard answer check (trice.tasks.bbh.bbh_correct), case by case against lm-evaluation-harness's
BBH CoT rule, re-implemented here (bbh/cot_fewshot: regex "(?<=the answer is )(.*)(?=.)", take_first,
exact_match): the same verdict, or ours accepting an equivalent spelling it refuses, never less.
"""

import json
import re

import pytest

from trice.tasks.bbh import BBHTask, bbh_correct


def lm_eval_verdict(response: str, target: str) -> bool:
    """lm-evaluation-harness bbh_cot_fewshot: RegexFilter + take_first, then exact_match."""
    found = re.findall(r"(?<=the answer is )(.*)(?=.)", response)
    prediction = found[0].strip() if found else "[invalid]"
    return prediction == target


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


@pytest.mark.parametrize("answer", ["yes", "(B)", "False", "42"])
def test_the_direct_answer_target_is_read_by_the_bbh_check(answer):
    """pt-direct trains on prompts.direct_target(y); the BBH check must read it (lm-eval's CoT regex alone is
    case-sensitive and never did, so a direct-answer run scored 0 on every BBH task)."""
    from trice.prompts import PLAIN

    target = PLAIN.direct_target(answer)
    assert bbh_correct(target, answer) and not bbh_correct(PLAIN.direct_target("maybe"), answer)
