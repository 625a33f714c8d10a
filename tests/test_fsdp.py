"""Fully sharded training (``--fsdp``, issue 28): two gloo processes under torchrun, on a tiny model, train all its
weights as one process does while each holds half the parameters, gradients and Adam state; a killed run resumes
to the uninterrupted result (on another number of ranks too); its export loads with ``from_pretrained``."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_distributed import _free_port

HERE = Path(__file__).parent
STEPS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp-data")
    (root / "qa.jsonl").write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n"
                                           for i in range(16)))
    (root / "ex.jsonl").write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.",
                                               "answer": "2"}) + "\n")
    return root


def flags(local_model, data, *extra):
    return ["train", "--model", str(local_model), "--task", f"jsonl:{data / 'qa.jsonl'}",
            "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin", "--exemplars", str(data / "ex.jsonl"),
            "--method", "trice", "--params", "full", "--lr", "1e-3", "--steps", str(STEPS), "--batch-size", "5",
            "--subsample", "4", "--max-new-tokens", "6", "--n-eval", "5", "--threads", "1", *extra]


def launch(args, ranks: int, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    if ranks == 1:
        command = [sys.executable, "-m", "trice.cli", *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        command = [torchrun, "--nnodes", "1", "--nproc-per-node", str(ranks), "--master-addr", "127.0.0.1",
                   "--master-port", str(_free_port()), "-m", "trice.cli", *args]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def weights(run: Path) -> dict:
    return load_file(run / "policy" / "model.safetensors")


def assert_close_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    # Adam divides by sqrt(v): where a gradient entry is ~0, float-order noise in it moves the update by up to
    # ~lr; the tolerance is 1% of one step (lr 1e-3) in absolute terms, and 1e-3 relative
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, local_model, data):
    """One process without FSDP, and two with it, on the same seed and global batch."""
    root = tmp_path_factory.mktemp("fsdp-runs")
    launch(flags(local_model, data, "--out", str(root / "one")), ranks=1)
    two = launch(flags(local_model, data, "--fsdp", "--out", str(root / "two")), ranks=2)
    return root / "one", root / "two", two.stderr


def test_two_sharded_processes_train_as_one_process_with_half_the_bytes_each(runs):
    one, two, stderr = runs
    assert (one / "memory.jsonl").read_text() == (two / "memory.jsonl").read_text()
    a, b = weights(one), weights(two)
    assert_close_weights(a, b)
    s1, s2 = (json.loads((run / "summary.json").read_text()) for run in (one, two))
    assert s1["steps_done"] == s2["steps_done"] == STEPS and s1["greedy_accuracy_after"] == s2["greedy_accuracy_after"]
    held = {int(r): (int(p.replace(",", "")), int(g.replace(",", "")), int(o.replace(",", ""))) for r, p, g, o in
            re.findall(r"rank (\d+): ([\d,]+) bytes of parameters, ([\d,]+) of gradients, ([\d,]+) of optimiser", stderr)}
    whole = s1["trainable_bytes"]
    print(f"one process: {whole['parameters']:,} bytes of parameters, {whole['gradients']:,} of gradients, "
          f"{whole['optimizer']:,} of Adam state; " + "; ".join(
              f"FSDP rank {r}: {p:,} / {g:,} / {o:,}" for r, (p, g, o) in sorted(held.items())))
    assert sorted(held) == [0, 1]
    for p, g, o in held.values():
        for mine, total in ((p, whole["parameters"]), (g, whole["gradients"]), (o, whole["optimizer"])):
            assert 0.45 < mine / total < 0.56
    assert sum(h[0] for h in held.values()) == whole["parameters"]  # the shards add up to the model


def _wait_for(path: Path, proc, timeout=300):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() - start < timeout
        time.sleep(0.2)


@pytest.mark.parametrize("ranks_after", [2, 3])
def test_a_killed_sharded_run_resumes_to_the_uninterrupted_result(runs, tmp_path, local_model, data, ranks_after):
    """SIGKILL the two processes once the checkpoint of step 2 is written (each rank's shard in it), resume with
    ``--resume`` on 2 ranks, or on 3 (torch.distributed.checkpoint re-shards): the same memory and, within float
    tolerance, the same weights as the uninterrupted run."""
    _, reference, _ = runs
    out = tmp_path / "run"
    proc = launch(flags(local_model, data, "--fsdp", "--checkpoint-every", "2", "--out", str(out)), ranks=2, wait=False)
    manifest = out / "checkpoints" / "step-00000002" / "manifest.json"
    _wait_for(manifest, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    files = json.loads(manifest.read_text())["files"]
    assert sum(name.startswith("shards/") and name.endswith(".distcp") for name in files) == 2  # one per rank
    assert not (out / "summary.json").exists()
    launch(["train", "--resume", str(out)], ranks=ranks_after)
    assert (out / "memory.jsonl").read_text() == (reference / "memory.jsonl").read_text()
    assert_close_weights(weights(reference), weights(out))


def test_the_export_of_a_sharded_run_loads_with_from_pretrained_and_answers_as_the_run(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    from test_export import usage_code
    from trice.artifacts.run_dir import RunDir
    from trice.cli import main
    from trice.evaluation.accuracy import greedy_accuracy
    from trice.methods import method_from_config
    from trice.modeling import Policy, load_model
    from trice.prompts import resolve_format
    from trice.tasks import task_from_config

    _, run, _ = runs
    out = tmp_path / "exported"
    assert main(["export", str(run), str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"],
                               weights(run)["model.layers.0.mlp.up_proj.weight"])
    config = RunDir(run).config()
    task = task_from_config(config)
    base, tok = load_model(config.model, config.dtype, "cpu")
    policy = Policy.load(base, tok, RunDir(run).policy_path)
    fmt = resolve_format(config.prompt_format, tok)
    questions = task.test[:5]
    accuracy, _, expected = greedy_accuracy(policy, task, questions, config.max_new_tokens, prompt=method_from_config(
        config, [], fmt).prompt, stop=fmt.stop)
    assert accuracy == json.loads((run / "summary.json").read_text())["greedy_accuracy_after"]
    assert [usage_code(out)["generate"](e.question) for e in questions] == expected


def test_a_sharded_lora_run_trains_the_adapter_as_one_process(tmp_path, local_model, data):
    """--fsdp with --params lora: the frozen base and the adapter are sharded; the adapter after 4 steps matches
    one process's within 1e-5 absolute (float summation order), and the memories are identical."""
    lora = ["--params", "lora", "--lr", "1e-2"]
    launch([*flags(local_model, data, "--out", str(tmp_path / "one")), *lora], ranks=1)
    launch([*flags(local_model, data, "--fsdp", "--out", str(tmp_path / "two")), *lora], ranks=2)
    assert (tmp_path / "one" / "memory.jsonl").read_text() == (tmp_path / "two" / "memory.jsonl").read_text()
    a, b = (load_file(tmp_path / run / "policy" / "adapter_model.safetensors") for run in ("one", "two"))
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5)
