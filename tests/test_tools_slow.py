"""The calculator on the packaged SmolLM2 (minutes): `pytest -m slow tests/test_tools_slow.py`."""

import json

import pytest

from trice.cli import main
from trice.tools import OPEN


@pytest.mark.slow
def test_demo_with_the_calculator_calls_it_and_beats_the_same_exemplars_without_it(tmp_path, capsys):
    """`trice demo --tools calculator` (shortened): the exemplar search finds rationales that call the
    calculator, the memory stores the calculator's spans, and on the same held-out questions greedy
    decoding with the calculator beats the same policy without it (measured on 100 questions:
    0.62 against 0.13; asserted here as McNemar z > 3 on 60). 128 training questions: the search scans at
    most n_train of them, and 32 held no 3 correct calling rationales (measured)."""
    from trice.evaluation.accuracy import greedy_accuracy
    from trice.methods.initialisation import load_exemplars
    from trice.modeling import Policy, load_model
    from trice.prompts import PLAIN
    from trice.tasks import task_from_config
    from trice.artifacts.run_dir import RunDir
    from trice.tools import Calculator

    out = tmp_path / "demo-tools"
    code = main(["demo", "--tools", "calculator", "--steps", "2", "--n-eval", "60", "--task-option", "n_train=128",
                 "--task-option", "n_test=60", "--out", str(out)])
    assert code == 0
    exemplars = [json.loads(l) for l in (out / "exemplars.jsonl").read_text().splitlines()]
    assert len(exemplars) == 3 and all("<<" in e["rationale"] and OPEN not in e["rationale"] for e in exemplars)
    memory = [json.loads(l) for l in (out / "memory.jsonl").read_text().splitlines()]
    assert sum(OPEN in m["rationale"] for m in memory) > len(memory) / 2
    evals = [r for r in RunDir(out).metrics() if r.get("event") == "eval"]
    assert evals[0]["tool_use"] > 0.5 and evals[0]["tool_calls_valid"] > 0.5

    config = RunDir(out).config()
    task = task_from_config(config)
    model, tok = load_model(config.model, "float32", "cpu")
    policy = Policy.create(model, tok, "lora", prefix_text=PLAIN.prefix(load_exemplars(out / "exemplars.jsonl")))
    test = task.test[:60]
    _, without, _ = greedy_accuracy(policy, task, test, 64, 64, prompt=PLAIN.prompt, stop=PLAIN.stop)
    _, with_tool, _ = greedy_accuracy(policy, task, test, 64, 64, prompt=PLAIN.prompt, stop=PLAIN.stop,
                                      hook=Calculator())
    gained = sum(w and not o for w, o in zip(with_tool, without))
    lost = sum(o and not w for w, o in zip(with_tool, without))
    assert (gained - lost) / max(gained + lost, 1) ** 0.5 > 3
