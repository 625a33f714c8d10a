"""A run directory written by trice 0.1 (tests/fixtures/run-0.1, before the package layout changed) still
resumes, ends exactly as that release's uninterrupted run did, and evaluates with ``trice eval``."""

import json
import shutil
from pathlib import Path

import yaml

from tiny import save_tiny_lm
from trice import train
from trice.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1"
CHECKER = Path(__file__).parent / "lenient_checker.py"


def old_run(tmp_path) -> Path:
    """The fixture's run, with its config pointed at this test's copies of the model, data and checker."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "run", run)
    shutil.copy(FIXTURE / "qa.jsonl", tmp_path / "qa.jsonl")
    model = save_tiny_lm(tmp_path / "model")  # the same weights as the fixture's (seed 0)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(model=str(model), task=f"jsonl:{tmp_path / 'qa.jsonl'}", exemplars=str(run / "exemplars.jsonl"),
                  out=str(run), task_options={"checker": f"{CHECKER}:coin"})
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def test_an_old_run_directory_resumes_to_the_old_releases_result_and_evaluates(tmp_path, capsys):
    run = old_run(tmp_path)
    assert not (run / "summary.json").exists() and (run / "checkpoints" / "step-00000002").is_dir()
    summary = train(resume=str(run))
    expected = json.loads((FIXTURE / "uninterrupted-summary.json").read_text())
    # the data's path, the clock and the process differ; trainable_bytes is new in this release (--fsdp)
    measured = ("task", "wall_seconds", "peak_rss_gb", "trainable_bytes")
    assert {k: v for k, v in summary.items() if k not in measured} == \
        {k: v for k, v in expected.items() if k not in measured}
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"event"' not in line]
    assert steps == [1, 2, 3, 4]  # the records after the checkpoint were dropped and written again
    capsys.readouterr()
    assert main(["eval", str(run), "--sc-samples", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_eval"] == expected["n_eval"] and result["greedy_accuracy"] == expected["greedy_accuracy_after"]
    assert 0.0 <= result["sc_accuracy"] <= 1.0 and result["sc_samples"] == 2
