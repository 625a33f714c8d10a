"""Data parallelism (issue 8): two gloo processes under torchrun compute what one process computes."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trice.runtime.distributed import World
from trice.generation.draw import inverse_cdf, uniforms
from trice.generation.sampler import sample

HERE = Path(__file__).parent


def test_uniforms_are_a_function_of_key_row_and_step_only():
    u = uniforms(123, torch.arange(100_000), 7)
    assert u.dtype == torch.float64 and 0 <= float(u.min()) and float(u.max()) < 1
    # moments of U(0, 1): mean 1/2 (sd 0.00091 over 1e5), variance 1/12 (sd 0.00024); 5 sd tolerance
    assert abs(float(u.mean()) - 0.5) < 0.0046 and abs(float(u.var()) - 1 / 12) < 0.0012
    assert torch.equal(uniforms(123, torch.tensor([5, 2]), 7), u[[5, 2]])  # no dependence on the other rows
    assert not torch.equal(uniforms(124, torch.arange(10), 7), u[:10])
    assert not torch.equal(uniforms(123, torch.arange(10), 8), u[:10])
    # consecutive steps of one row are uncorrelated (|r| < 5 / sqrt(n))
    a, b = uniforms(9, torch.arange(50_000), 0), uniforms(9, torch.arange(50_000), 1)
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 5 / 50_000 ** 0.5


def test_inverse_cdf_draws_with_the_right_frequencies_and_never_a_zero():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0]).expand(200_000, -1)
    draws = inverse_cdf(probs, uniforms(7, torch.arange(200_000), 0))
    freq = torch.bincount(draws, minlength=5).double() / 200_000
    assert freq[1] == 0 and freq[4] == 0
    sd = (probs[0].double() * (1 - probs[0].double()) / 200_000).sqrt()
    assert torch.all((freq - probs[0]).abs() <= 5 * sd + 1e-12), freq


def test_a_rows_sample_does_not_depend_on_its_batch(tiny_lm):
    """The property data parallelism rests on: row i of a call is the same whatever rows share its
    batch or which rank samples it."""
    from trice.modeling import Policy

    model, tok = tiny_lm
    policy = Policy.create(model, tok, "prompt", prefix_text="Q: ")
    prompts = [f"{i} + {i % 3} =" + " " * (i % 4) for i in range(10)]
    whole = sample(policy, prompts, max_new_tokens=8, generator=torch.Generator().manual_seed(0), batch_size=10)
    chunked = sample(policy, prompts, max_new_tokens=8, generator=torch.Generator().manual_seed(0), batch_size=3)
    assert [s.text for s in whole] == [s.text for s in chunked]
    assert len({s.text for s in whole}) > 3  # real samples, not one string


def test_world_splits_rows_round_robin_and_gathers_in_order():
    worlds = [World(r, 3) for r in range(3)]
    assert [w.rows(7) for w in worlds] == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum((w.rows(7) for w in worlds), [])) == list(range(7))
    assert World().gather_rows(2, ["a", "b"]) == ["a", "b"] and World().is_main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["trice", "rloo"])
def test_two_gloo_processes_equal_one_process(tmp_path, local_model, method):
    """torchrun, 2 CPU processes (gloo), the same seed and global batch: the same memory, the same
    proposals and terms, and the same parameters after 4 updates as one process (float tolerance:
    the gradient sum is split across ranks, so only the summation order differs)."""
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n" for i in range(16)))
    exemplars = tmp_path / "ex.jsonl"
    exemplars.write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.", "answer": "2"}) + "\n")
    flags = ["train", "--model", str(local_model), "--task", f"jsonl:{data}",
             "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin", "--exemplars", str(exemplars),
             "--method", method, "--params", "lora", "--lr", "0.05", "--steps", "4", "--batch-size", "5",
             "--subsample", "4", "--k", "2", "--max-new-tokens", "6", "--n-eval", "5", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    single = subprocess.run([sys.executable, "-m", "trice.cli", *flags, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    launched = subprocess.run([torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                               "--master-port", str(_free_port()), "-m", "trice.cli", *flags,
                               "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]

    one, two = tmp_path / "one", tmp_path / "two"
    if method == "trice":
        assert (one / "memory.jsonl").read_text() == (two / "memory.jsonl").read_text()
    a, b = load_file(one / "policy" / "adapter_model.safetensors"), load_file(two / "policy" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    initial_b = 0.0  # LoRA B starts at zero: the trained B matrices are the updates themselves
    moved = max(float((a[k] - initial_b).abs().max()) for k in a if "lora_B" in k)
    assert moved > 1e-3  # the updates are not trivially equal
    # Adam divides by sqrt(v): where a gradient entry is ~0, float-order noise in it moves the update by
    # up to ~1e-5. Tolerance 1e-4 absolute: 0.2% of one step's size (lr 0.05), far below any real change.
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4)

    def steps(run):
        return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "step" in r
                and "event" not in r]

    for r1, r2 in zip(steps(one), steps(two), strict=True):
        assert r1["tokens_sampled"] == r2["tokens_sampled"] and r1["proposal_accuracy"] == r2["proposal_accuracy"]
        assert r1["sequences_scored"] == r2["sequences_scored"]
        assert r2["loss"] == pytest.approx(r1["loss"], rel=1e-4, abs=1e-6)
    s1, s2 = (json.loads((run / "summary.json").read_text()) for run in (one, two))
    assert s1["greedy_accuracy_after"] == s2["greedy_accuracy_after"]
    assert not (two / "checkpoints").exists() or len(list((two / "checkpoints").iterdir())) <= 2
