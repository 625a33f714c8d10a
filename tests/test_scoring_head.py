"""The scorer's frozen-head log-probs (gradient computed in the forward pass, nothing recomputed) against plain
autograd through the head, and the whole LoRA scoring step against the checkpointed path."""

import pytest
import torch

from tiny import make_tiny_lm
from trice.modeling import Policy
from trice.modeling import scoring
from trice.modeling.scoring import _FrozenHeadLogprobs, chunked_logprobs, weighted_backward


def plain(head, hidden, targets):
    logits = head(hidden).to(torch.promote_types(head.weight.dtype, torch.float32))
    return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("bias", [False, True])
def test_frozen_head_matches_autograd(dtype, tol, bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(12, 50, bias=bias).to(dtype).requires_grad_(False)
    hidden = torch.randn(37, 12, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    coefs = torch.randn(37, dtype=torch.float32)
    ours = chunked_logprobs(head, hidden, targets, chunk=8)  # 5 chunks, the last one short
    (g_ours,) = torch.autograd.grad((coefs.to(ours.dtype) * ours).sum(), hidden)
    ref = plain(head, hidden, targets)
    (g_ref,) = torch.autograd.grad((coefs.to(ref.dtype) * ref).sum(), hidden)
    assert ours.grad_fn is not None and type(ours.grad_fn).__name__.startswith("_FrozenHeadLogprobs")
    assert torch.allclose(ours, ref, atol=tol, rtol=0)
    assert torch.allclose(g_ours, g_ref, atol=tol, rtol=tol)


def test_trained_head_and_no_grad_take_the_other_paths():
    torch.manual_seed(1)
    head = torch.nn.Linear(6, 20, bias=False).double()  # trained (requires grad): checkpointed chunks
    hidden = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 20, (9,))
    out = chunked_logprobs(head, hidden, targets, chunk=4)
    assert "FrozenHead" not in type(out.grad_fn).__name__
    out.sum().backward()
    ref_head = torch.nn.Linear(6, 20, bias=False).double()
    ref_head.weight.data.copy_(head.weight.data)
    h2 = hidden.detach().clone().requires_grad_(True)
    plain(ref_head, h2, targets).sum().backward()
    assert torch.allclose(head.weight.grad, ref_head.weight.grad, atol=1e-12)
    assert torch.allclose(hidden.grad, h2.grad, atol=1e-12)
    with torch.no_grad():
        assert chunked_logprobs(head.requires_grad_(False), hidden, targets, chunk=4).grad_fn is None


def test_lora_scoring_step_equals_checkpointed_path(monkeypatch):
    """The same LoRA gradients and loss with the frozen-head function as with checkpointed chunks (float64)."""
    model, tok = make_tiny_lm(seed=3)
    policy = Policy.create(model.double(), tok, "lora", prefix_text="Q: 1+1? A: 2.\n")
    prompts, conts = ["Q: 2+3?", "Q: 4+4?", "x"], [" A: 5.", " A: 8 because.", " y"]
    coefs = torch.tensor([0.7, -0.3, 1.2], dtype=torch.float64)
    params = policy.trainable_parameters()

    def run():
        for p in params:
            p.grad = None
        loss, _ = weighted_backward(policy, prompts, conts, coefs)
        return loss.item(), [p.grad.clone() for p in params]

    calls = []
    real = _FrozenHeadLogprobs.apply
    monkeypatch.setattr(_FrozenHeadLogprobs, "apply", lambda *a: calls.append(1) or real(*a))
    loss_fused, grads_fused = run()
    assert calls, "the LoRA step did not use the frozen-head function"
    calls.clear()
    monkeypatch.setattr(scoring, "FROZEN_HEAD", False)  # the checkpointed path
    loss_ckpt, grads_ckpt = run()
    assert not calls
    assert loss_fused == pytest.approx(loss_ckpt, abs=1e-10)
    for a, b in zip(grads_fused, grads_ckpt):
        assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
