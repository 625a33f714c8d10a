"""GSM8K: loading (local, $TRICE_DATA_DIR, hub), gold parsing, and the numeric answer check.

The loader is tested anywhere on small synthetic files in the official format
(tests/fixtures/data/gsm8k: toy questions written for these tests). The checks against the real
training split run where $TRICE_DATA_DIR names a directory holding gsm8k/train.jsonl (the data is
never copied into the project) and are skipped, saying so, elsewhere. The reference for "official"
is openai/grade-school-math's dataset.py logic, re-implemented below.
"""

import json
import os
import re
import shutil
import sys
import types
from decimal import Decimal
from pathlib import Path

import pytest

from trice.errors import TriceError
from trice.tasks import Example, get_task
from trice.tasks.gsm8k import GSM8KTask, gold_rationale, normalize_number, parse_gold

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"  # synthetic, in the official layout
DATA = Path(os.environ["TRICE_DATA_DIR"]).expanduser() if os.environ.get("TRICE_DATA_DIR") else None
GSM8K = DATA / "gsm8k" if DATA is not None else None
needs_data = pytest.mark.skipif(
    GSM8K is None or not (GSM8K / "train.jsonl").is_file(),
    reason="set TRICE_DATA_DIR to a directory with gsm8k/train.jsonl (the GSM8K training split) to run the "
           "checks against the real data")

# --- the official grade-school-math reference (dataset.py), re-implemented ------------------
OFFICIAL_ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")
INVALID_ANS = "[invalid]"


def official_extract_answer(completion: str) -> str:
    match = OFFICIAL_ANS_RE.search(completion)
    if match:
        return match.group(1).strip().replace(",", "")
    return INVALID_ANS


def official_is_correct(model_completion: str, gt_example: dict) -> bool:
    gt_answer = official_extract_answer(gt_example["answer"])
    assert gt_answer != INVALID_ANS
    return official_extract_answer(model_completion) == gt_answer


@pytest.fixture(scope="module")
def gsm8k():
    return get_task("gsm8k", data_dir=str(GSM8K))


@pytest.fixture(scope="module")
def raw_rows():
    return [json.loads(line) for line in (GSM8K / "train.jsonl").read_text().splitlines()]


# --- the real data ($TRICE_DATA_DIR) -----------------------------------------------------------
@needs_data
def test_train_has_7473_examples_and_every_gold_parses(gsm8k, raw_rows):
    assert len(gsm8k.train) == 7473 == len(raw_rows)
    for ex, row in zip(gsm8k.train, raw_rows):
        assert isinstance(ex, Example) and ex.question == row["question"]
        assert ex.answer == official_extract_answer(row["answer"]) != INVALID_ANS


@needs_data
def test_check_agrees_with_official_on_every_training_answer(gsm8k, raw_rows):
    for ex, row in zip(gsm8k.train, raw_rows):
        body = row["answer"].split("####")[0]
        wrong = str(int(ex.answer) + 1)
        # Our form of a completion ("... The answer is N.") vs the official one ("... #### N").
        assert gsm8k.check(f"{body}\nThe answer is {ex.answer}.", ex) is True
        assert official_is_correct(f"{body}\n#### {ex.answer}", row) is True
        assert gsm8k.check(f"{body}\nThe answer is {wrong}.", ex) is False
        assert official_is_correct(f"{body}\n#### {wrong}", row) is False


@needs_data
def test_every_gold_rationale_is_clean_and_checks_correct(gsm8k):
    for ex in gsm8k.train:
        assert "<<" not in ex.rationale and ">>" not in ex.rationale and "####" not in ex.rationale
        assert ex.rationale.endswith(f"The answer is {ex.answer}.")
        assert gsm8k.check(ex.rationale, ex)
        assert gsm8k.is_correct(ex.rationale, ex.answer)


@needs_data
def test_missing_test_split_is_a_clear_error_on_use(gsm8k):
    if (GSM8K / "test.jsonl").is_file():
        pytest.skip(f"{GSM8K} holds test.jsonl too (the shared data holds the training split only)")
    assert len(gsm8k.train) == 7473  # loading train alone works
    with pytest.raises(TriceError, match=r"gsm8k: no test split: .*test\.jsonl does not exist"):
        gsm8k.test


@needs_data
def test_trice_data_dir_root_is_used(monkeypatch):
    monkeypatch.setenv("TRICE_DATA_DIR", str(DATA))
    task = get_task("gsm8k")
    assert task.source == str(GSM8K) and len(task.train) == 7473


# --- the synthetic fixtures (tests/fixtures/data/gsm8k): the same behaviour, anywhere --------
FIXTURE_GSM8K = FIXTURES / "gsm8k"
HOW = ["data_dir", "data_dir root", "TRICE_DATA_DIR"]


def _fixture_rows(split):
    return [json.loads(line) for line in (FIXTURE_GSM8K / f"{split}.jsonl").read_text().splitlines()]


def _fixture_task(how, monkeypatch):
    """The fixture data through ``data_dir`` (the gsm8k folder or the root above it) or ``$TRICE_DATA_DIR``."""
    if how == "TRICE_DATA_DIR":
        monkeypatch.setenv("TRICE_DATA_DIR", str(FIXTURES))
        return get_task("gsm8k")
    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    return get_task("gsm8k", data_dir=str(FIXTURES if how == "data_dir root" else FIXTURE_GSM8K))


@pytest.mark.parametrize("how", HOW)
def test_fixture_splits_load_and_every_gold_parses(monkeypatch, how):
    task = _fixture_task(how, monkeypatch)
    assert task.source == str(FIXTURE_GSM8K)
    for split in ("train", "test"):
        rows, examples = _fixture_rows(split), getattr(task, split)
        assert len(examples) == len(rows) >= 3
        for n, (ex, row) in enumerate(zip(examples, rows), start=1):
            assert isinstance(ex, Example) and ex.question == row["question"]
            assert ex.answer == official_extract_answer(row["answer"]) != INVALID_ANS
            assert ex.meta == {"solution": row["answer"], "source": f"{FIXTURE_GSM8K / (split + '.jsonl')}:{n}"}
    golds = {row["answer"].split("####")[-1].strip(): ex.answer for row, ex in zip(_fixture_rows("train"), task.train)}
    assert golds["1,007"] == "1007" and golds["1.5"] == "1.5"  # commas dropped, decimals kept


def test_fixture_gold_rationales_are_clean_and_check_correct(monkeypatch):
    task = _fixture_task("data_dir", monkeypatch)
    for ex in task.train + task.test:
        assert "<<" not in ex.rationale and ">>" not in ex.rationale and "####" not in ex.rationale
        assert ex.rationale.endswith(f"\nThe answer is {ex.answer}.")
        assert task.check(ex.rationale, ex) and task.is_correct(ex.rationale, ex.answer)
    by_answer = {ex.answer: ex.rationale for ex in task.train}
    assert by_answer["1007"] == "It sold 1000 + 7 = 1007 apples in all.\nThe answer is 1007."
    assert by_answer["12"] == ("He gives away 24 / 2 = 12 muffins.\nHe keeps 24 - 12 = 12 muffins.\n"
                               "The answer is 12.")  # every annotation of a multi-step solution removed


@pytest.mark.parametrize("how", HOW)
def test_fixture_check_agrees_with_official_on_right_and_wrong_answers(monkeypatch, how):
    task = _fixture_task(how, monkeypatch)
    for split in ("train", "test"):
        for ex, row in zip(getattr(task, split), _fixture_rows(split)):
            body = row["answer"].split("####")[0]
            wrong = str(Decimal(ex.answer) + 1)
            assert task.check(f"{body}\nThe answer is {ex.answer}.", ex) is True
            assert official_is_correct(f"{body}\n#### {ex.answer}", row) is True
            assert task.check(f"{body}\nThe answer is {wrong}.", ex) is False
            assert official_is_correct(f"{body}\n#### {wrong}", row) is False
    ex = next(ex for ex in task.train if ex.answer == "1007")
    assert task.check("So the answer is $1,007.00.", ex) and task.check("So the answer is 1007", ex)
    assert not task.check("So the answer is 1,007 apples.", ex) and not task.check("So the answer is 107.", ex)


def test_fixture_train_split_alone_loads_and_the_test_split_is_a_clear_error(tmp_path):
    shutil.copy(FIXTURE_GSM8K / "train.jsonl", tmp_path / "train.jsonl")
    task = get_task("gsm8k", data_dir=str(tmp_path))
    assert [ex.question for ex in task.train] == [row["question"] for row in _fixture_rows("train")]
    with pytest.raises(TriceError, match=r"gsm8k: no test split: .*test\.jsonl does not exist"):
        task.test


def test_trice_data_dir_without_gsm8k_falls_through_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICE_DATA_DIR", str(FIXTURES / "bbh"))  # a directory, but no gsm8k/ in it
    monkeypatch.setitem(sys.modules, "datasets",
                        types.SimpleNamespace(load_dataset=lambda *a, **k: {"train": TOY[:3], "test": TOY[3:]}))
    task = get_task("gsm8k")
    assert task.source == "hub:openai/gsm8k" and len(task.train) == 3


# --- parsing and the check -------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("72", "72"), ("$72", "72"), ("1,000", "1000"), ("$1,000.00", "1000"), ("5.0", "5"),
    ("5.00", "5"), ("5.", "5"), ("5.0.", "5"), ("-3", "-3"), ("+3", "3"), ("0.50", "0.5"),
    (".5", "0.5"), ("  42 ", "42"), ("72 clips", "72 clips"), ("nan", "nan"), ("", ""),
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize("rationale, answer, verdict", [
    ("So the answer is 72.", "72", True),
    ("So the answer is $72.", "72", True),
    ("So the answer is 72.00.", "72", True),
    ("So the answer is 1,072.", "1072", True),
    ("So the answer is 72", "72", True),                     # no final period
    ("The Answer Is 72.", "72", True),                       # case of the phrase
    ("I think the answer is 5. Checking: the answer is 72.", "72", True),  # the last one counts
    ("So the answer is 72. Then more text.", "72", False),   # not at the end
    ("So the answer is 72 clips.", "72", False),
    ("So the answer is 73.", "72", False),
    ("72", "72", False),                                     # no "the answer is"
    ("So the answer is 0.5.", "0.50", True),
    ("So the answer is -4.", "4", False),
])
def test_is_correct(rationale, answer, verdict):
    task = GSM8KTask.__new__(GSM8KTask)  # the check needs no data
    assert task.is_correct(rationale, answer) is verdict


def test_parse_gold_and_gold_rationale():
    assert parse_gold("a\n#### 1,234") == "1234"
    assert parse_gold("a\n####  -7 ") == "-7"
    assert parse_gold("no marker") is None
    assert parse_gold("a\n#### seven") is None
    assert gold_rationale("x = <<2*3=6>>6 and <<6+1=7>>7\n#### 7", "7") == "x = 6 and 7\nThe answer is 7."


# --- local files, laziness, errors -----------------------------------------------------------
def _write(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


TOY = [{"question": f"Toy {i} + 1?", "answer": f"{i} + 1 = <<{i}+1={i + 1}>>{i + 1}\n#### {i + 1}"}
       for i in range(5)]


def test_local_directory_with_only_test_split(tmp_path):
    _write(tmp_path / "test.jsonl", TOY)
    task = get_task("gsm8k", data_dir=str(tmp_path))
    assert [ex.answer for ex in task.test] == ["1", "2", "3", "4", "5"]
    with pytest.raises(TriceError, match=r"no train split: .*train\.jsonl does not exist"):
        task.train


def test_directory_without_either_split_is_an_error(tmp_path):
    with pytest.raises(TriceError, match=r"gsm8k: .* has neither train\.jsonl nor test\.jsonl"):
        get_task("gsm8k", data_dir=str(tmp_path))
    with pytest.raises(TriceError, match=r"gsm8k: data directory .*nope does not exist"):
        get_task("gsm8k", data_dir=str(tmp_path / "nope"))


@pytest.mark.parametrize("rows, message", [
    ([TOY[0], '{"question": "broken", ', TOY[1]], r"train\.jsonl:2: invalid JSON"),
    ([TOY[0], TOY[1], {"question": "no answer here"}], r"train\.jsonl:3: missing field 'answer'"),
    ([{"answer": "#### 1"}], r"train\.jsonl:1: missing field 'question'"),
    ([TOY[0], {"question": "q", "answer": "no final marker"}],
     r"train\.jsonl:2: answer does not end in '#### <number>'"),
    ([], r"train\.jsonl: empty file"),
    (["", "   "], r"train\.jsonl: empty file"),
    (["[1, 2]"], r"train\.jsonl:1: expected a JSON object"),
])
def test_malformed_files_give_one_line_errors(tmp_path, rows, message):
    _write(tmp_path / "train.jsonl", rows)
    with pytest.raises(TriceError, match=message) as info:
        get_task("gsm8k", data_dir=str(tmp_path)).train
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("value, shown", [({"value": 3}, "object {'value': 3}"), ([3], "list [3]"),
                                          (True, "true/false True")])
def test_an_answer_that_is_not_text_is_refused_at_load_naming_file_and_line(tmp_path, value, shown):
    """An answer given as an object would otherwise be compared as its JSON text: no rationale would ever
    be right. gsm8k and jsonl: refuse it at load, in one line naming the file and the line."""
    path = _write(tmp_path / "train.jsonl", [TOY[0], {"question": "Toy: 1 + 2?", "answer": value}])
    expected = f"{path}:2: field 'answer' must be a string or a number, got {shown}"
    with pytest.raises(TriceError) as info:
        get_task("gsm8k", data_dir=str(tmp_path)).train
    assert str(info.value) == expected
    with pytest.raises(TriceError) as info:
        get_task(f"jsonl:{path}")
    assert str(info.value) == expected
    # a number is an answer's text as JSON writes it, not refused
    _write(path, [{"question": "Toy: 1 + 2?", "answer": 3}, {"question": "Toy: 1 + 1.5?", "answer": 2.5}])
    task = get_task(f"jsonl:{path}", test_fraction=0.0)
    assert sorted(ex.answer for ex in task.train) == ["2.5", "3"]


# --- the hub path (no network: a stand-in `datasets` module) ---------------------------------
def test_hub_path_uses_openai_gsm8k_main(monkeypatch):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append(args)
        return {"train": TOY[:3], "test": TOY[3:]}

    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = get_task("gsm8k")
    assert calls == []  # lazy: nothing loaded yet
    assert (len(task.train), len(task.test)) == (3, 2) and calls == [("openai/gsm8k", "main")]
    assert task.check(task.test[0].rationale, task.test[0])


def test_hub_failure_and_missing_datasets_are_clear_errors(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.delenv("TRICE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(TriceError, match=r"cannot load openai/gsm8k from the hub.*--data-dir"):
        get_task("gsm8k").train
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails
    with pytest.raises(TriceError, match=r"no local data .* `datasets` package is not installed"):
        get_task("gsm8k").train
