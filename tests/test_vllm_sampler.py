"""The vLLM sampling backend (issue 8), with vLLM replaced at its API boundary by tests/fake_vllm.py."""

import json
import sys

import pytest
import torch

import fake_vllm
from trice import TrainConfig, train
from trice.errors import TriceError
from trice.modeling import Policy, load_model
from trice.generation.vllm_sampler import VLLMSampler


@pytest.fixture
def with_fake_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_vllm.created.clear()
    return fake_vllm


def test_clear_errors_without_vllm_or_gpu_or_with_a_gguf(monkeypatch, local_model):
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(TriceError, match=r"needs vLLM.*pip install 'trice-cot\[vllm\]'"):
        VLLMSampler(policy, str(local_model))
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TriceError, match="needs a CUDA GPU"):
        VLLMSampler(policy, str(local_model))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(TriceError, match="hub id or a model directory"):
        VLLMSampler(policy, "smollm2-135m")


def _train(tmp_path, local_model, params, **overrides):
    from tiny import coin_task

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
    """Every step samples through vLLM, after the update was pushed: the trainer's re-scoring of the
    sampled rows agrees with vLLM's log-probs (gap ~ 0), step after step as the weights move."""
    steps = _train(tmp_path, local_model, params, steps=8)
    (llm,) = with_fake_vllm.created
    assert llm.kwargs["enable_prompt_embeds"] is (params == "prompt")
    gaps = [r["sampler_logprob_gap"] for r in steps]
    assert len(gaps) == 8 and all(abs(g) < 1e-4 for g in gaps), gaps
    assert any(r["grad_norm"] > 0 for r in steps[:-1])  # the weights did move between samples
    if params == "prompt":
        # the memory's guide samples under a hard-text prefix (token ids), every proposal with the soft prompt
        guide, proposals = llm.requests[:12], llm.requests[12:]
        assert not llm.loaded and len(proposals) == 8 * 4
        assert all("prompt_token_ids" in r for r in guide) and all("prompt_embeds" in r for r in proposals)
    else:
        assert llm.loaded and not any("lora_" in name for name in llm.loaded)
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


def test_each_row_has_its_own_seed(with_fake_vllm, local_model):
    """A row's vLLM sample depends on the call's key and its row id, not on the other rows."""
    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    vs = VLLMSampler(policy, str(local_model))
    prompts = [f"{i} + 1 =" for i in range(6)]
    whole = vs.generate(prompts, max_new_tokens=5, temperature=1.0, key=7)
    part = vs.generate(prompts[3:], max_new_tokens=5, temperature=1.0, key=7, row_ids=[3, 4, 5])
    assert [s.text for s in whole[3:]] == [s.text for s in part]
    assert [s.text for s in vs.generate(prompts, max_new_tokens=5, temperature=1.0, key=8)] != [s.text for s in whole]


def test_an_engine_in_another_process_is_a_clear_error(with_fake_vllm, local_model):
    class Remote:  # what vLLM V1 looks like with its engine in a subprocess: no model_executor here
        llm_engine = object()

    policy = Policy.create(*load_model(str(local_model), device="cpu"), params="lora")
    with pytest.raises(TriceError, match="engine runs in another process"):
        VLLMSampler(policy, str(local_model), llm=Remote()).push()
