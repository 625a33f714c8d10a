"""The task names users type, resolved by ``trice.tasks.get_task``."""

import json

import pytest

from tiny import needs_real_data, real_data
from trice.errors import TriceError
from trice.tasks import Example, Task, get_task
from trice.tasks.bbh import BBHTask
from trice.tasks.gsm8k import GSM8KTask
from trice.tasks.gym import GymTask
from trice.tasks.jsonl import JSONLTask

needs_data = needs_real_data("gsm8k/train.jsonl", "bbh/cot-prompts")


def _assert_task_shape(task: Task, splits=("train", "test")):
    assert isinstance(task, Task)
    for split in splits:
        examples = getattr(task, split)
        assert isinstance(examples, list) and examples
        for ex in examples[:50]:
            assert isinstance(ex, Example) and isinstance(ex.question, str)
            assert isinstance(ex.answer, str) and ex.answer
    ex = getattr(task, splits[0])[0]
    assert task.is_correct(f"So the answer is {ex.answer}.", ex.answer) is True
    assert task.check("No idea.", ex) is False


@needs_data
@pytest.mark.parametrize("name, kind, splits", [
    ("gsm8k", GSM8KTask, ("train",)),  # the shared data holds the training split only
    ("bbh", BBHTask, ("train", "test")),
    ("bbh/dyck_languages", BBHTask, ("train", "test")),
])
def test_dataset_names(monkeypatch, name, kind, splits):
    monkeypatch.setenv("TRICE_DATA_DIR", str(real_data("gsm8k").parent))
    task = get_task(name)
    assert type(task) is kind and task.name == name
    _assert_task_shape(task, splits)


def test_gym_and_jsonl_names(tmp_path):
    task = get_task("gym/chain_sum", n_train=3, n_test=2, min_terms=2, max_terms=2)
    assert type(task) is GymTask
    _assert_task_shape(task)
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"a{i}"}) + "\n"
                            for i in range(10)))
    task = get_task(f"jsonl:{path}")
    assert type(task) is JSONLTask and task.name == f"jsonl:{path}"
    _assert_task_shape(task)
    assert type(get_task("jsonl:toy.jsonl", data_dir=str(tmp_path))) is JSONLTask


@pytest.mark.parametrize("name, message", [
    ("gsm9k", r"unknown task 'gsm9k'; known families: bbh, gsm8k, gym, hf, jsonl \(e.g. gsm8k, bbh/<task>, "
              r"gym/<dataset>, jsonl:<path>, hf:<path-or-hub-id>\)"),
    ("bbh/nope", r"unknown BBH task 'bbh/nope'"),
    ("gsm8k/main", r"unknown task 'gsm8k/main': GSM8K has no subtasks"),
    ("jsonl", r"task 'jsonl' needs a path"),
])
def test_unknown_names(name, message):
    with pytest.raises(TriceError, match=message) as info:
        get_task(name)
    assert "\n" not in str(info.value)


def test_gsm8k_rejects_unknown_options(tmp_path):
    with pytest.raises(TriceError, match=r"gsm8k: unknown option\(s\) n_train"):
        get_task("gsm8k", data_dir=str(tmp_path), n_train=10)


@pytest.mark.parametrize("options, message", [
    ({"max_terms": "abc"}, r"gym/chain_sum: option max_terms='abc' must be int, got str"),
    ({"allow_negation": 1}, r"gym/chain_sum: option allow_negation=1 must be bool, got int"),
    ({"max_trems": 3}, r"gym/chain_sum: unknown option 'max_trems' \(known: n_train, n_test, allow_negation"),
])
def test_gym_options_are_typed_and_named_in_errors(options, message):
    with pytest.raises(TriceError, match=message):
        get_task("gym/chain_sum", n_train=2, n_test=1, **options)


def test_task_options_from_the_command_line_are_yaml_scalars(tmp_path, local_model):
    from trice.cli import main

    code = main(["train", "--model", str(local_model), "--task", "gym/chain_sum", "--task-option", "max_terms=abc",
                 "--out", str(tmp_path / "r")])
    assert code == 2  # a one-line error naming the option, not a comparison error inside reasoning-gym
    from trice.cli.flags import parse_value

    assert [parse_value(v) for v in ("3", "0.5", "true", "[1, 2]", "abc")] == [3, 0.5, True, [1, 2], "abc"]


def test_gym_container_options_pass_through():
    """List- and tuple-typed reasoning-gym options (basic_arithmetic's operators) are not refused as the
    wrong type; a YAML list is given as a tuple where the config wants one."""
    task = get_task("gym/basic_arithmetic", n_train=20, n_test=2, operators=["+"], min_terms=2, max_terms=2)
    assert all("+" in e.question and not any(op in e.question for op in ("*", "/", " - ")) for e in task.train)


def test_the_questions_depend_on_the_data_seed_not_the_training_seed(tmp_path):
    """Runs of different training seeds evaluate on the same held-out questions (the intervals over seeds then
    hold training noise only); a run directory from before data_seed keeps the data its seed drew."""
    import yaml

    from trice import TrainConfig
    from trice.artifacts.run_dir import RunDir
    from trice.tasks import task_from_config

    def questions(**kw):
        task = task_from_config(TrainConfig(task="gym/chain_sum", task_options={"n_train": 6, "n_test": 6}, **kw))
        return [e.question for e in task.train], [e.question for e in task.test]

    assert questions(seed=0) == questions(seed=1) == questions(seed=2, data_seed=0)
    assert questions(seed=0, data_seed=1) != questions(seed=0)
    config = TrainConfig(seed=2).to_dict()
    del config["data_seed"]  # a 0.1 run directory
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert RunDir(tmp_path).config().data_seed == 2
