"""The scorer against a token-by-token reference, in every params mode, and against a full forward for models
whose head is not plain (soft-capped logits), with and without logits_to_keep."""

import functools

import pytest
import torch
from transformers import LlamaForCausalLM

from tiny import make_tiny_lm, make_tiny_policy
from trice.errors import TriceError
from trice.modeling import Policy
from trice.modeling.scoring import score, token_logprobs, weighted_backward

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
    return make_tiny_policy(params, "" if params == "full" else "Think step by step.", seed)


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


# --- models whose head is not plain: the full forward with logits_to_keep, and its slicing fallback ------
class SoftcappedLlama(LlamaForCausalLM):
    """Gemma 2's final-logit soft-capping on the tiny Llama: logits = cap * tanh(lm_head(h) / cap), with
    ``config.final_logit_softcapping = cap``, so ``_plain_head`` is false and the scorer must take the
    model's own logits (lm_head alone would give other numbers)."""

    @functools.wraps(LlamaForCausalLM.forward)  # the same signature: logits_to_keep, the cache argument
    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        cap = self.config.final_logit_softcapping
        out.logits = cap * torch.tanh(out.logits / cap)
        return out


CAP = 2.0  # the tiny model's logits reach about +-10: the cap changes every log-prob


def make_capped_policy(params, cap=CAP):
    model, tok = make_tiny_lm(0)
    model.config.final_logit_softcapping = cap
    capped = SoftcappedLlama(model.config)
    capped.load_state_dict(model.state_dict())
    capped.eval()
    policy = Policy.create(capped, tok, params=params, prefix_text="" if params == "full" else "Think step by step.")
    if params == "lora":
        with torch.no_grad():
            torch.manual_seed(1)
            for name, p in policy.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    return policy


def full_forward_logprobs(policy, prompt, cont):
    """Per-token log-probs of ``cont``: the whole model forward (its own logits, soft-capped) on
    prefix + prompt + continuation, unpadded and uncached, then log_softmax; differentiable."""
    tok = policy.tokenizer
    p_ids = tok(prompt, add_special_tokens=False).input_ids
    c_ids = tok(cont, add_special_tokens=False).input_ids
    prefix = policy.prefix_embeds()
    embeds = torch.cat([prefix, policy.embed(torch.tensor(p_ids + c_ids))], dim=0)[None]
    logits = policy.base_model(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long)).logits
    start = prefix.shape[0] + len(p_ids)  # the first continuation token's column
    logp = logits[0, start - 1:-1].float().log_softmax(-1)  # column t predicts the token at t + 1
    return logp.gather(-1, torch.tensor(c_ids)[:, None]).squeeze(-1)


COEFS = torch.tensor([0.7, -1.3, 0.2, 2.0])


def _grads(policy, loss):
    params = policy.trainable_parameters()
    return [g.detach().clone() for g in torch.autograd.grad(loss, params)]


def _check_against_full_forward(policy, logits_widths):
    """The scorer's per-token log-probs and the gradient of -sum(coefs * log p) equal the full-forward
    reference's; returns the log-probs and the width of the logits of the one-batch scoring forward."""
    want = [full_forward_logprobs(policy, p, c) for p, c in zip(PROMPTS, CONTS)]
    want_grads = _grads(policy, -(COEFS * torch.stack([w.sum() for w in want])).sum())
    width = None
    for size in (None, 3, 1):  # one batch, and batches with other left padding
        logits_widths.clear()
        got = token_logprobs(policy, PROMPTS, CONTS, batch_size=size)
        assert logits_widths, "the scorer never ran the model's full forward"
        width = width or logits_widths[-1]  # the one-batch scoring forward (after the prefix's, if any)
        assert [len(g) for g in got] == [len(c) for c in CONTS]
        for g, w in zip(got, want):
            torch.testing.assert_close(g.detach(), w.detach(), atol=1e-4, rtol=1e-4)
    got_grads = _grads(policy, -(COEFS * score(policy, PROMPTS, CONTS)).sum())
    for g, w in zip(got_grads, want_grads):
        assert w.abs().sum() > 0
        assert (g - w).norm() <= 1e-4 * w.norm()  # float32 rounding only
    return want, width


def _record_logits_width(policy, monkeypatch):
    """The width of every logits tensor the model returns; the last-hidden-state path is made to fail."""
    widths = []
    policy.base_model.register_forward_hook(lambda module, args, out: widths.append(out.logits.shape[1]))

    def no_plain_path(*args, **kwargs):
        raise AssertionError("the plain-head path ran for a soft-capped model")

    monkeypatch.setattr(policy, "hidden_states", no_plain_path)
    return widths


@pytest.mark.parametrize("params", ["prompt", "lora", "full"])
def test_softcapped_model_is_scored_through_its_own_logits(params, monkeypatch):
    """_plain_head is false: the scorer runs the model's forward with logits_to_keep (the model keeps only
    the continuation's columns) and its log-probs and gradients are the full forward's."""
    from trice.modeling.scoring import _plain_head

    policy = make_capped_policy(params)
    assert not _plain_head(policy.base_model.config) and policy._accepts_logits_to_keep()
    widths = _record_logits_width(policy, monkeypatch)
    want, width = _check_against_full_forward(policy, widths)
    assert width == max(len(c) for c in CONTS)  # logits_to_keep honoured: only the continuation's columns
    # The cap matters: lm_head alone (the plain path) would give other log-probs.
    uncapped = make_capped_policy(params, cap=1e9)
    plain = [full_forward_logprobs(uncapped, p, c).detach() for p, c in zip(PROMPTS, CONTS)]
    assert all((w.detach() - u).abs().max() > 0.1 for w, u in zip(want, plain))


@pytest.mark.parametrize("params", ["prompt", "full"])
def test_model_ignoring_logits_to_keep_is_sliced_to_the_continuation(params, monkeypatch):
    """A model whose forward lacks logits_to_keep returns logits for every column; the scorer slices the
    columns that predict continuation tokens (``logits[:, keep]``): off by one column, every log-prob
    would be another token's."""
    policy = make_capped_policy(params)
    monkeypatch.setattr(Policy, "_accepts_logits_to_keep", lambda self: False)
    widths = _record_logits_width(policy, monkeypatch)
    _, width = _check_against_full_forward(policy, widths)
    lead = 1 if policy.prefix_embeds().shape[0] else 0  # the last prefix token starts each row
    assert width == max(len(p) + len(c) for p, c in zip(PROMPTS, CONTS)) + lead  # every column came back
