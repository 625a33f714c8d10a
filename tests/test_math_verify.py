"""math-verify answer checking (trice.tasks.math_answer) and its use by GSM8K: verdicts, quietness,
robustness, and agreement with the official gold parser on GSM8K answers: the synthetic fixture's
anywhere, the real training split's where $TRICE_DATA_DIR names a directory holding gsm8k/train.jsonl."""

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from trice.tasks.base import CheckerTimeout
from trice.tasks import math_answer
from trice.tasks.gsm8k import GSM8KTask, answer_matches, parse_gold
from trice.tasks.math_answer import MAX_CHARS, math_answer_text, math_equal

TRAIN = (Path(os.environ["TRICE_DATA_DIR"]).expanduser() / "gsm8k" / "train.jsonl"
         if os.environ.get("TRICE_DATA_DIR") else None)
FIXTURE_TRAIN = Path(__file__).resolve().parent / "fixtures" / "data" / "gsm8k" / "train.jsonl"  # synthetic


@pytest.mark.parametrize("prediction, gold, equal", [
    ("72", "72", True), ("72", "73", False), ("5", "50", False), ("50", "5", False),
    ("1,000", "1000", True), ("1000", "1,000", True), ("1,000,000", "1000000", True), ("1,000", "1", False),
    ("$5", "5", True), ("$1,000.00", "1000", True), ("\\$18", "18", True),
    ("5.00", "5", True), ("5.0", "5", True), ("5.", "5", True), ("5.5", "5", False),
    ("1/2", "0.5", True), ("0.5", "1/2", True), ("\\frac{1}{2}", "0.5", True), ("\\dfrac{3}{4}", "0.75", True),
    ("0.33", "1/3", False), ("\\frac{1}{3}", "0.5", False),
    ("\\boxed{3}", "3", True), ("$\\boxed{1,000}$", "1000", True), ("\\boxed{4}", "3", False),
    ("50%", "50", True), ("50%", "0.5", True), ("50\\%", "50", True), ("5%", "50", False),
    ("-4", "-4", True), ("-4", "4", False), ("-0.5", "-1/2", True),
    ("x = 5", "5", True), ("x^2+1", "1+x^2", True), ("(1,2)", "(1, 2)", True),
    ("72 clips", "72", False), ("10:30", "10", False), ("2, 3", "3", False), ("2 and 3", "3", False),
    ("seven", "7", False), ("2 Animals #146", "2", False), ("garbage }{ \\frac{", "5", False),
    ("", "5", False), ("5", "", False), ("   ", "5", False), ("5" * (MAX_CHARS + 1), "5", False), ("9^9^9^9", "5", False),
    ("$10^{10^{10}}$", "10", False), ("$(10^{10})!$", "5", False),
])
def test_math_equal(prediction, gold, equal):
    assert math_equal(prediction, gold) is equal


def test_gsm8k_check_on_rationales():
    task = GSM8KTask.__new__(GSM8KTask)  # the check needs no data
    cases = [("She has 3 + 4 = 7 apples.\nThe answer is 7.", "7", True),
             ("Half a pie each. So the answer is 1/2.", "0.5", True),
             ("So the answer is \\boxed{1,200}.", "1200", True),
             ("So the answer is $\\frac{3}{4}$.", "0.75", True),
             ("So the answer is 75%.", "75", True),
             ("So the answer is 5 apples.", "5", False),  # words: as the official rule
             ("So the answer is 50.", "5", False),
             ("So the answer is 5, or maybe 6.", "6", False),
             ("It is 7.", "7", False)]  # no "the answer is"
    for rationale, answer, verdict in cases:
        assert task.is_correct(rationale, answer) is verdict, rationale
    assert answer_matches(None, "7") is False


def test_math_answer_text():
    assert math_answer_text("2 + 2 = 4. So the answer is $4$.") == "$4$"
    assert math_answer_text("so x = \\boxed{12}. Done") == "\\boxed{12}. Done"
    assert math_answer_text("no final answer") is None


def test_no_warning_printed_and_other_warnings_kept(monkeypatch, capsys, caplog):
    import math_verify.grader
    import math_verify.parser

    math_answer._math_verify()
    for module in (math_verify.parser, math_verify.grader):  # as on the first call in a process
        monkeypatch.setattr(module, "TIMEOUT_WARNING_SHOWN", False)
    with caplog.at_level(logging.DEBUG):
        assert math_equal("\\frac{7}{14}", "0.5 ") is True  # texts not yet cached: parsed here
        logging.getLogger("math_verify.parser").warning("another warning")
    captured = capsys.readouterr()
    assert "Timeout" not in captured.out + captured.err + caplog.text
    assert "another warning" in caplog.text


def test_works_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(math_equal("\\frac{9}{3}", "3")))
    thread.start()
    thread.join()
    assert results == [True]


def test_errors_are_not_equal_but_checker_timeout_propagates(monkeypatch):
    mv = math_answer._math_verify()

    def fail(*args, **kwargs):
        raise RecursionError("deep")

    monkeypatch.setattr(mv, "verify", fail)
    assert math_equal("4", "4") is False

    def expire(*args, **kwargs):
        raise CheckerTimeout("took longer than 5 s")

    monkeypatch.setattr(mv, "verify", expire)
    with pytest.raises(CheckerTimeout):
        math_equal("4", "4")


def test_long_and_huge_inputs_are_fast():
    start = time.perf_counter()
    assert not math_equal("1 + " * 10_000 + "1", "10001")
    assert not math_equal("$9^{9^{9^9}}$", "5")
    assert time.perf_counter() - start < 2


def test_gold_parse_is_cached():
    math_answer._parse.cache_clear()
    math_equal("17", "1234567")
    math_equal("18", "1234567")
    assert math_answer._parse.cache_info()[:2] == (1, 3)  # (hits, misses): the gold parsed once


def test_agrees_with_parse_gold_on_the_fixture_answers():
    from decimal import Decimal

    solutions = [json.loads(line)["answer"] for line in FIXTURE_TRAIN.read_text().splitlines()]
    assert any("#### 1,007" in s for s in solutions)  # a comma number is among them
    for solution in solutions:
        gold, text = parse_gold(solution), solution.split("####")[-1].strip()
        assert math_equal(text, gold), text
        assert not math_equal(str(Decimal(gold) + 1), gold), text


def test_agrees_with_parse_gold_on_first_500_training_answers():
    if TRAIN is None or not TRAIN.is_file():
        pytest.skip("set TRICE_DATA_DIR to a directory with gsm8k/train.jsonl (the GSM8K training split) to run "
                    "the checks against the real data")
    with TRAIN.open() as f:
        solutions = [json.loads(next(f))["answer"] for _ in range(500)]
    for solution in solutions:
        gold, text = parse_gold(solution), solution.split("####")[-1].strip()
        assert math_equal(text, gold), text
        assert not math_equal(str(int(gold) + 1), gold), text
