"""Custom data: ``jsonl:<path>``, one JSON object per line with a question and an answer.

Field names, the train/test split and the checker are options::

    get_task("jsonl:data/qa.jsonl", question_field="q", answer_field="a",
             test_path="data/qa_test.jsonl", checker="mypkg.checks:same_number")

Split: with ``test_path`` the file is all training data and ``test_path`` the test set; otherwise
the examples are shuffled with ``seed`` and the first floor((1 - test_fraction) * n) become
``train`` (test_fraction defaults to 0.2, i.e. 80/20), the rest ``test``. A relative path is
read from ``data_dir`` when one is given.

Also home to the small local-file helpers that the GSM8K and BBH loaders share.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

from .base import Example, Task
from .io import DATA_ENV, field, local_data_dir, read_jsonl, split_examples  # noqa: F401  (re-exported)
from .registry import register
from ..errors import TriceError

def load_checker(spec: str) -> Callable[[str, str], Any]:
    """``"module:function"`` (or ``"path/to/file.py:function"``) -> the function."""
    module_name, _, func_name = spec.rpartition(":")
    if not module_name or not func_name:
        raise TriceError(f"checker {spec!r} must look like 'module:function'")
    try:
        if module_name.endswith(".py"):
            loc = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loc is None or not Path(module_name).is_file():
                raise FileNotFoundError(f"no file {module_name}")
            module = importlib.util.module_from_spec(loc)
            loc.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:  # anything the import raises is the user's to fix
        raise TriceError(f"cannot import checker {spec!r}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise TriceError(f"checker {spec!r}: module {module_name!r} has no function {func_name!r}")
    return func


class JSONLTask(Task):
    """Examples from a JSONL file, checked by the default rule or a user ``checker``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "qa.jsonl"
    >>> _ = p.write_text("".join(f'{{"question": "{i} + 1?", "answer": "{i + 1}"}}\\n'
    ...                          for i in range(10)))
    >>> task = JSONLTask(p, seed=0)
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
        self._checker = load_checker(checker) if isinstance(checker, str) else checker
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
