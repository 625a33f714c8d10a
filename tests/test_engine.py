"""The slot engine (trice.generation.slot_engine) against the plain path, and LoRA merged while sampling.

- same greedy outputs and the same tempered samples as the plain DynamicCache path (both use the
  per-row counter-based randomness, so equal logits give equal draws);
- a row's sample does not depend on its batch, on refilling (few slots, many prompts), on packing
  the cache or shrinking the batch, or on LoRA being merged;
- the frozen weights are bit-identical after merged sampling; merged and unmerged forwards agree.
"""

import pytest
import torch

import trice.generation.slot_engine as engine
from tiny import make_tiny_lm, make_tiny_policy
from trice.modeling.merged_lora import MergedLora
from trice.generation.sampler import TorchSampler, auto_engine, sample

PREFIX = "Question: 1 + 1 =\nAnswer: Let's think step by step.\n1 + 1 = 2. So the answer is 2.\n\n"
PROMPTS = ["Question: 2 + 3 =\nAnswer: Let's think step by step.\n", "Question: 7 =\nAnswer:", "x",
           "Question: 4 + 4 + 1 =\nAnswer: Let's think step by step.\n4 + 4", "", "a b c d e f g h i j k l"] * 3


def make_policy(params, prefix=PREFIX, seed=0):
    return make_tiny_policy(params, prefix, seed)


def draw(policy, prompts=PROMPTS, engine_name="slots", batch_size=4, temperature=1.0, stop=(), seed=0, n=30,
         merged=None):
    return sample(policy, prompts, temperature=temperature, max_new_tokens=n, stop=stop, batch_size=batch_size,
                  engine=engine_name, generator=torch.Generator().manual_seed(seed), merged=merged)


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_slots_equal_the_plain_path(params, temperature):
    policy = make_policy(params)
    plain = draw(policy, engine_name="plain", batch_size=len(PROMPTS), temperature=temperature)
    slots = draw(policy, batch_size=4, temperature=temperature)  # 18 prompts through 4 slots: refills
    assert slots == plain
    assert len({s.text for s in slots}) > 3 and len({s.num_tokens for s in slots}) > 1  # not vacuous


def test_stop_strings_and_eos_end_rows_as_on_the_plain_path():
    policy = make_policy("full")
    free = draw(policy, batch_size=len(PROMPTS), stop=())
    # two-character strings the model does produce, so that rows stop at different times
    stops = tuple({s.text[3:5] for s in free if len(s.text) > 6})[:3]
    assert stops
    plain = draw(policy, engine_name="plain", batch_size=5, stop=stops)
    slots = draw(policy, batch_size=5, stop=stops)
    assert slots == plain
    assert sum(s.finished for s in slots) >= 3 and any(not s.finished for s in slots + free)


def test_a_rows_sample_does_not_depend_on_batch_refill_or_packing(monkeypatch):
    policy = make_policy("lora")
    packs, shrinks = [], []
    original_pack, original_shrink = engine._Engine.pack, engine._Engine.shrink
    monkeypatch.setattr(engine._Engine, "pack", lambda self: (packs.append(1), original_pack(self)))
    monkeypatch.setattr(engine._Engine, "shrink", lambda self, keep: (shrinks.append(1), original_shrink(self, keep)))
    reference = draw(policy, batch_size=len(PROMPTS))
    for batch_size in (1, 2, 5, 7):
        assert draw(policy, batch_size=batch_size) == reference
    assert packs and shrinks  # the cache was packed and the batch shrunk along the way
    # a row alone, under its row id, as another process would sample it
    from trice.generation.sampler import _sample_rows

    key = int(torch.randint(0, 2 ** 62, (1,), generator=torch.Generator().manual_seed(0)))
    alone = _sample_rows(policy, [PROMPTS[3], PROMPTS[10]], [3, 10], key, 30, 1.0, (), 2, "slots", None)
    assert alone == [reference[3], reference[10]]


def test_merged_lora_samples_equal_unmerged_and_frozen_weights_stay_bit_identical():
    policy = make_policy("lora")
    frozen = {n: p.detach().clone() for n, p in policy.model.named_parameters() if not p.requires_grad}
    merged = MergedLora(policy.model)
    assert merged.layers  # all-linear LoRA: every projection
    unmerged = draw(policy, engine_name="plain", merged=MergedLora(torch.nn.Linear(1, 1)))  # nothing to merge
    with_merge = draw(policy, merged=merged)
    assert with_merge == unmerged
    for n, p in policy.model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[n]), n
    # merged forward == unmerged forward (within float rounding), and merging is undone after
    x = torch.randint(3, 90, (2, 12))
    with torch.no_grad():
        plain = policy.model(input_ids=x).logits
        with merged.active():
            assert all(layer.merged for layer in merged.layers)
            fused = policy.model(input_ids=x).logits
        again = policy.model(input_ids=x).logits
    assert not any(layer.merged for layer in merged.layers)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    assert torch.equal(again, plain)


def test_the_sampler_re_merges_after_an_update():
    policy = make_policy("lora")
    sampler = TorchSampler(policy, torch.Generator().manual_seed(0), max_new_tokens=12, batch_size=4)
    before = sampler.sample(PROMPTS[:4], temperature=0)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    stale = sampler.sample(PROMPTS[:4], temperature=0)  # still the cached merged weights
    sampler.on_update()
    fresh = sampler.sample(PROMPTS[:4], temperature=0)
    assert stale == before and fresh != before
    assert fresh == draw(policy, PROMPTS[:4], engine_name="plain", temperature=0, n=12,
                         merged=MergedLora(torch.nn.Linear(1, 1)))
    assert sampler.tokens == sum(s.num_tokens for s in before + stale + fresh)


def test_unsupported_attention_falls_back_to_the_plain_path():
    model, _ = make_tiny_lm(0)
    assert engine.supports(model)
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    assert not engine.supports(model)


def test_packing_keeps_only_live_rows_columns(monkeypatch):
    """Free slots hold no columns: after every pack the write column is within what live rows need
    (their prompt block + max_new_tokens), so the cache never runs out of columns however long a slot
    waits for a refill. Rows still equal the plain path's."""
    policy = make_policy("full")
    free = draw(policy, batch_size=len(PROMPTS), stop=())
    stops = tuple({s.text[2:4] for s in free if len(s.text) > 5})[:4]
    after_pack = []
    original = engine._Engine.pack

    def pack(self):
        original(self)
        after_pack.append((self.column, self.width + self.max_new, self.length))

    stale = []
    original_decode = engine._Engine.decode

    def decode(self):
        original_decode(self)
        stale.append(int(self.valid[self.slot_row < 0].sum()))  # columns still held by free slots

    monkeypatch.setattr(engine._Engine, "pack", pack)
    monkeypatch.setattr(engine._Engine, "decode", decode)
    prompts = PROMPTS * 4  # 72 prompts through 16 slots: refills wait for 2 free slots
    slots = draw(policy, prompts, batch_size=16, stop=stops)
    assert after_pack and all(column <= bound < length for column, bound, length in after_pack)
    assert len(stale) > 50 and max(stale) == 0
    assert slots == draw(policy, prompts, engine_name="plain", batch_size=16, stop=stops)


def test_auto_engine_is_the_slot_engine_on_cpus_and_the_plain_path_on_cuda(tmp_path, monkeypatch):
    """The measured rule (benchmarks/PROFILE.md): slots on CPUs, plain on CUDA and for attention the slot
    engine does not cover; on a GPU where make gpu-check measured the compiled engine faster, that one."""
    from trice.generation import engine_choice

    monkeypatch.setenv("TRICE_ENGINE_CHOICES", str(tmp_path / "choices.json"))
    policy = make_policy("lora")
    assert auto_engine(policy) == "slots"

    class OnCuda:
        device = torch.device("cuda")
        base_model = policy.base_model

    assert auto_engine(OnCuda()) == "plain"  # no measurement for this GPU
    monkeypatch.setattr(engine_choice, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    engine_choice.record("NVIDIA H100 80GB HBM3", {"plain": {64: 3376}, "compiled": {64: 21000}})
    assert auto_engine(OnCuda()) == "compiled"
    policy.base_model.config.sliding_window, policy.base_model.config.use_sliding_window = 4, True
    assert engine.supports(policy.base_model) is False and auto_engine(policy) == "plain"
