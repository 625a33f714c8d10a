"""The training loop and CLI end to end on a tiny random model (seconds, no network)."""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.cli import main

HERE = Path(__file__).parent


def small_config(tmp_path, **kw):
    base = dict(steps=6, batch_size=4, subsample=4, max_new_tokens=8, n_eval=6, out=str(tmp_path / "run"),
                threads=1, seed=0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_loop_trains_only_trainable_parameters_and_writes_the_run(tmp_path, params):
    model, tok = make_tiny_lm(0)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    summary = train(small_config(tmp_path, params=params, lr=0.05 if params == "prompt" else 1e-2),
                    model=model, tokenizer=tok, task=coin_task())
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "memory.jsonl", "summary.json", "exemplars.jsonl", "policy"):
        assert (run / name).exists(), name
    for key in ("greedy_accuracy_before", "greedy_accuracy_after", "n_eval"):
        assert key in summary
    assert summary["n_eval"] == 6
    steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in l
             and '"event"' not in l]
    assert [s["step"] for s in steps] == list(range(1, 7))
    for key in ("proposal_accuracy", "memory_coverage", "mean_beta", "num_valid", "loss", "grad_norm",
                "tokens_sampled", "seconds_sampling", "seconds_scoring"):
        assert key in steps[0]
    assert any(s["num_terms"] > 0 for s in steps)  # some steps had gradient terms
    memory = [json.loads(l) for l in (run / "memory.jsonl").read_text().splitlines()]
    assert len(memory) == 12 and summary["memory_coverage"] == sum(m["correct"] for m in memory) / 12
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), frozen_before.get(n, p))}
    if params == "full":
        assert changed == set(frozen_before)  # every weight trained
    else:
        assert not changed & set(frozen_before)  # base weights bitwise unchanged


def test_loop_is_reproducible(tmp_path):
    results = []
    for k in range(2):
        model, tok = make_tiny_lm(0)
        train(small_config(tmp_path, out=str(tmp_path / f"r{k}")), model=model, tokenizer=tok, task=coin_task())
        results.append((tmp_path / f"r{k}" / "memory.jsonl").read_text())
    assert results[0] == results[1]


def test_memory_update_follows_acceptance_rule(tmp_path):
    model, tok = make_tiny_lm(1)
    train(small_config(tmp_path, steps=3), model=model, tokenizer=tok, task=coin_task())
    steps = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    coverage = [s["memory_coverage"] for s in steps if "memory_coverage" in s]
    assert coverage == sorted(coverage)  # an accepted (correct) proposal never loses coverage


# --- CLI on a model saved to a local directory --------------------------------------------------
@pytest.fixture
def jsonl_task(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n" for i in range(20)))
    exemplars = tmp_path / "exemplars.jsonl"
    exemplars.write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.", "answer": "2"}) + "\n")
    return data, exemplars


@pytest.mark.parametrize("method", ["trice", "pt-direct"])  # pt-direct: eval must use its direct prompt
def test_cli_train_then_eval_reproduces_the_final_accuracy(tmp_path, local_model, jsonl_task, capsys, method):
    data, exemplars = jsonl_task
    out = tmp_path / "cli-run"
    code = main(["train", "--method", method, "--model", str(local_model), "--task", f"jsonl:{data}", "--task-option",
                 f"checker={HERE / 'lenient_checker.py'}:coin", "--params", "prompt", "--steps", "3",
                 "--batch-size", "4", "--subsample", "3", "--lr", "0.05", "--max-new-tokens", "9",
                 "--eval-every", "2", "--n-eval", "4", "--seed", "1", "--out", str(out),
                 "--exemplars", str(exemplars), "--threads", "1"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    # the saved soft prompt loads back with PEFT itself
    base, _ = make_tiny_lm(0)
    reloaded = PeftModel.from_pretrained(base, out / "policy")
    saved = reloaded.prompt_encoder["default"].embedding.weight
    assert saved.shape[0] > 0
    capsys.readouterr()
    assert main(["eval", str(out), "--sc-samples", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["greedy_accuracy"] == summary["greedy_accuracy_after"]
    assert result["n_eval"] == summary["n_eval"] == 4
    assert 0.0 <= result["sc_accuracy"] <= 1.0


@pytest.mark.parametrize("args, message", [
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--subsample", "0"], "subsample (L) must be >= 1"),
    (["--batch-size", "1"], "batch_size (M) must be >= 2"),
    (["--params", "adapter"], "params must be one of"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--lr", "fast"], "lr must be float, got str 'fast'"),
])
def test_bad_inputs_give_one_line_errors(tmp_path, jsonl_task, capsys, args, message):
    data, _ = jsonl_task
    code = main(["train", "--task", f"jsonl:{data}", "--out", str(tmp_path / "x"), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_scientific_notation_is_a_float_on_the_command_line_and_in_yaml(tmp_path):
    """PyYAML (YAML 1.1) reads ``1e-3`` without a dot as a string; the config reads it as the float meant."""
    from trice.cli.flags import parse_value
    from trice.config import TrainConfig

    assert parse_value("1e-3") == "1e-3"  # the YAML 1.1 behaviour the config has to undo
    (tmp_path / "c.yaml").write_text("lr: 1e-3\ntime_budget: 5E+2\n")
    config = TrainConfig.from_yaml(tmp_path / "c.yaml").validate()
    assert config.lr == 1e-3 and isinstance(config.lr, float) and config.time_budget == 500.0


def test_unloadable_gguf_and_empty_task_give_one_line_errors(tmp_path, local_model, capsys):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args, message in [(["--model", str(bad), "--task", "gym/chain_sum"], "broken.gguf"),
                          (["--model", str(local_model), "--task", f"jsonl:{empty}"], "empty.jsonl")]:
        code = main(["train", *args, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err


def test_paired_z_counts_questions_that_changed():
    from trice.evaluation.statistics import paired_counts as paired_z

    result = paired_z([True, False, False, True, False], [True, True, True, False, False])
    assert result == {"questions_gained": 2, "questions_lost": 1, "paired_z": pytest.approx(1 / 3 ** 0.5)}
    assert paired_z([True], [True])["paired_z"] == 0.0


def test_policy_snapshots_along_the_run_evaluate_like_the_final_policy(tmp_path, local_model, jsonl_task, capsys):
    """``--save-policy-every 2`` keeps the policy of steps 2 and 4 (logged with their cost); ``trice eval RUN
    --policy policies/step-4`` scores the last one as the run's own final evaluation did, and writes its
    eval.json beside it."""
    data, exemplars = jsonl_task
    out = tmp_path / "snap"
    assert main(["train", "--model", str(local_model), "--task", f"jsonl:{data}", "--task-option",
                 f"checker={HERE / 'lenient_checker.py'}:coin", "--params", "prompt", "--steps", "4",
                 "--batch-size", "4", "--subsample", "3", "--lr", "0.05", "--max-new-tokens", "9", "--n-eval", "4",
                 "--save-policy-every", "2", "--out", str(out), "--exemplars", str(exemplars), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    saved = [e for e in events if e.get("event") == "policy_saved"]
    assert [e["step"] for e in saved] == [2, 4] and all(e["token_passes"] > 0 for e in saved)
    assert saved[0]["seconds_elapsed"] < saved[1]["seconds_elapsed"]
    last = out / saved[1]["path"]
    capsys.readouterr()
    assert main(["eval", str(out), "--policy", str(last)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["greedy_accuracy"] == summary["greedy_accuracy_after"]
    written = json.loads((last / "eval.json").read_text())
    assert written.pop("verdicts") == summary["verdicts_after"]  # question by question, as the run's own
    assert written == result
    assert main(["eval", str(out), "--policy", str(out / "policies" / "nope")]) == 2
    assert "is not a saved policy" in capsys.readouterr().err


def test_a_time_budget_ends_the_run_before_its_step_count(tmp_path, local_model, jsonl_task):
    data, exemplars = jsonl_task
    out = tmp_path / "timed"
    assert main(["train", "--model", str(local_model), "--task", f"jsonl:{data}", "--task-option",
                 f"checker={HERE / 'lenient_checker.py'}:coin", "--params", "prompt", "--steps", "1000",
                 "--batch-size", "4", "--subsample", "3", "--max-new-tokens", "9", "--n-eval", "4",
                 "--time-budget", "1", "--out", str(out), "--exemplars", str(exemplars), "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["steps_done"] < 1000
