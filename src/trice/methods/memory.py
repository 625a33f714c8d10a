"""The TRICE memory: one rationale per training example, the state of its MCMC chain.

Written by hand because it is TRICE's own state: an independence-sampler MH step whose acceptance
probability min(1, c~/c) reduces to "accept iff the proposal is correct" (ALGORITHM.md 3.3).

>>> memory = Memory(2)
>>> memory.initialize([0, 1], ["wrong", "So the answer is 4."], [False, True])
>>> before, accepted = memory.update([0, 1], ["So the answer is 3.", "bad"], [True, False])
>>> before.tolist(), accepted.tolist(), memory.rationales, memory.coverage()
([False, True], [True, False], ['So the answer is 3.', 'So the answer is 4.'], 1.0)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch


class Memory:
    """Rationales z_n with their correctness c(z_n, y_n) and acceptance counts."""

    def __init__(self, size: int):
        self.rationales: list[str | None] = [None] * size
        self.correct = torch.zeros(size, dtype=torch.bool)
        self.acceptances = torch.zeros(size, dtype=torch.long)  # accepted proposals per example
        self.proposals = torch.zeros(size, dtype=torch.long)  # proposals seen per example

    def __len__(self) -> int:
        return len(self.rationales)

    def initialize(self, indices: Sequence[int], rationales: Sequence[str],
                   correct: Sequence[bool]) -> None:
        """Store the guide's rationales as they are, right or wrong (no retry, as the reference)."""
        for i, z, c in zip(indices, rationales, correct, strict=True):
            self.rationales[i] = z
            self.correct[i] = bool(c)

    def update(self, indices: Sequence[int], proposals: Sequence[str],
               proposal_correct: Sequence[bool]):
        """MH step for a minibatch: accept each proposal iff it is correct.

        Returns (memory_correct before the update, accepted), both bool [M]. After the call
        ``self.rationales[indices[m]]`` is z'_m.
        """
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if len(set(index.tolist())) != len(index):
            raise ValueError("a minibatch must not repeat an example")
        accepted = torch.as_tensor(list(proposal_correct), dtype=torch.bool)
        before = self.correct[index].clone()
        for m, i in enumerate(index.tolist()):
            if accepted[m]:
                self.rationales[i] = proposals[m]
        self.correct[index] |= accepted
        self.acceptances[index] += accepted.long()
        self.proposals[index] += 1
        return before, accepted

    def coverage(self) -> float:
        """Fraction of examples whose memory holds a correct rationale."""
        return int(self.correct.sum()) / len(self) if len(self) else 0.0

    def acceptance_rate(self) -> float:
        """Accepted proposals over proposals, across the whole run."""
        total = int(self.proposals.sum())
        return int(self.acceptances.sum()) / total if total else 0.0

    def state_dict(self) -> dict:
        return {"rationales": list(self.rationales), "correct": self.correct.clone(),
                "acceptances": self.acceptances.clone(), "proposals": self.proposals.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.rationales = list(state["rationales"])
        self.correct, self.acceptances = state["correct"].clone(), state["acceptances"].clone()
        self.proposals = state["proposals"].clone()

    # --- persistence: one JSON object per example -----------------------------------------
    def save(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for i, z in enumerate(self.rationales):
                f.write(json.dumps({"index": i, "rationale": z, "correct": bool(self.correct[i]),
                                    "acceptances": int(self.acceptances[i]),
                                    "proposals": int(self.proposals[i])}) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Memory":
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line]
        memory = cls(len(rows))
        for row in rows:
            i = row["index"]
            memory.rationales[i] = row["rationale"]
            memory.correct[i] = row["correct"]
            memory.acceptances[i] = row["acceptances"]
            memory.proposals[i] = row["proposals"]
        return memory
