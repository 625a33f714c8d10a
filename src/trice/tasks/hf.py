"""Hugging Face datasets: ``hf:<path-or-id>`` or ``hf:<path-or-id>:<config>``.

Where the data comes from, first that applies (``datasets`` is imported only when one is used;
``pip install 'trice-cot[hub]'``):

1. a local directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
   (``datasets.load_from_disk``);
2. a local ``.parquet``, ``.json``, ``.jsonl``, ``.csv`` or ``.arrow`` file, or a directory of such
   files (``datasets.load_dataset``; a directory's files become splits by their names, e.g.
   ``train.parquet`` and ``test.parquet``, and a directory may be a hub repository cloned to disk,
   with its configs);
3. otherwise a hub id, ``datasets.load_dataset(id, config)``: only then is the network used (or
   the local hub cache, with ``HF_HUB_OFFLINE=1``). An unreachable hub is a one-line TriceError.

A relative path is read from ``data_dir`` (``--data-dir``) when one is given, as for ``jsonl:``.

Names: the text after ``hf:`` is a local path if it exists as written (so a path that contains
":" works); otherwise its last ":" separates a config (hub ids have no ":"), e.g.
``hf:openai/gsm8k:main``. The ``config`` option names a config too (needed only for a local
directory whose name ends in ":<something>" that exists).

Splits: ``split`` (``--split``, default ``train``) is the training split; the held-out set is
``test_split`` (``--test-split``) if given, else the split ``test`` if the dataset has one, else
the training split is shuffled with ``seed`` and cut 80/20 (``test_fraction``), by the same rule
as ``jsonl:`` (:func:`split_examples`), so ``hf:qa.jsonl`` and ``jsonl:qa.jsonl`` split alike.
A single saved ``Dataset`` (not a ``DatasetDict``) is the split ``train``.

Columns: the question and answer come from ``question_field`` / ``answer_field``
(``--question-field`` / ``--answer-field``); answers that are numbers in the dataset become their
text; a column ``rationale_field`` (default ``rationale``), if present, holds gold rationales.
Every column other than the question and the answer is kept in ``Example.meta`` under its own name
(TRL-style reward functions receive them, see :mod:`trice.tasks.rewards`).

Checking (``answer_type``, ``--answer-type``): the model's answer is the text after its last
"the answer is" (:func:`~trice.tasks.base.extract_answer`), compared with the gold answer as

* ``exact``: text equal after collapsing whitespace and case;
* ``number``: numbers equal as GSM8K compares them (``$``, commas, trailing zeros ignored);
* ``math``: equal as math-verify reads them (LaTeX, fractions; :mod:`trice.tasks.math_answer`);
* ``auto`` (default): ``number`` when every gold answer (both splits) is a number, else ``exact``.

>>> import datasets
>>> ds = datasets.Dataset.from_dict({"q": ["1 + 1?", "2 + 2?"], "a": [2, 4]})
>>> task = HFTask(datasets.DatasetDict(train=ds, test=ds), question_field="q", answer_field="a")
>>> task.answer_type, task.check("So the answer is 4.0.", task.test[1])
('number', True)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from ..choices import ANSWER_TYPES
from ..errors import TriceError
from .base import Example, Task, extract_answer
from .gsm8k import _NUMBER_RE, normalize_number
from .io import as_text, split_examples
from .registry import register

FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}
_HUB_ID_RE = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_INSTALL = "pip install 'trice-cot[hub]'"


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number the way ``number`` answers are compared.

    >>> [is_number(s) for s in ["42", "$1,000.", "-0.50", "4/5", "seven", ""]]
    [True, True, True, False, False, False]
    """
    return bool(_NUMBER_RE.fullmatch(normalize_number(text)))


def _datasets(where: str):
    try:
        import datasets
    except ImportError:
        raise TriceError(f"{where}: reading Hugging Face datasets needs the `datasets` package: "
                         f"{_INSTALL}") from None
    return datasets


def _one_line(exc: BaseException, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def resolve_source(name: str, data_dir: str | os.PathLike | None = None,
                   config: str | None = None) -> tuple[Path | str, str | None]:
    """``(local Path or hub id, config)`` for the text after ``hf:``.

    >>> resolve_source("openai/gsm8k:main")
    ('openai/gsm8k', 'main')
    >>> resolve_source("openai/gsm8k", config="socratic")
    ('openai/gsm8k', 'socratic')
    """
    where = f"hf:{name}"

    def local(text: str) -> Path:
        path = Path(text).expanduser()
        return Path(data_dir).expanduser() / path if data_dir is not None and not path.is_absolute() else path

    if local(name).exists():
        source, named = local(name), None
    else:
        head, sep, tail = name.rpartition(":")
        if sep and head and tail:
            source, named = (local(head) if local(head).exists() else head), tail
        else:
            source, named = name, None
    if named is not None and config is not None and named != config:
        raise TriceError(f"{where}: config {named!r} in the name and config={config!r} disagree")
    config = config if config is not None else named
    if isinstance(source, Path):
        if source.is_file() and config is not None:
            raise TriceError(f"{where}: a local file has no configs (drop ':{config}')")
        return source, config
    looks_local = (source.startswith((".", "/", "~", "\\")) or Path(source).suffix.lower() in FILE_BUILDERS
                   or not _HUB_ID_RE.fullmatch(source))
    if looks_local:
        shown = local(source)
        raise TriceError(f"{where}: {shown} does not exist (not a local dataset, and not a hub id)")
    return source, config


def load_hf_dataset(name: str, data_dir: str | os.PathLike | None = None,
                    config: str | None = None) -> dict[str, Any]:
    """The splits of dataset ``name`` (the text after ``hf:``), as ``{split: datasets.Dataset}``.

    Local data first (a ``save_to_disk`` directory, a data file or a directory of them), the hub
    last; every failure is a one-line TriceError.
    """
    where = f"hf:{name}"
    source, config = resolve_source(name, data_dir, config)
    datasets = _datasets(where)
    try:
        if isinstance(source, Path):
            if source.is_dir() and ((source / "dataset_dict.json").is_file() or (source / "state.json").is_file()):
                loaded = datasets.load_from_disk(str(source))
            elif source.is_file():
                builder = FILE_BUILDERS.get(source.suffix.lower())
                if builder is None:
                    raise TriceError(f"{where}: cannot read {source.name}: expected one of "
                                     f"{', '.join(FILE_BUILDERS)} (or a save_to_disk directory)")
                loaded = datasets.load_dataset(builder, data_files=str(source))
            else:
                loaded = datasets.load_dataset(str(source), config)
        else:
            loaded = datasets.load_dataset(source, config)
    except TriceError:
        raise
    except ConnectionError as exc:  # no network, or HF_HUB_OFFLINE=1 and not in the cache
        raise TriceError(f"{where}: cannot reach the Hugging Face hub for {source!r} and it is not in the "
                         f"local cache ({_one_line(exc, 120)}); without internet, save it elsewhere with "
                         f"save_to_disk or to_parquet and pass that path: hf:<path>") from None
    except Exception as exc:  # a missing or gated dataset, a bad config, unreadable files: the user's to fix
        kind = type(exc).__name__
        hint = (" (no such dataset on the hub, or it is gated/private: log in with `hf auth login`)"
                if kind == "DatasetNotFoundError" else "")
        raise TriceError(f"{where}: cannot load {str(source)!r}{hint}: {_one_line(exc)}") from None
    if isinstance(loaded, Mapping):  # DatasetDict
        return dict(loaded)
    return {"train": loaded}


def _rows(split) -> tuple[list[dict[str, Any]], list[str]]:
    if hasattr(split, "to_list") and hasattr(split, "column_names"):  # a datasets.Dataset
        return split.to_list(), list(split.column_names)
    rows = [dict(r) for r in split]
    return rows, (list(rows[0]) if rows else [])


class HFTask(Task):
    """A Hugging Face dataset as a task (see the module docstring for the rules).

    ``data`` is a path or hub id (as after ``hf:``), or already-loaded splits: a
    ``datasets.DatasetDict``, a ``Dataset`` (the split ``train``), or ``{split: list of row dicts}``.

    >>> rows = [{"q": f"{i} + 1?", "a": i + 1, "level": i % 2} for i in range(10)]
    >>> task = HFTask({"train": rows}, question_field="q", answer_field="a", seed=0)
    >>> len(task.train), len(task.test), task.answer_type
    (8, 2, 'number')
    >>> ex = task.test[0]
    >>> ex.answer, sorted(ex.meta)
    ('7', ['level'])
    >>> task.check("6 + 1 = 7. So the answer is 7.0.", ex), task.check("The answer is 6.", ex)
    (True, False)
    """

    def __init__(self, data: Any, *, name: str | None = None, config: str | None = None,
                 split: str = "train", test_split: str | None = None, question_field: str = "question",
                 answer_field: str = "answer", rationale_field: str = "rationale",
                 answer_type: str = "auto", test_fraction: float = 0.2, seed: int = 0,
                 data_dir: str | os.PathLike | None = None):
        if name is None:
            name = f"hf:{data}" if isinstance(data, (str, os.PathLike)) else "hf:<in-memory>"
        where = name
        if answer_type not in ANSWER_TYPES:
            raise TriceError(f"{where}: answer_type must be one of {', '.join(ANSWER_TYPES)}, got {answer_type!r}")
        if question_field == answer_field:
            raise TriceError(f"{where}: question_field and answer_field are both {question_field!r}")
        self.question_field, self.answer_field, self.rationale_field = question_field, answer_field, rationale_field
        splits = (load_hf_dataset(os.fspath(data), data_dir, config) if isinstance(data, (str, os.PathLike))
                  else dict(data) if isinstance(data, Mapping) else {"train": data})

        def need_split(wanted: str, flag: str):
            if wanted not in splits:
                raise TriceError(f"{where}: no split {wanted!r} (splits: {', '.join(splits) or 'none'}); "
                                 f"choose one with {flag}")
            return self._examples(splits[wanted], wanted, where)

        train = need_split(split, "--split")
        if test_split is not None:
            test = need_split(test_split, "--test-split")
            self.test_source = test_split
        elif "test" in splits and split != "test":
            test = need_split("test", "--test-split")
            self.test_source = "test"
        else:
            train, test = split_examples(train, seed, test_fraction, where)
            self.test_source = f"{test_fraction:g} of {split} (seed {seed})"
        if answer_type == "auto":
            answer_type = "number" if all(is_number(ex.answer) for ex in train + test) else "exact"
        self.answer_type = answer_type
        super().__init__(name, train, test)

    def _examples(self, split, split_name: str, where: str) -> list[Example]:
        rows, columns = _rows(split)
        for column, flag in ((self.question_field, "--question-field"), (self.answer_field, "--answer-field")):
            if column not in columns:
                raise TriceError(f"{where}: split {split_name!r} has no column {column!r} (columns: "
                                 f"{', '.join(columns) or 'none'}); name the right one with {flag}")
        if not rows:
            raise TriceError(f"{where}: split {split_name!r} is empty (no examples)")
        examples = []
        for i, row in enumerate(rows):
            question, answer = row.get(self.question_field), row.get(self.answer_field)
            for column, value in ((self.question_field, question), (self.answer_field, answer)):
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise TriceError(f"{where}: split {split_name!r} row {i}: column {column!r} is empty")
            rationale = row.get(self.rationale_field)
            meta = {k: v for k, v in row.items() if k not in (self.question_field, self.answer_field)}
            at = f"{where}: split {split_name!r} row {i}: column"
            examples.append(Example(as_text(question, f"{at} {self.question_field!r}"),
                                    as_text(answer, f"{at} {self.answer_field!r}").strip(),
                                    rationale if isinstance(rationale, str) else None, meta))
        return examples

    def normalize(self, answer: str) -> str:
        return normalize_number(answer) if self.answer_type == "number" else super().normalize(answer)

    def is_correct(self, rationale: str, answer: str) -> bool:
        if self.answer_type != "math":
            return super().is_correct(rationale, answer)  # exact or number, through normalize
        predicted = extract_answer(rationale)
        if predicted is None:
            return False
        from .math_answer import (
            math_equal,  # late: math-verify loads only for math answers
        )

        return math_equal(predicted, answer)

    def __repr__(self) -> str:
        return (f"HFTask({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
                f"answer_type={self.answer_type!r})")


_OPTIONS = {"config", "split", "test_split", "question_field", "answer_field", "rationale_field",
            "answer_type", "test_fraction"}


@register("hf")
def _hf(name: str, data_dir=None, seed: int = 0, **options) -> Task:
    if not name:
        raise TriceError("task 'hf' needs a dataset: hf:<directory, data file or hub id>[:<config>]")
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TriceError(f"hf:{name}: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_OPTIONS))})")
    return HFTask(name, name=f"hf:{name}", data_dir=data_dir, seed=seed, **options)
