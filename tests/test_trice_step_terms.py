"""How the real ``TriceMethod.step`` maps the estimator's terms to sequences (no model needed).

A fake sampler returns scripted proposals and a task's verdicts come from a table, so every quantity of
the step is known: the weighted (prompt, continuation, coefficient) triples it returns must be exactly
those computed here from trice.estimators (``trice_weights`` / ``estimator_terms``, with a generator in
the same state as the context's), where term j < M is the *updated* memory rationale z'_m of the j-th
example of the batch (the proposal if it was accepted, else the old entry) and term M + m its proposal,
each followed by the format's end, under the rationale prompt of that example's question.
"""

from types import SimpleNamespace

import pytest
import torch

from trice.estimators.trice import estimator_terms, trice_weights
from trice.methods import Context, make_method
from trice.methods.memory import Memory
from trice.methods.trice import AUTO_WINDOW, auto_estimator
from trice.prompts import PLAIN
from trice.tasks import Example, Task

N = 8  # training examples
QUESTIONS = [f"Toy question {i}: how many apples?" for i in range(N)]


class TableTask(Task):
    """c(z, y) read from a table: a rationale is right iff it is in ``right``."""

    def __init__(self, right):
        super().__init__("table", [Example(q, str(i)) for i, q in enumerate(QUESTIONS)], [])
        self.right = set(right)

    def check(self, rationale, example):
        return rationale in self.right


class ScriptedSampler:
    """Returns, for each prompt, the proposal scripted for that prompt's question (in the prompts' order)."""

    def __init__(self, proposals):
        self.by_prompt = {PLAIN.prompt(QUESTIONS[i]): text for i, text in proposals.items()}
        self.calls, self.tokens = [], 0

    def sample(self, prompts, temperature=None, prefix=None):
        self.calls.append((list(prompts), temperature, prefix))
        return [SimpleNamespace(text=self.by_prompt[p]) for p in prompts]


# Each case: the batch (example indices), which memory entries are right before the step (of all N), and
# which of the batch's proposals are right.
CASES = {
    # all four kinds: (proposal right, memory right) = (F, T) at 5, (T, F) at 2, (F, F) at 7, (T, T) at 0;
    # indices not 0..M-1 and not sorted
    "mixed": ([5, 2, 7, 0], [True, False, False, True, False, True, False, False], [False, True, False, True]),
    "proposals all wrong": ([3, 1, 6, 4], [False, True, False, True, False, False, True, False],
                            [False, False, False, False]),
    "memory all wrong": ([6, 0, 3], [False] * N, [True, False, True]),
    "nothing right": ([4, 7, 1, 2], [False] * N, [False, False, False, False]),
    "all right": ([1, 0], [True] * N, [True, True]),
}
ESTIMATORS = ["trice", "trice-full", "trice-nocv", "trice-auto", "trice-auto (above the threshold)"]


def setup_step(case, estimator, seed):
    batch, memory_right, proposal_right = CASES[case]
    old = [f"memory z_{i} ({'right' if memory_right[i] else 'wrong'})" for i in range(N)]
    proposals = {i: f"proposal for {i} ({'right' if r else 'wrong'})" for i, r in zip(batch, proposal_right)}
    task = TableTask([z for z, r in zip(old, memory_right) if r] +
                     [proposals[i] for i, r in zip(batch, proposal_right) if r])
    name = estimator.split(" ")[0]
    method = make_method(name)
    assert method.format is PLAIN and PLAIN.end == "\n\n"
    method.memory = Memory(N)
    method.memory.initialize(range(N), old, memory_right)
    if estimator.endswith("(above the threshold)"):
        method.recent_acceptance = [0.9] * AUTO_WINDOW
    config = SimpleNamespace(subsample=3, tools="none", temperature=0.7)
    sampler = ScriptedSampler(proposals)
    ctx = Context(None, task, task.train, config, sampler, torch.Generator().manual_seed(seed))
    return method, ctx, batch, old, proposals, memory_right, proposal_right


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("case", list(CASES))
def test_step_returns_the_estimators_terms_on_the_right_sequences(case, estimator, seed):
    method, ctx, batch, old, proposals, memory_right, proposal_right = setup_step(case, estimator, seed)
    recent = list(method.recent_acceptance)
    M = len(batch)
    reference_rng = torch.Generator().manual_seed(seed)  # the context's generator, in the same state

    weighted = method.step(ctx, batch)

    prompts = [PLAIN.prompt(QUESTIONS[i]) for i in batch]  # the batch's questions, in the batch's order
    assert ctx.sampler.calls == [(prompts, 0.7, None)]  # one proposal per example, at the proposal temperature
    pc = torch.tensor(proposal_right)
    mc = torch.tensor([memory_right[i] for i in batch])  # before the MH step
    updated = [proposals[i] if r else old[i] for i, r in zip(batch, proposal_right)]  # z'_m
    sequences = updated + [proposals[i] for i in batch]  # terms 0..M-1, then M..2M-1
    used = auto_estimator(recent) if estimator.startswith("trice-auto") else estimator
    assert used == {"trice-auto": "trice-nocv", "trice-auto (above the threshold)": "trice"}.get(estimator, estimator)
    terms = estimator_terms(pc, mc, used, ctx.config.subsample, reference_rng)

    expected = [(prompts[j % M], sequences[j] + "\n\n", c) for j, c in zip(terms.indices.tolist(), terms.coefs.tolist())]
    got = list(zip(weighted.prompts, weighted.continuations, weighted.coefs.tolist()))
    assert got == expected  # exactly: same sequences, same order, same coefficients
    assert torch.equal(ctx.resampler_rng.get_state(), reference_rng.get_state())  # it drew as estimator_terms does
    assert all(cont.endswith(PLAIN.end) for cont in weighted.continuations)

    # The memory after the step holds z'_m, and is what the memory terms scored.
    assert [method.memory.rationales[i] for i in batch] == updated
    assert all(method.memory.rationales[i] == old[i] for i in range(N) if i not in batch)

    # The coefficients, by hand (ALGORITHM.md 3.4-3.6).
    valid = (pc | mc).tolist()
    num_valid = sum(valid)
    accepted_valid = sum(p for p, v in zip(proposal_right, valid) if v)
    beta = [(accepted_valid - p) / (num_valid - 1) if v and num_valid > 1 else 0.0
            for p, v in zip(proposal_right, valid)]
    memory_w = [1 - b if p else (1.0 if m else 0.0) for p, m, b in zip(pc.tolist(), mc.tolist(), beta)]
    proposal_w = [b if (m and not p) else 0.0 for p, m, b in zip(pc.tolist(), mc.tolist(), beta)]
    coefs = dict(zip(terms.indices.tolist(), terms.coefs.tolist()))
    if used == "trice-full":
        want = {j: w / num_valid for j, w in enumerate(memory_w) if w} | \
               {M + m: -w / num_valid for m, w in enumerate(proposal_w) if w}
        assert coefs.keys() == want.keys() and all(coefs[j] == pytest.approx(want[j]) for j in want)
    elif used == "trice-nocv":  # (1/M) sum over covered examples of grad log p(z'_m): memory terms only
        assert coefs == pytest.approx({m: 1 / M for m in range(M) if valid[m]})
    else:  # the paper's: L draws, each of weight W / (Mv L) with its term's sign, merged
        total = sum(memory_w) + sum(proposal_w)
        if total == 0:
            assert coefs == {}
        else:
            assert sum(abs(c) for c in coefs.values()) == pytest.approx(total / num_valid)
            draws = [abs(c) * num_valid * ctx.config.subsample / total for c in coefs.values()]
            assert draws == pytest.approx([round(d) for d in draws])  # whole numbers of draws, L in all
            assert sum(round(d) for d in draws) == ctx.config.subsample
            assert all(memory_w[j] > 0 for j in coefs if j < M) and all(proposal_w[j - M] > 0 for j in coefs if j >= M)
    assert all(c > 0 for j, c in coefs.items() if j < M) and all(c < 0 for j, c in coefs.items() if j >= M)
    _, _, beta_t, mask = trice_weights(pc, mc)
    assert beta_t.tolist() == pytest.approx(beta) and mask.tolist() == valid

    # The metrics.
    metrics = weighted.metrics
    assert metrics["proposal_accuracy"] == pytest.approx(sum(proposal_right) / M)
    covered = [memory_right[i] or (i in batch and proposal_right[batch.index(i)]) for i in range(N)]
    assert metrics["memory_coverage"] == pytest.approx(sum(covered) / N)
    assert metrics["num_valid"] == num_valid
    assert metrics["mean_beta"] == pytest.approx(sum(b for b, v in zip(beta, valid) if v) / num_valid if num_valid else 0.0)
    assert metrics["num_terms"] == len(weighted.prompts) == len(terms.indices)
    assert metrics["control_variate"] is (used != "trice-nocv")
    assert method.recent_acceptance == pytest.approx((recent + [sum(proposal_right) / M])[-AUTO_WINDOW:])


def test_the_mixed_case_by_hand():
    """The mixed batch [5, 2, 7, 0] under trice-full, written out: valid 5, 2, 0 (Mv = 3), beta = 1 at 5
    (both others accepted), 0.5 at 2 and 0; 7 has nothing right and no term."""
    method, ctx, batch, old, proposals, _, _ = setup_step("mixed", "trice-full", 0)
    weighted = method.step(ctx, batch)
    p = {i: PLAIN.prompt(QUESTIONS[i]) for i in batch}
    got = {(prompt, cont): coef for prompt, cont, coef in zip(weighted.prompts, weighted.continuations,
                                                              weighted.coefs.tolist())}
    assert got == pytest.approx({
        (p[5], old[5] + "\n\n"): 1 / 3,  # rejected, memory right: weight 1 on the memory...
        (p[5], proposals[5] + "\n\n"): -1 / 3,  # ...and -beta = -1 on the (wrong) proposal
        (p[2], proposals[2] + "\n\n"): 0.5 / 3,  # accepted: z' is the proposal, weight 1 - beta
        (p[0], proposals[0] + "\n\n"): 0.5 / 3,
    })
    assert weighted.metrics["mean_beta"] == pytest.approx((1 + 0.5 + 0.5) / 3) and weighted.metrics["num_valid"] == 3
