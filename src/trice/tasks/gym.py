"""reasoning-gym procedural tasks: ``gym/<dataset>`` with the dataset's config as options.

Scores are made binary: a rationale is correct only when reasoning-gym's own scorer gives 1.0 to
the answer extracted from its final "the answer is ..." sentence.
"""

from __future__ import annotations

from ..errors import TriceError
from .base import Example, Task, extract_answer
from .registry import register


class GymTask(Task):
    """A reasoning-gym dataset split into disjoint train and test questions.

    >>> task = GymTask("chain_sum", n_train=3, n_test=2, seed=0, min_terms=2, max_terms=2)
    >>> ex = task.train[0]
    >>> task.check(f"So the answer is {ex.answer}.", ex)
    True
    """

    def __init__(self, dataset: str, n_train: int = 200, n_test: int = 500, seed: int = 0,
                 **config):
        import reasoning_gym

        if dataset not in reasoning_gym.factory.DATASETS:
            raise TriceError(f"unknown reasoning-gym dataset {dataset!r}")
        if n_train < 1 or n_test < 0:
            raise TriceError(f"gym/{dataset}: n_train must be >= 1 and n_test >= 0")
        _check_options(dataset, reasoning_gym.factory.DATASETS[dataset][1], config)

        def make(size, seed_):
            try:
                return reasoning_gym.create_dataset(dataset, size=size, seed=seed_, **config)
            except (TypeError, ValueError, AssertionError) as exc:
                raise TriceError(f"gym/{dataset}: bad config {config}: {exc}") from None

        self._scorer = make(1, seed)
        train_ds = make(n_train, seed)
        train = [self._example(e) for e in train_ds]
        seen = {ex.question for ex in train}
        # Test questions come from another seed, minus any that also occur in train.
        test: list[Example] = []
        test_seed, pool = seed + 1_000_003, max(2 * n_test, 16)
        for entry in make(pool, test_seed) if n_test else []:
            if entry["question"] not in seen and len(test) < n_test:
                seen.add(entry["question"])
                test.append(self._example(entry))
        super().__init__(f"gym/{dataset}", train, test)

    @staticmethod
    def _example(entry) -> Example:
        return Example(entry["question"], str(entry["answer"]), meta={"entry": entry})

    def is_correct(self, rationale: str, answer: str) -> bool:
        return self.check(rationale, Example("", answer, meta={"entry": {"answer": answer}}))

    def check(self, rationale: str, example: Example) -> bool:
        predicted = extract_answer(rationale)
        if predicted is None:
            return False
        entry = example.meta.get("entry") or {"answer": example.answer, "metadata": {}}
        # a scorer that raises on odd text: Task.verdict counts the rationale wrong (reported once)
        return self._scorer.score_answer(predicted, entry) >= 1.0


def _check_options(dataset: str, config_cls, options: dict) -> None:
    """Each option is a field of the dataset's config and has its type (an int, not "abc")."""
    import dataclasses
    import typing

    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the checks to reasoning-gym
        return
    known = {f.name for f in dataclasses.fields(config_cls)} - {"seed", "size"}
    for key, value in options.items():
        if key not in known:
            raise TriceError(f"gym/{dataset}: unknown option {key!r} (known: n_train, n_test, "
                             f"{', '.join(sorted(known))})")
        wanted = hints.get(key)
        origin = typing.get_origin(wanted)
        if origin in (list, tuple, dict, set, frozenset):  # containers: reasoning-gym checks their items
            if origin is tuple and isinstance(value, list):  # YAML and --task-option give lists
                options[key] = tuple(value)
            continue
        allowed = tuple(t for t in typing.get_args(wanted) if isinstance(t, type)) or (
            (wanted,) if isinstance(wanted, type) else ())
        if not allowed or any(t in (list, tuple, dict) for t in allowed):
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if value is None and type(None) in typing.get_args(wanted):
            ok = True
        if not ok:
            names = " or ".join(t.__name__ for t in allowed if t is not type(None))
            raise TriceError(f"gym/{dataset}: option {key}={value!r} must be {names}, got {type(value).__name__}")


@register("gym")
def _gym(name: str, data_dir=None, seed: int = 0, **options) -> Task:
    return GymTask(name, seed=seed, **options)
