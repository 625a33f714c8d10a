"""The sampler: batching/padding invariance, seeding, budgets, stop strings, agreement with the scorer."""

import pytest
import torch

from tiny import CHARS, make_tiny_policy
from trice.errors import TriceError
from trice.generation.sampler import Sample, sample
from trice.modeling.scoring import score

PROMPTS = ["Q: 2+3?\nA:", "hi", "a much longer prompt, with spaces\nand a newline:", "x", "medium one"]


def make_policy(params="prompt", seed=0):
    return make_tiny_policy(params, "" if params == "full" else "Think step by step.", seed)


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_batched_greedy_equals_one_by_one(params):
    policy = make_policy(params)
    kw = dict(temperature=0, max_new_tokens=24, stop=("\n\n",))
    one_by_one = [sample(policy, [p], **kw)[0] for p in PROMPTS]
    assert sample(policy, PROMPTS, **kw) == one_by_one
    assert sample(policy, PROMPTS, batch_size=2, **kw) == one_by_one  # several batches, results in order
    assert all(isinstance(s, Sample) and s.num_tokens >= 1 for s in one_by_one)
    assert len({s.text for s in one_by_one}) > 1  # the test is not vacuous


def test_seeded_sampling_is_reproducible():
    policy = make_policy()

    def run(seed):
        return sample(policy, PROMPTS * 2, temperature=1.0, max_new_tokens=16,
                      generator=torch.Generator().manual_seed(seed), batch_size=4)

    assert run(0) == run(0)
    assert [s.text for s in run(0)] != [s.text for s in run(1)]


def test_max_new_tokens_and_finished():
    policy = make_policy()
    out = sample(policy, PROMPTS, temperature=0, max_new_tokens=7, stop=())
    for s in out:
        assert 1 <= s.num_tokens <= 7
        if not s.finished:  # ran out of budget: every token is a character of the text
            assert s.num_tokens == 7 and len(s.text) == 7
    assert any(not s.finished for s in out)
    assert sample(policy, PROMPTS, max_new_tokens=0) == [Sample("", 0, False)] * len(PROMPTS)


def test_stop_strings_cut_the_text():
    policy = make_policy()
    full = sample(policy, PROMPTS, temperature=0, max_new_tokens=30, stop=())
    text = max((s.text for s in full), key=len)
    i = PROMPTS[[s.text for s in full].index(text)]
    stop_str = text[6:8]  # two characters the greedy continuation produces
    cut = text.find(stop_str)
    (got,) = sample(policy, [i], temperature=0, max_new_tokens=30, stop=("never", stop_str))
    assert got == Sample(text[:cut], cut + len(stop_str), True)  # char tokenizer: 1 token per char


def test_sampler_agrees_with_scorer():
    """Greedy picks the scorer's argmax at every step; tempered sampling follows the scorer's distribution."""
    policy = make_policy()
    prompt = PROMPTS[0]
    (greedy,) = sample(policy, [prompt], temperature=0, max_new_tokens=5, stop=())
    for t in range(len(greedy.text)):
        context = prompt + greedy.text[:t]
        logp = score(policy, [context] * len(CHARS), CHARS).detach()
        assert CHARS[int(logp.argmax())] == greedy.text[t]

    temperature, n = 0.7, 4000
    out = sample(policy, [prompt] * n, temperature=temperature, max_new_tokens=1, stop=(),
                 generator=torch.Generator().manual_seed(0), batch_size=n)
    logits = score(policy, [prompt] * len(CHARS), CHARS).detach()
    # Probabilities over characters only (special tokens decode to ""); p_T ∝ p^(1/T).
    full = torch.cat([logits, _special_logprobs(policy, prompt)]) / temperature
    probs = full.softmax(-1)[: len(CHARS)]
    freq = torch.tensor([sum(s.text == c for s in out) / n for c in CHARS])
    assert (freq - probs).abs().max() < 0.04  # ~5 standard deviations at n=4000


def _special_logprobs(policy, prompt):
    """Log-probs of the special tokens after ``prompt`` (they cannot be scored as text)."""
    tok = policy.tokenizer
    ids = torch.tensor([tok(prompt, add_special_tokens=False).input_ids])
    embeds = torch.cat([policy.prefix_embeds()[None], policy.embed(ids)], dim=1)
    with torch.no_grad():
        logits = policy.base_model(inputs_embeds=embeds).logits[0, -1].log_softmax(-1)
    return logits[tok.all_special_ids]


def test_empty_prompt_needs_a_prefix():
    (s,) = sample(make_policy("prompt"), [""], temperature=0, max_new_tokens=3)
    assert s.num_tokens >= 1
    with pytest.raises(TriceError, match="empty prompt"):
        sample(make_policy("full"), [""], temperature=0)
