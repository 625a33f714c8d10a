"""Model loading and the Policy: initialisation, what trains, save/load, errors."""

import os

import pytest
import torch
from peft import PeftModel

from tiny import make_tiny_lm
from trice.errors import TriceError
from trice.modeling import DEFAULT_MODEL, Policy, find_packaged_gguf, load_model
from trice.modeling.scoring import score

PREFIX = "Think step by step."
PROMPTS = ["Q: 2+3?\nA:", "hi there", "x"]
CONTS = [" 5. The answer is 5.", "!", " ok\n"]


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def frozen_names(policy):
    return {n for n, p in policy.model.named_parameters() if not p.requires_grad}


def adam_steps(policy, steps=1):
    opt = torch.optim.Adam(policy.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (-score(policy, PROMPTS, CONTS).mean()).backward()
        opt.step()


def test_soft_prompt_starts_as_the_prefix_text(tiny_lm):
    model, tok = tiny_lm
    ids = torch.tensor(tok(PREFIX, add_special_tokens=False).input_ids)
    expected = model.get_input_embeddings()(ids).detach()
    policy = Policy.create(model, tok, params="prompt", prefix_text=PREFIX)
    assert policy.params == "prompt" and policy.tokenizer is tok
    torch.testing.assert_close(policy.prefix_embeds().detach(), expected, rtol=0, atol=0)
    assert policy.prefix_embeds().requires_grad
    # num_virtual_tokens truncates or repeats the text's embeddings.
    short = Policy.create(*make_tiny_lm(), params="prompt", prefix_text=PREFIX, num_virtual_tokens=4)
    torch.testing.assert_close(short.prefix_embeds().detach(), expected[:4])
    long = Policy.create(*make_tiny_lm(), params="prompt", prefix_text="abc", num_virtual_tokens=7)
    abc = model.get_input_embeddings()(torch.tensor(tok("abc", add_special_tokens=False).input_ids)).detach()
    torch.testing.assert_close(long.prefix_embeds().detach(), abc[[0, 1, 2, 0, 1, 2, 0]])


def test_prompt_step_changes_only_the_soft_prompt(tiny_lm):
    policy = Policy.create(*tiny_lm, params="prompt", prefix_text=PREFIX)
    (soft,) = policy.trainable_parameters()
    before_soft, before_base = soft.detach().clone(), snapshot(policy.base_model)
    adam_steps(policy)
    assert not torch.equal(soft, before_soft)
    after = policy.base_model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before_base.items())
    assert all(not p.requires_grad for p in policy.base_model.parameters())


def test_lora_steps_change_only_lora(tiny_lm):
    policy = Policy.create(*tiny_lm, params="lora", prefix_text=PREFIX)
    trainable = dict((n, p) for n, p in policy.model.named_parameters() if p.requires_grad)
    assert trainable and all("lora_" in n for n in trainable)
    before = snapshot(policy.model)
    frozen = frozen_names(policy)
    adam_steps(policy, steps=2)  # LoRA B starts at 0, so A only gets a gradient from step 2
    after = dict(policy.model.named_parameters())
    assert all(not torch.equal(after[n], before[n]) for n in trainable)
    assert all(torch.equal(after[n], before[n]) for n in frozen)
    assert len(policy.prefix_embeds()) == len(PREFIX)  # hard-text prefix, one token per character


def test_full_mode_trains_every_weight(tiny_lm):
    policy = Policy.create(*tiny_lm, params="full")
    assert policy.prefix_embeds().shape == (0, 48)
    params = dict(policy.model.named_parameters())
    assert len(policy.trainable_parameters()) == len(params)
    before = snapshot(policy.model)
    adam_steps(policy)
    assert all(not torch.equal(p, before[n]) for n, p in params.items())


def _trained(params, tmp_path):
    policy = Policy.create(*make_tiny_lm(), params=params, prefix_text="" if params == "full" else PREFIX)
    adam_steps(policy, steps=2)
    policy.save(tmp_path / "ckpt")
    return policy


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_save_and_load_round_trip(params, tmp_path):
    policy = _trained(params, tmp_path)
    loaded = Policy.load(*make_tiny_lm(), tmp_path / "ckpt")
    assert loaded.params == params and loaded.prefix_text == policy.prefix_text
    with torch.no_grad():
        torch.testing.assert_close(score(loaded, PROMPTS, CONTS), score(policy, PROMPTS, CONTS),
                                   rtol=16 * torch.finfo(torch.float32).eps, atol=1e-5)
        torch.testing.assert_close(loaded.prefix_embeds(), policy.prefix_embeds())
    assert len(loaded.trainable_parameters()) == len(policy.trainable_parameters())  # can resume training


@pytest.mark.parametrize("params", ["prompt", "lora"])
def test_saved_adapter_loads_with_plain_peft(params, tmp_path):
    policy = _trained(params, tmp_path)
    reloaded = PeftModel.from_pretrained(make_tiny_lm()[0], str(tmp_path / "ckpt"))
    mine = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    theirs = dict(reloaded.named_parameters())
    assert mine and all(torch.equal(theirs[n], p) for n, p in mine.items())


def test_policy_errors(tiny_lm, tmp_path):
    with pytest.raises(TriceError, match="non-empty prefix"):
        Policy.create(*tiny_lm, params="prompt", prefix_text="")
    with pytest.raises(TriceError, match="unknown params"):
        Policy.create(*make_tiny_lm(), params="adapters")
    with pytest.raises(TriceError, match="not a saved trice policy"):
        Policy.load(*make_tiny_lm(), tmp_path)


def test_load_model_from_directory(tmp_path):
    model, tok = make_tiny_lm()
    tok.pad_token = None  # load_model must supply one
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, loaded_tok = load_model(str(tmp_path / "m"))
    assert loaded_tok.pad_token == loaded_tok.eos_token == "</s>"
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert load_model(str(tmp_path / "m"), dtype="bfloat16")[0].dtype == torch.bfloat16
    assert loaded.dtype == torch.float32  # the default, auto, is float32 on a CPU


def test_auto_dtype_is_bfloat16_on_a_gpu_that_supports_it(monkeypatch):
    from trice.modeling import resolve_dtype

    assert resolve_dtype("auto", "cpu") == resolve_dtype("auto", None) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    assert resolve_dtype("float32", "cuda:0") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100
    assert resolve_dtype("auto", "cuda:0") == torch.float32


def test_load_model_errors(tmp_path):
    for bad in (str(tmp_path / "nope"), "./no/such/dir", str(tmp_path / "missing.gguf")):
        with pytest.raises(TriceError, match="not found") as info:
            load_model(bad)
        assert "\n" not in str(info.value)
    corrupt = tmp_path / "x.gguf"
    corrupt.write_bytes(b"this is not a gguf file\n" * 100)
    with pytest.raises(TriceError, match="could not load GGUF file") as info:
        load_model(str(corrupt))
    assert "\n" not in str(info.value) and str(corrupt) in str(info.value)
    with pytest.raises(TriceError, match="unknown dtype"):
        load_model(str(corrupt), dtype="int3")


def test_packaged_gguf_is_found():
    path = find_packaged_gguf()
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_packaged_model_samples_text(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # conftest sets 1 for the tiny models
    try:
        _check_packaged_model(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_packaged_model(tmp_path):
    from trice.generation.sampler import sample

    model, tok = load_model(DEFAULT_MODEL)
    assert tok.pad_token is not None and not getattr(model, "is_quantized", False)
    policy = Policy.create(model, tok, params="prompt", prefix_text="Answer the question step by step.")
    prompts = ["Question: What is 2 + 3?\nAnswer:", "Question: Name a colour.\nAnswer:"]
    out = sample(policy, prompts, temperature=0, max_new_tokens=16)
    assert all(isinstance(s.text, str) and s.text.strip() for s in out)
    assert score(policy, prompts, [s.text for s in out]).isfinite().all()
    policy.save(tmp_path / "p")  # a GGUF-loaded model must still be saveable
