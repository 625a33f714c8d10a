"""Hugging Face datasets ``hf:<path-or-id>[:<config>]``: local save_to_disk directories, parquet and
JSON files, splits, columns, answer types, the offline hub error, the config flags, and a CLI run."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

datasets = pytest.importorskip("datasets")

from trice.config import TrainConfig  # noqa: E402
from trice.errors import TriceError  # noqa: E402
from trice.tasks import Example, get_task, task_from_config  # noqa: E402
from trice.tasks.hf import HFTask, resolve_source  # noqa: E402

ROWS = [{"q": f"What is {i} + 1?", "a": i + 1, "level": i % 3, "why": f"{i} + 1 = {i + 1}. So the answer is {i + 1}."}
        for i in range(20)]


@pytest.fixture(autouse=True)
def hermetic_datasets_cache(tmp_path, monkeypatch):
    """load_dataset's cache goes to the test's directory, not ~/.cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def _dataset(rows):
    return datasets.Dataset.from_list(rows)


@pytest.fixture
def saved_dict(tmp_path):
    path = tmp_path / "saved"
    datasets.DatasetDict(train=_dataset(ROWS[:15]), test=_dataset(ROWS[15:])).save_to_disk(str(path))
    return path


# --- where the data comes from -------------------------------------------------------------
def test_save_to_disk_dataset_dict_with_train_and_test(saved_dict):
    task = get_task(f"hf:{saved_dict}", question_field="q", answer_field="a", rationale_field="why")
    assert isinstance(task, HFTask) and task.name == f"hf:{saved_dict}"
    assert (len(task.train), len(task.test)) == (15, 5) and task.test_source == "test"
    ex = task.test[0]
    assert ex == Example("What is 15 + 1?", "16", "15 + 1 = 16. So the answer is 16.")  # the number became text
    assert ex.meta == {"level": 0, "why": ex.rationale}  # every other column, under its own name
    assert task.answer_type == "number"
    assert all(task.verdict(e.rationale, e) for e in task.train + task.test)
    assert not task.verdict("So the answer is 17.", ex)


def test_data_dir_resolves_a_relative_path(saved_dict):
    task = get_task("hf:saved", data_dir=str(saved_dict.parent), question_field="q", answer_field="a")
    assert len(task.train) == 15 and task.name == "hf:saved"


def test_parquet_file_and_directory_of_split_files(tmp_path):
    _dataset(ROWS).to_parquet(str(tmp_path / "qa.parquet"))
    task = get_task(f"hf:{tmp_path / 'qa.parquet'}", question_field="q", answer_field="a")
    assert (len(task.train), len(task.test)) == (16, 4)  # one split: the deterministic 80/20 cut
    assert {e.question for e in task.train}.isdisjoint(e.question for e in task.test)
    folder = tmp_path / "parts"
    folder.mkdir()
    _dataset(ROWS[:12]).to_parquet(str(folder / "train.parquet"))
    _dataset(ROWS[12:]).to_parquet(str(folder / "test.parquet"))
    task = get_task(f"hf:{folder}", question_field="q", answer_field="a")
    assert (len(task.train), len(task.test)) == (12, 8)  # splits named by their files
    assert task.test[0].question == "What is 12 + 1?"


def test_json_and_jsonl_files_split_as_jsonl_does(tmp_path):
    plain = [{"question": r["q"], "answer": str(r["a"]), "rationale": r["why"]} for r in ROWS]
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in plain))
    (tmp_path / "qa.json").write_text(json.dumps(plain))
    by_jsonl = get_task(f"jsonl:{jsonl}", seed=3)
    for path in (jsonl, tmp_path / "qa.json"):
        task = get_task(f"hf:{path}", seed=3)
        assert task.train == by_jsonl.train and task.test == by_jsonl.test  # the same rule, the same cut
        assert task.train[0].rationale is not None


def test_deterministic_split_when_there_is_no_test_split(tmp_path):
    path = tmp_path / "single"
    _dataset(ROWS).save_to_disk(str(path))  # a Dataset, not a DatasetDict: the split "train"
    name, fields = f"hf:{path}", dict(question_field="q", answer_field="a")
    task = get_task(name, seed=0, **fields)
    assert (len(task.train), len(task.test)) == (16, 4)
    same, other = get_task(name, seed=0, **fields), get_task(name, seed=1, **fields)
    assert [e.question for e in same.test] == [e.question for e in task.test]
    assert [e.question for e in other.test] != [e.question for e in task.test]
    assert sorted(e.question for e in other.train + other.test) == sorted(r["q"] for r in ROWS)
    assert len(get_task(name, test_fraction=0.5, **fields).test) == 10
    assert "seed 0" in task.test_source


def test_split_flags(saved_dict):
    fields = dict(question_field="q", answer_field="a")
    task = get_task(f"hf:{saved_dict}", split="test", test_split="train", **fields)
    assert (len(task.train), len(task.test)) == (5, 15)
    task = get_task(f"hf:{saved_dict}", split="test", **fields)  # no other held-out split: cut the test split
    assert (len(task.train), len(task.test)) == (4, 1)
    with pytest.raises(TriceError, match=r"no split 'validation' \(splits: train, test\); choose one with "
                                         r"--test-split") as info:
        get_task(f"hf:{saved_dict}", test_split="validation", **fields)
    assert "\n" not in str(info.value)


# --- columns ---------------------------------------------------------------------------------
def test_custom_fields_and_missing_column_errors(saved_dict):
    with pytest.raises(TriceError) as info:
        get_task(f"hf:{saved_dict}", answer_field="a")  # the question column is "q", not "question"
    message = str(info.value)
    assert "no column 'question'" in message and "columns: q, a, level, why" in message
    assert "--question-field" in message and "\n" not in message
    with pytest.raises(TriceError, match=r"no column 'answer' \(columns: q, a, level, why\).*--answer-field"):
        get_task(f"hf:{saved_dict}", question_field="q")
    task = get_task(f"hf:{saved_dict}", question_field="why", answer_field="level")
    assert task.train[1].question == ROWS[1]["why"] and task.train[1].answer == "1"
    assert set(task.train[1].meta) == {"q", "a"}


def test_empty_values_and_bad_options(tmp_path):
    rows = [{"question": "q0", "answer": "1"}, {"question": "q1", "answer": None}]
    with pytest.raises(TriceError, match=r"split 'train' row 1: column 'answer' is empty"):
        HFTask({"train": rows})
    with pytest.raises(TriceError, match=r"unknown option\(s\) question_key"):
        get_task("hf:whatever", question_key="q")
    with pytest.raises(TriceError, match=r"task 'hf' needs a dataset"):
        get_task("hf")
    with pytest.raises(TriceError, match=r"answer_type must be one of auto, exact, number, math"):
        HFTask({"train": rows[:1]}, answer_type="fuzzy")


# --- answer types ----------------------------------------------------------------------------
def _task(answers, answer_type="auto"):
    rows = [{"question": f"q{i}", "answer": a} for i, a in enumerate(answers)]
    return HFTask({"train": rows, "test": rows}, answer_type=answer_type)


def test_answer_types():
    auto_number = _task([5, "1,000", "2.50"])
    assert auto_number.answer_type == "number"
    ex = auto_number.test[0]
    assert auto_number.verdict("So the answer is 5.00.", ex) and auto_number.verdict("The answer is $5.", ex)
    assert not auto_number.verdict("The answer is 6.", ex) and not auto_number.verdict("5", ex)  # no "the answer is"
    assert auto_number.normalize("1,000.0") == "1000"  # self-consistency votes group equal numbers

    auto_exact = _task(["Paris", "12"])
    assert auto_exact.answer_type == "exact"
    ex = auto_exact.test[0]
    assert auto_exact.verdict("So the answer is  paris.", ex) and not auto_exact.verdict("The answer is Lyon.", ex)
    forced = _task([5], answer_type="exact")
    assert forced.answer_type == "exact" and not forced.verdict("The answer is 5.0.", forced.test[0])

    math_task = _task(["\\frac{1}{2}", "$2\\sqrt{2}$"], answer_type="math")
    half, root = math_task.test
    assert math_task.verdict("So the answer is 0.5.", half)
    assert math_task.verdict("So the answer is $\\frac{2}{4}$.", half)
    assert not math_task.verdict("So the answer is 1/3.", half)
    assert math_task.verdict("The answer is $\\sqrt{8}$.", root) and not math_task.verdict("No answer here", root)


# --- the hub ---------------------------------------------------------------------------------
def test_hub_id_offline_gives_a_one_line_error(tmp_path):
    code = textwrap.dedent("""
        from trice.errors import TriceError
        from trice.tasks import get_task
        try:
            get_task("hf:nobody-trice-test/no-such-dataset:main")
        except TriceError as exc:
            print("ERROR", exc)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "cache"),
           "HF_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, proc.stdout + proc.stderr[-2000:]
    message = lines[0]
    assert "hf:nobody-trice-test/no-such-dataset:main: cannot reach the Hugging Face hub" in message
    assert "'nobody-trice-test/no-such-dataset'" in message and "save_to_disk" in message


def test_names_paths_and_configs(tmp_path):
    assert resolve_source("openai/gsm8k:main") == ("openai/gsm8k", "main")
    assert resolve_source("gsm8k") == ("gsm8k", None)
    odd = tmp_path / "a:b.jsonl"  # a local path with ":" in it is read as a path when it exists
    odd.write_text('{"question": "q", "answer": "1"}\n')
    assert resolve_source(str(odd)) == (odd, None)
    with pytest.raises(TriceError, match=r"a local file has no configs \(drop ':main'\)"):
        resolve_source(f"{odd}:main")
    for missing in ("./nothere", str(tmp_path / "nothere.parquet"), "data/qa.jsonl"):
        with pytest.raises(TriceError, match=r"does not exist \(not a local dataset, and not a hub id\)"):
            get_task(f"hf:{missing}")  # never sent to the hub
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(TriceError, match=r"cannot read notes\.txt: expected one of \.parquet, \.json"):
        get_task(f"hf:{bad}")


def test_missing_datasets_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(TriceError, match=r"needs the `datasets` package: pip install 'trice-cot\[hub\]'"):
        get_task(f"hf:{tmp_path}")


# --- the config flags (task_from_config) -----------------------------------------------------
def test_config_flags_reach_the_task(saved_dict, tmp_path):
    config = TrainConfig(task=f"hf:{saved_dict}", question_field="q", answer_field="a", split="test",
                         test_split="train", answer_type="exact")
    task = task_from_config(config)
    assert (len(task.train), len(task.test), task.answer_type) == (5, 15, "exact")
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = task_from_config(TrainConfig(task=f"jsonl:{jsonl}", question_field="q", answer_field="a"))
    assert task.train[0].question.startswith("What is")
    # the same option as --task-option too is fine when it agrees
    assert task_from_config(TrainConfig(task=f"jsonl:{jsonl}", question_field="q", answer_field="a",
                                        task_options={"question_field": "q"})).train


@pytest.mark.parametrize("config, message", [
    (dict(task="gym/chain_sum", split="test"), r"--split applies to hf: tasks only, not 'gym/chain_sum'"),
    (dict(task="jsonl:x.jsonl", answer_type="math"), r"--answer-type applies to hf: tasks only"),
    (dict(task="gsm8k", question_field="q"), r"--question-field applies to hf: and jsonl: tasks only"),
    (dict(task="hf:x", question_field="q", task_options={"question_field": "z"}),
     r"--question-field 'q' and --task-option question_field='z' disagree"),
    (dict(task="gym/chain_sum", reward_threshold=0.5), r"--reward-threshold needs --reward"),
])
def test_config_flag_errors(config, message):
    with pytest.raises(TriceError, match=message) as info:
        task_from_config(TrainConfig(**config))
    assert "\n" not in str(info.value)


# --- end to end ------------------------------------------------------------------------------
def test_cli_train_on_a_saved_dataset_with_a_reward(tmp_path, local_model, exemplars_file, monkeypatch):
    from trice.cli import main

    data = tmp_path / "saved"
    rows = [{"q": f"{i} * 2 =", "a": 2 * i, "level": i % 2} for i in range(12)]
    datasets.DatasetDict(train=_dataset(rows[:9]), test=_dataset(rows[9:])).save_to_disk(str(data))
    log = tmp_path / "reward.log"
    (tmp_path / "myrewards.py").write_text(textwrap.dedent(f"""
        import json

        def always(completions, level, **kwargs):
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(sorted(kwargs) + ["level=" + str(level)]) + "\\n")
            return [1.0 for _ in completions]
    """))
    out = tmp_path / "run"
    code = main(["train", "--model", str(local_model), "--task", f"hf:{data}", "--question-field", "q",
                 "--answer-field", "a", "--reward", f"{tmp_path / 'myrewards.py'}:always",
                 "--steps", "1", "--batch-size", "3", "--subsample", "3", "--max-new-tokens", "6",
                 "--n-eval", "3", "--n-train", "6", "--threads", "1", "--exemplars", str(exemplars_file),
                 "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == f"hf:{data}" and summary["steps"] == 1
    # the reward (always 1 > 0) is the checker: every held-out rationale of the tiny random model passes
    assert summary["greedy_accuracy_before"] == 1.0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls and calls[0][:-1] == ["a", "completion_ids", "prompts", "q", "trainer_state"]
    assert calls[0][-1] in ("level=[0]", "level=[1]")
