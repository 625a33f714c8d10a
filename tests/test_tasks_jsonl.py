"""Custom data ``jsonl:<path>``: fields, the split, user checkers, and one-line errors."""

import json
import sys
import textwrap
import warnings

import pytest

from trice.errors import TriceError
from trice.tasks import Example, get_task
from trice.tasks.jsonl import JSONLTask


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


ROWS = [{"question": f"What is {i} + 1?", "answer": str(i + 1), "rationale": f"{i} + 1 = {i + 1}. "
         f"So the answer is {i + 1}.", "difficulty": i % 3} for i in range(50)]


@pytest.fixture
def qa(tmp_path):
    return _write(tmp_path / "qa.jsonl", ROWS)


def test_seeded_80_20_split(qa):
    task = get_task(f"jsonl:{qa}")
    assert (len(task.train), len(task.test)) == (40, 10)
    assert not {ex.question for ex in task.train} & {ex.question for ex in task.test}
    again, other = get_task(f"jsonl:{qa}", seed=0), get_task(f"jsonl:{qa}", seed=1)
    assert [ex.question for ex in again.test] == [ex.question for ex in task.test]
    assert [ex.question for ex in other.test] != [ex.question for ex in task.test]
    assert (len(get_task(f"jsonl:{qa}", test_fraction=0.5).test)) == 25
    assert (len(get_task(f"jsonl:{qa}", test_fraction=0.0).train)) == 50


def test_examples_have_fields_rationale_and_meta(qa):
    task = get_task(f"jsonl:{qa}")
    ex = task.train[0]
    assert isinstance(ex, Example) and ex.rationale.endswith(f"So the answer is {ex.answer}.")
    assert set(ex.meta) == {"difficulty", "source", "line"}
    assert all(task.check(e.rationale, e) for e in task.train + task.test)
    assert task.is_correct("So the answer is  7 .", "7") and not task.is_correct("the answer is 8.", "7")


def test_configurable_field_names_and_test_path(tmp_path):
    rows = [{"q": f"q{i}", "a": i, "why": f"So the answer is {i}."} for i in range(4)]
    train = _write(tmp_path / "train.jsonl", rows)
    _write(tmp_path / "test.jsonl", rows[:2])
    task = get_task("jsonl:train.jsonl", data_dir=str(tmp_path), test_path="test.jsonl",
                    question_field="q", answer_field="a", rationale_field="why")
    assert (len(task.train), len(task.test)) == (4, 2)
    assert task.train[3] == Example("q3", "3", "So the answer is 3.")
    assert task.name == f"jsonl:{train}"


def test_user_checker(tmp_path, qa, monkeypatch):
    (tmp_path / "mychecks.py").write_text(textwrap.dedent("""
        def ends_with(rationale, answer):
            return rationale.rstrip(". ").endswith(answer)

        def explodes(rationale, answer):
            raise ValueError("boom")

        def not_a_bool(rationale, answer):
            return "yes"
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    task = get_task(f"jsonl:{qa}", checker="mychecks:ends_with")
    assert task.is_correct("... 41", "41") is True and task.is_correct("... 42", "41") is False
    by_file = get_task(f"jsonl:{qa}", checker=f"{tmp_path / 'mychecks.py'}:ends_with")
    assert by_file.check("... 41.", Example("q", "41")) is True

    for name, problem in [("explodes", "raised ValueError: boom"), ("not_a_bool", "returned str")]:
        task = get_task(f"jsonl:{qa}", checker=f"mychecks:{name}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            verdicts = [task.verdict(ex.rationale, ex) for ex in task.train]
        assert verdicts == [False] * len(task.train)  # counted wrong, the run goes on
        assert len(caught) == 1 and problem in str(caught[0].message)  # reported once per task
        assert f"checker 'mychecks:{name}'" in str(caught[0].message)
        # regression: a failing user checker used to hit `_warned = False` where a set was expected
        # (TypeError: argument of type 'bool' is not iterable) once the base class reported it
        assert task.verdicts([ex.rationale or "" for ex in task.train], task.train) == [False] * len(task.train)
    sys.modules.pop("mychecks", None)


# --- malformed inputs ------------------------------------------------------------------------
@pytest.mark.parametrize("rows, message", [
    ([ROWS[0], ROWS[1], '{"question": "x", "answer": 1', ROWS[2]], r"qa\.jsonl:3: invalid JSON"),
    ([ROWS[0], {"question": "no answer"}], r"qa\.jsonl:2: missing field 'answer'"),
    ([ROWS[0], "", {"answer": "1"}], r"qa\.jsonl:3: missing field 'question'"),
    ([], r"qa\.jsonl: empty file \(no examples\)"),
    (['"just a string"'], r"qa\.jsonl:1: expected a JSON object, got str"),
])
def test_malformed_files_give_one_line_errors(tmp_path, rows, message):
    path = _write(tmp_path / "qa.jsonl", rows)
    with pytest.raises(TriceError, match=message) as info:
        get_task(f"jsonl:{path}")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_bad_options(tmp_path, qa):
    with pytest.raises(TriceError, match=r"nope\.jsonl: file not found"):
        get_task(f"jsonl:{tmp_path / 'nope.jsonl'}")
    with pytest.raises(TriceError, match=r"needs a path: jsonl:<path"):
        get_task("jsonl")
    with pytest.raises(TriceError, match=r"unknown option\(s\) question_key"):
        get_task(f"jsonl:{qa}", question_key="q")
    with pytest.raises(TriceError, match=r"test_fraction must be in \[0, 1\)"):
        get_task(f"jsonl:{qa}", test_fraction=1.5)


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:check", r"cannot import checker 'no_such_module_xyz:check': ModuleNotFoundError"),
    ("json:no_such_function", r"checker 'json:no_such_function': module 'json' has no function"),
    ("just_a_name", r"checker 'just_a_name' must look like 'module:function'"),
    ("/no/such/file.py:check", r"cannot import checker '/no/such/file\.py:check'"),
])
def test_checker_that_cannot_be_imported(qa, spec, message):
    with pytest.raises(TriceError, match=message) as info:
        get_task(f"jsonl:{qa}", checker=spec)
    assert "\n" not in str(info.value)


def test_checker_module_with_syntax_error(tmp_path, qa, monkeypatch):
    (tmp_path / "brokenchecks.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TriceError, match=r"cannot import checker 'brokenchecks:f': SyntaxError"):
        JSONLTask(qa, checker="brokenchecks:f")


def test_jsonl_with_a_bom_and_crlf_line_endings(tmp_path):
    """A JSONL file saved on Windows (UTF-8 BOM, CRLF) reads as the same examples."""
    from trice.tasks.io import read_jsonl

    rows = [{"question": f"{i} + 1 =", "answer": str(i + 1)} for i in range(4)]
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    windows = tmp_path / "windows.jsonl"
    windows.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode("utf-8"))
    assert read_jsonl(windows) == read_jsonl(plain)
