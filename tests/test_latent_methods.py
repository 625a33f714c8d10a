"""trice-soft, jepo and latro as methods on a tiny model: the answer likelihood, the soft MH step on the
memory, and the weighted sequences they emit."""

import torch

from tiny import coin_task, make_tiny_lm
from trice.modeling.answer_likelihood import answer_logliks, answer_row, reasoning
from trice.estimators.likelihood import soft_weights
from trice.modeling import Policy
from trice.prompts import PLAIN
from trice.modeling.scoring import score
from trice.tools import mark


def test_reasoning_stops_at_the_first_stated_answer_and_drops_tool_marks():
    assert reasoning("2 + 3 = 5. So the answer is 5.") == "2 + 3 = 5."
    assert reasoning("The answer is 5. Because 2 + 3 = 5.") == ""
    assert reasoning("2 + 3 is <<2+3=" + mark("5>>") + "5 and then") == "2 + 3 is <<2+3=5>>5 and then"
    prompt = PLAIN.prompt("2 + 3 =")
    assert answer_row(prompt, "So the answer is 6.", "5", PLAIN) == (prompt, "So the answer is 5.\n\n")
    assert answer_row(prompt, "2 + 3 = 5", "5", PLAIN) == (prompt + "2 + 3 = 5", " So the answer is 5.\n\n")


def test_answer_loglik_is_the_answer_sentence_scored_after_the_reasoning():
    model, tok = make_tiny_lm(0)
    policy = Policy.create(model, tok, "lora", prefix_text="Q: 1 + 1 = 2\n")
    prompts = [PLAIN.prompt("2 + 3 ="), PLAIN.prompt("4 + 4 =")]
    rationales = ["2 + 3 = 5. So the answer is 5.", "4 + 4 = 9. The answer is 9."]
    loglik, tokens = answer_logliks(policy, prompts, rationales, ["5", "8"], PLAIN)
    with torch.no_grad():
        expected = score(policy, [prompts[0] + "2 + 3 = 5.", prompts[1] + "4 + 4 = 9."],
                         [" So the answer is 5.\n\n", " So the answer is 8.\n\n"])
    assert torch.allclose(loglik, expected.double(), atol=1e-6)
    assert tokens == sum(len(p) + len(c) for p, c in (answer_row(p, z, y, PLAIN) for p, z, y in
                                                      zip(prompts, rationales, ["5", "8"])))  # 1 char = 1 token


def test_trice_soft_accepts_by_the_likelihood_ratio_and_trains_the_answer_of_valid_memories(monkeypatch):
    """With likelihoods fixed by hand: a proposal at least as likely as the memory is always accepted, one
    with likelihood 0 never; the emitted rationale coefficients are the soft weights' (full subsample), and
    every valid memory entry gets one answer row with coefficient 1/Mv."""
    from trice import TrainConfig
    from trice.methods import Context, make_method

    model, tok = make_tiny_lm(0)
    task = coin_task(4, 2)
    policy = Policy.create(model, tok, "lora", prefix_text="")
    method = make_method("trice-soft", task.exemplars)
    from trice.methods.memory import Memory

    method.memory = Memory(4)
    method.memory.initialize(range(4), ["m0", "m1", "m2", "m3"], [True, True, False, False])
    memory_ll = torch.tensor([-1.0, -1.0, -2.0, float("-inf")], dtype=torch.float64)
    proposal_ll = torch.tensor([-0.5, float("-inf"), -1.0, -3.0], dtype=torch.float64)
    monkeypatch.setattr("trice.methods.experimental.likelihood.answer_logliks", lambda *a, **k: (torch.cat([memory_ll, proposal_ll]), 7))

    class Sampler:
        tokens = 0

        def sample(self, prompts, **kw):
            from trice.generation.sampler import Sample
            return [Sample(f"p{i}", 2, True) for i in range(len(prompts))]

    config = TrainConfig(batch_size=4, subsample=64)
    ctx = Context(policy, task, task.train, config, Sampler(), torch.Generator().manual_seed(0))
    weighted = method.step(ctx, [0, 1, 2, 3])
    assert method.memory.rationales == ["p0", "m1", "p2", "p3"]  # alpha = 1, 0, 1, 1
    assert weighted.tokens_forward == 7
    alpha = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    accepted = torch.tensor([True, False, True, True])
    updated = torch.tensor([-0.5, -1.0, -1.0, -3.0], dtype=torch.float64)
    weights, signs, _, mask = soft_weights(alpha, accepted, updated)
    answer_rows = [c for c in weighted.continuations if c.startswith(" So the answer is") or c.startswith("So the")]
    assert len(answer_rows) == int(mask.sum()) == 4
    rationale_coefs = weighted.coefs[:len(weighted.coefs) - 4]
    expected = (signs * weights / 4)[weights != 0]
    # the subsample draws each term floor or ceil(L w / W) times: within W / (Mv L) of the full weight
    tolerance = float(weights.sum()) / (4 * 64) + 1e-9
    assert torch.allclose(rationale_coefs.sort().values, expected.sort().values, atol=tolerance)
    assert torch.allclose(weighted.coefs[-4:], torch.full((4,), 0.25, dtype=torch.float64))
