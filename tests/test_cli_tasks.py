"""`trice train` end to end on a tiny local model for each task family (issue 4, must-show 3)."""

import json
from tiny import needs_real_data, real_data
from trice.cli import main


def run_cli(tmp_path, local_model, *args):
    out = tmp_path / "run"
    code = main(["train", "--model", str(local_model), "--steps", "2", "--batch-size", "3", "--subsample", "3",
                 "--max-new-tokens", "6", "--n-eval", "3", "--n-train", "6", "--threads", "1",
                 "--out", str(out), *args])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_eval"] == 3 and summary["steps"] == 2
    assert len((out / "memory.jsonl").read_text().splitlines()) == 6
    return summary


@needs_real_data("bbh/object_counting.json")
def test_bbh_object_counting(tmp_path, local_model):
    summary = run_cli(tmp_path, local_model, "--task", "bbh/object_counting", "--data-dir", str(real_data("bbh")))
    assert summary["task"] == "bbh/object_counting"
    # the task's own 3-shot CoT prompt became the exemplars
    assert len((tmp_path / "run" / "exemplars.jsonl").read_text().splitlines()) == 3


def test_gym_chain_sum(tmp_path, local_model, exemplars_file):
    summary = run_cli(tmp_path, local_model, "--task", "gym/chain_sum", "--task-option", "n_test=5",
                      "--task-option", "max_digits=1", "--exemplars", str(exemplars_file))
    assert summary["task"] == "gym/chain_sum"


def test_jsonl_file(tmp_path, local_model, exemplars_file):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"q": f"{i} * 2 =", "a": str(2 * i)}) + "\n" for i in range(12)))
    summary = run_cli(tmp_path, local_model, "--task", f"jsonl:{data}", "--task-option", "question_field=q",
                      "--task-option", "answer_field=a", "--exemplars", str(exemplars_file))
    assert summary["task"].startswith("jsonl")


def test_train_summary_reads_the_change_in_the_before_accuracys_standard_error(capsys):
    """The printed standard error is the before accuracy's (sqrt(p (1 - p) / n)), and it says so."""
    from trice.cli.train import print_summary

    print_summary({"greedy_accuracy_before": 0.25, "greedy_accuracy_after": 0.35, "n_eval": 300,
                   "tokens_sampled": 10, "questions_gained": 40, "questions_lost": 10, "paired_z": 4.24})
    line = capsys.readouterr().out.splitlines()[0]
    se = (0.25 * 0.75 / 300) ** 0.5  # 0.025
    assert f"change +0.100 = {0.1 / se:+.1f} x the before accuracy's standard error {se:.3f}" in line, line
