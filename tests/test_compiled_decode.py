"""The compiled decode step (``engine="compiled"``, trice.generation.compiled_decode) against the eager slot
engine on the tiny model: the same greedy continuations, the same samples at temperature 1 (the draws are the
same counter-based draws; the logits agree within float rounding), tool inserts included; a compile that fails
falls back to the eager step with one warning. Compiling takes ~10-30 s of inductor time on the tiny model, so
the file shares one compiled graph per shape across its tests."""

import warnings

import pytest
import torch

from tiny import make_tiny_lm
from trice.generation import compiled_decode, slot_engine
from trice.generation.sampler import sample
from trice.modeling import Policy

PROMPTS = [f"{i} + {i % 3} =" for i in range(10)]


@pytest.fixture(scope="module")
def policy():
    model, tok = make_tiny_lm(0)
    return Policy.create(model, tok, "lora", prefix_text="1 + 1 = 2. 2 + 2 = 4.")


def run(policy, engine, temperature, seed=0, **kw):
    return sample(policy, PROMPTS, max_new_tokens=12, temperature=temperature, stop=(), engine=engine,
                  generator=torch.Generator().manual_seed(seed), batch_size=4, **kw)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_compiled_step_samples_what_the_eager_engine_samples(policy, temperature):
    compiled_decode.reset()
    eager = run(policy, "slots", temperature)
    compiled = run(policy, "compiled", temperature)
    assert not compiled_decode._failed, compiled_decode._failed
    assert compiled_decode.compile_seconds  # it did compile (and timed its first call)
    assert [(s.text, s.num_tokens) for s in compiled] == [(s.text, s.num_tokens) for s in eager]
    assert len({s.text for s in eager}) > 1  # not a degenerate case


def test_tool_inserts_are_the_same_through_the_compiled_step(policy):
    from test_vllm_sampler import EveryLetter
    from trice.tools import OPEN

    eager = run(policy, "slots", 1.0, hook=EveryLetter())
    compiled = run(policy, "compiled", 1.0, hook=EveryLetter())
    assert any(OPEN in s.text for s in eager)  # the tool did insert text
    assert [(s.text, s.num_tokens) for s in compiled] == [(s.text, s.num_tokens) for s in eager]


def test_the_static_step_computes_the_eager_logits(policy):
    """One static decode step's logits (the compiled graph, all L columns attended, the column written at a tensor
    index) against the eager engine's step on the same state: within 1e-5 in float32."""
    seen = {}
    original = slot_engine._Engine.emit

    def spy(self, slots, logits):
        if self.column > self.width:  # a decode step (not the refill)
            seen.setdefault(self.compiled, []).append(logits.clone())
        return original(self, slots, logits)

    slot_engine._Engine.emit = spy
    try:
        run(policy, "slots", 0.0)
        run(policy, "compiled", 0.0)
    finally:
        slot_engine._Engine.emit = original
    eager, compiled = seen[False], seen[True]
    n = min(len(eager), len(compiled), 5)  # (the eager batch shrinks at the end: compare the first full steps)
    for a, b in zip(eager[:n], compiled[:n]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_a_compile_that_fails_falls_back_to_eager_with_one_warning(policy, monkeypatch):
    compiled_decode.reset()

    def refuse(fn, **kwargs):
        def broken(*args, **kw):
            raise RuntimeError("inductor: no C++ compiler (simulated)")
        return broken

    monkeypatch.setattr(torch, "compile", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = run(policy, "compiled", 1.0)
        second = run(policy, "compiled", 1.0, seed=1)
    messages = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert len(messages) == 1 and "no C++ compiler (simulated)" in messages[0]
    assert [s.text for s in first] == [s.text for s in run(policy, "slots", 1.0)]
    assert [s.text for s in second] == [s.text for s in run(policy, "slots", 1.0, seed=1)]
    compiled_decode.reset()


def test_the_engine_is_a_config_choice():
    from trice import TrainConfig, TriceError

    assert TrainConfig(engine="compiled").validate().engine == "compiled"
    with pytest.raises(TriceError, match="engine must be one of"):
        TrainConfig(engine="fast").validate()
