"""Custom data: ``jsonl:<path>``, one JSON object per line with a question and an answer.

Field names, the train/test split and the checker are options::

    get_task("jsonl:data/qa.jsonl", question_field="q", answer_field="a",
             test_path="data/qa_test.jsonl", checker="mypkg.checks:same_number")

Split: with ``test_path`` the file is all training data and ``test_path`` the test set; otherwise
the examples are shuffled with ``seed`` and the first floor((1 - test_fraction) * n) become
``train`` (test_fraction defaults to 0.2, i.e. 80/20), the rest ``test``. A relative path is
read from ``data_dir`` when one is given.

"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..errors import TriceError
from .base import Example, Task
from .io import field, load_function, read_jsonl, split_examples
from .registry import register


class JSONLTask(Task):
    """Examples from a JSONL file, checked by the default rule or a user ``checker``.

    >>> import pathlib
    >>> rows = [f'{{"question": "{i} + 1?", "answer": "{i + 1}"}}\\n' for i in range(10)]
    >>> _ = pathlib.Path("qa.jsonl").write_text("".join(rows))
    >>> task = JSONLTask("qa.jsonl", seed=0)
    >>> len(task.train), len(task.test)
    (8, 2)
    >>> ex = task.test[0]
    >>> task.check(f"So the answer is {ex.answer}.", ex)
    True
    """

    def __init__(self, path: str | os.PathLike, *, test_path: str | os.PathLike | None = None,
                 test_fraction: float = 0.2, seed: int = 0, question_field: str = "question",
                 answer_field: str = "answer", rationale_field: str = "rationale",
                 checker: str | Callable[[str, str], Any] | None = None):
        self.fields = (question_field, answer_field, rationale_field)
        examples = self._load(Path(path))
        if test_path is not None:
            train, test = examples, self._load(Path(test_path))
        else:
            train, test = split_examples(examples, seed, test_fraction, where=f"jsonl:{path}")
        self.checker_name = (checker if isinstance(checker, str)
                             else getattr(checker, "__name__", None))
        self._checker = load_function(checker, "checker") if isinstance(checker, str) else checker
        super().__init__(f"jsonl:{path}", train, test)

    def _load(self, path: Path) -> list[Example]:
        q_field, a_field, r_field = self.fields
        examples = []
        for lineno, obj in read_jsonl(path):
            rationale = obj.get(r_field)
            meta = {k: v for k, v in obj.items() if k not in self.fields}
            meta.update(source=str(path), line=lineno)
            examples.append(Example(field(obj, q_field, path, lineno),
                                    field(obj, a_field, path, lineno),
                                    rationale if isinstance(rationale, str) else None, meta))
        return examples

    def is_correct(self, rationale: str, answer: str) -> bool:
        # The user's checker, as it is: Task.verdict isolates it (an exception, a non-bool or a time-out
        # counts as wrong and is reported once), as for every task.
        if self._checker is None:
            return super().is_correct(rationale, answer)
        return self._checker(rationale, answer)


_OPTIONS = {"test_path", "test_fraction", "question_field", "answer_field", "rationale_field",
            "checker"}


@register("jsonl")
def _jsonl(name: str, data_dir=None, seed: int = 0, **options) -> Task:
    if not name:
        raise TriceError("task 'jsonl' needs a path: jsonl:<path/to/file.jsonl>")

    def resolve(p):
        p = Path(p).expanduser()
        return Path(data_dir) / p if data_dir is not None and not p.is_absolute() else p

    unknown = set(options) - _OPTIONS
    if unknown:
        raise TriceError(f"jsonl:{name}: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_OPTIONS))})")
    if options.get("test_path") is not None:
        options["test_path"] = resolve(options["test_path"])
    return JSONLTask(resolve(name), seed=seed, **options)
