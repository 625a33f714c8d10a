"""The memory: accept iff the proposal is correct; coverage and acceptance counts; persistence."""

import random

import pytest
import torch

from trice.methods.memory import Memory


def test_acceptance_rule_and_counts(tmp_path):
    memory = Memory(4)
    memory.initialize(range(4), ["a0", "b0", "c0", "d0"], [False, True, False, True])
    assert memory.coverage() == 0.5
    before, accepted = memory.update([0, 1, 2], ["a1", "b1", "c1"], [True, False, False])
    assert before.tolist() == [False, True, False]
    assert accepted.tolist() == [True, False, False]
    # accepted replaces; a wrong proposal never replaces, even a wrong memory entry
    assert memory.rationales == ["a1", "b0", "c0", "d0"]
    assert memory.correct.tolist() == [True, True, False, True]
    assert memory.coverage() == 0.75
    # a correct proposal replaces a correct memory entry too (independence sampler, ratio 1)
    memory.update([1], ["b2"], [True])
    assert memory.rationales[1] == "b2"
    assert memory.acceptances.tolist() == [1, 1, 0, 0]
    assert memory.proposals.tolist() == [1, 2, 1, 0]
    assert memory.acceptance_rate() == pytest.approx(2 / 4)
    memory.save(tmp_path / "memory.jsonl")
    loaded = Memory.load(tmp_path / "memory.jsonl")
    assert loaded.rationales == memory.rationales
    assert loaded.correct.tolist() == memory.correct.tolist()
    assert loaded.acceptances.tolist() == memory.acceptances.tolist()


def test_repeated_example_in_a_minibatch_is_refused():
    memory = Memory(2)
    with pytest.raises(ValueError):
        memory.update([0, 0], ["x", "y"], [True, True])


def test_update_follows_the_acceptance_rule_on_random_minibatches():
    """Random memories and minibatches (seeded): after ``update`` an entry changes iff its proposal was
    correct (and then holds the proposal), ``correct`` becomes old OR proposal's, each index of the
    minibatch gains one proposal and one acceptance iff its proposal was correct, ``before`` is the old
    correctness, and every index outside the minibatch is untouched."""
    rng = random.Random(0)
    seen = {"accepted over a correct entry": 0, "accepted over a wrong one": 0, "rejected": 0}
    for trial in range(200):
        size = rng.randint(1, 9)
        memory = Memory(size)
        memory.initialize(range(size), [f"z{trial}.{i}" for i in range(size)], [rng.random() < 0.5 for _ in range(size)])
        for step in range(4):  # counters accumulate over several updates
            batch = rng.sample(range(size), rng.randint(1, size))
            proposals = [f"p{trial}.{step}.{i}" for i in batch]
            proposal_correct = [rng.random() < 0.5 for _ in batch]
            old = (list(memory.rationales), memory.correct.clone(), memory.acceptances.clone(), memory.proposals.clone())
            before, accepted = memory.update(batch, proposals, proposal_correct)
            assert before.dtype == accepted.dtype == torch.bool
            assert before.tolist() == [bool(old[1][i]) for i in batch]
            assert accepted.tolist() == proposal_correct
            position = {i: m for m, i in enumerate(batch)}
            for i in range(size):
                if i not in position:  # untouched
                    assert memory.rationales[i] == old[0][i]
                    assert (memory.correct[i], memory.acceptances[i], memory.proposals[i]) == (old[1][i], old[2][i], old[3][i])
                    continue
                m = position[i]
                if proposal_correct[m]:
                    assert memory.rationales[i] == proposals[m]
                    seen["accepted over a correct entry" if old[1][i] else "accepted over a wrong one"] += 1
                else:
                    assert memory.rationales[i] == old[0][i]
                    seen["rejected"] += 1
                assert bool(memory.correct[i]) == (bool(old[1][i]) or proposal_correct[m])
                assert int(memory.acceptances[i]) == int(old[2][i]) + int(proposal_correct[m])
                assert int(memory.proposals[i]) == int(old[3][i]) + 1
            assert memory.coverage() == sum(memory.correct.tolist()) / size
    assert min(seen.values()) > 100  # every case of the rule occurred many times
