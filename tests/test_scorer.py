"""The scorer against a token-by-token reference, in every params mode."""

import pytest
import torch

from tiny import make_tiny_lm
from trice.errors import TriceError
from trice.model import Policy
from trice.scorer import score, token_logprobs, weighted_backward

PROMPTS = ["Q: 2+3?\nA:", "hi", "a much longer prompt, with spaces\nand a newline:", "x"]
CONTS = [" 5. The answer is 5.", "!", " ok\n", "yz  w"]


def reference(policy, prompt, cont):
    """Sum over continuation tokens of log-softmax at the next token, one unbatched uncached pass each."""
    tok = policy.tokenizer
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    c_ids = tok(cont, add_special_tokens=False).input_ids
    total = 0.0
    with torch.no_grad():
        for t, target in enumerate(c_ids):
            ids = torch.tensor([p_ids + c_ids[:t]])
            embeds = torch.cat([policy.prefix_embeds()[None], policy.embed(ids)], dim=1)
            out = policy.base_model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long))
            total += out.logits[0, -1].float().log_softmax(-1)[target].item()
    return total


def test_tiny_tokenizer_round_trips(tiny_lm):
    _, tok = tiny_lm
    for text in ["hello world", " two  spaces\n\nQuestion: x = 1?\n", "\n", ""]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text) and tok.decode(ids) == text


def make_policy(params, seed=0):
    model, tok = make_tiny_lm(seed)
    prefix = "" if params == "full" else "Think step by step."
    policy = Policy.create(model, tok, params=params, prefix_text=prefix)
    if params == "lora":  # LoRA B starts at zero; make the adapters actually do something
        with torch.no_grad():
            for name, p in policy.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    return policy


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_score_matches_token_by_token_reference(params):
    policy = make_policy(params)
    got = score(policy, PROMPTS, CONTS)
    want = torch.tensor([reference(policy, p, c) for p, c in zip(PROMPTS, CONTS)])
    assert got.shape == (len(PROMPTS),)
    torch.testing.assert_close(got.detach(), want, atol=1e-4, rtol=16 * torch.finfo(torch.float32).eps)
    # Smaller batches give the same numbers.
    torch.testing.assert_close(score(policy, PROMPTS, CONTS, batch_size=3).detach(), want, atol=1e-4,
                               rtol=16 * torch.finfo(torch.float32).eps)


def test_token_logprobs_sum_to_score():
    policy = make_policy("prompt")
    per_token = token_logprobs(policy, PROMPTS, CONTS)
    assert [len(x) for x in per_token] == [len(c) for c in CONTS]  # one token per character
    assert all((x <= 0).all() for x in per_token)
    torch.testing.assert_close(torch.stack([x.sum() for x in per_token]), score(policy, PROMPTS, CONTS))


def test_empty_continuation_scores_zero():
    policy = make_policy("prompt")
    got = score(policy, ["abc", "de"], ["", " f"])
    assert got[0].item() == 0.0 and got[1].item() < 0
    assert score(policy, ["abc"], [""]).tolist() == [0.0]


def test_gradient_reaches_soft_prompt_only():
    policy = make_policy("prompt")
    (-score(policy, PROMPTS, CONTS).sum()).backward()
    (soft,) = policy.trainable_parameters()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    assert all(p.grad is None for p in policy.base_model.parameters())


@pytest.mark.parametrize("params", ["prompt", "lora"])
def test_weighted_backward_in_batches_gives_the_one_pass_gradient(params):
    """Gradient accumulation over scoring batches of 1 and 3 rows: the same loss and gradient as one pass
    over all rows (float32 rounding only), and the prefix's gradient counted once per row, not per batch."""
    coefs = torch.tensor([0.7, -1.3, 0.2, 2.0])
    grads = {}
    for size in (None, 1, 3):
        policy = make_policy(params)
        loss, tokens = weighted_backward(policy, PROMPTS, CONTS, coefs, batch_size=size)
        assert tokens == sum(len(p) + len(c) for p, c in zip(PROMPTS, CONTS))  # one character, one token
        grads[size] = (loss, [p.grad.clone() for p in policy.trainable_parameters()])
        if size is None:
            expected = -(coefs * score(make_policy(params), PROMPTS, CONTS)).sum()
            assert torch.allclose(loss, expected.detach(), rtol=1e-5)
    for size in (1, 3):
        assert torch.allclose(grads[size][0], grads[None][0], rtol=1e-5)
        for g, g0 in zip(grads[size][1], grads[None][1]):
            assert g0.abs().sum() > 0
            assert (g - g0).norm() <= 1e-5 * g0.norm()  # float32 summation order only
    with pytest.raises(TriceError, match="4 prompts but 3 coefficients"):
        weighted_backward(make_policy(params), PROMPTS, CONTS, coefs[:3])


def test_score_errors():
    policy = make_policy("full")  # no prefix
    with pytest.raises(TriceError, match="empty prompt"):
        score(policy, [""], ["abc"])
    with pytest.raises(TriceError, match="2 prompts but 1"):
        score(policy, ["a", "b"], ["c"])


def test_models_without_logits_to_keep_give_the_same_scores():
    policy = make_policy("lora")
    want = score(policy, PROMPTS, CONTS).detach()
    policy._logits_to_keep = False  # as for a model whose forward lacks the argument
    torch.testing.assert_close(score(policy, PROMPTS, CONTS).detach(), want)
