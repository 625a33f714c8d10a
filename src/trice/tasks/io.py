"""What the task families share to read data: the local data directory, JSONL lines, required fields,
the hub (through ``datasets``), the train/test cut, and a user's function named ``module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import TriceError

DATA_ENV = "TRICE_DATA_DIR"


def local_data_dir(family: str, data_dir: str | os.PathLike | None) -> Path | None:
    """The local directory of dataset ``family``: ``data_dir``, else ``$TRICE_DATA_DIR/<family>``.

    Returns None when neither names one (the caller then tries the hub). A ``data_dir`` that is a
    root holding ``<family>/`` is accepted too.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise TriceError(f"{family}: data directory {path} does not exist")
        return path / family if (path / family).is_dir() else path
    root = os.environ.get(DATA_ENV)
    if root and (Path(root).expanduser() / family).is_dir():
        return Path(root).expanduser() / family
    return None


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a one-line TriceError on any bad line.
    UTF-8 with or without a BOM, LF or CRLF line endings.

    >>> import pathlib
    >>> _ = pathlib.Path("x.jsonl").write_text('{"q": 1}\\n\\n{"q": 2}\\n')
    >>> [(n, obj["q"]) for n, obj in read_jsonl("x.jsonl")]
    [(1, 1), (3, 2)]
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a UTF-8 BOM (files saved on Windows) is dropped
    except FileNotFoundError:
        raise TriceError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TriceError(f"{path}: cannot read: {exc}") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TriceError(f"{path}:{lineno}: invalid JSON ({exc.msg}, column {exc.colno})"
                             ) from None
        if not isinstance(obj, dict):
            raise TriceError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append((lineno, obj))
    if not rows:
        raise TriceError(f"{path}: empty file (no examples)")
    return rows


def field(obj: dict[str, Any], name: str, path: Path | str, lineno: int | None = None) -> str:
    """``obj[name]`` as a string (a number becomes its text); a TriceError naming the file and line when it
    is missing or is anything else (an object, a list, true/false: :func:`as_text`)."""
    where = f"{path}:{lineno}" if lineno is not None else str(path)
    value = obj.get(name)
    if value is None:
        raise TriceError(f"{where}: missing field {name!r} (fields: {', '.join(map(str, obj))})")
    return as_text(value, f"{where}: field {name!r}")


def as_text(value: Any, where: str) -> str:
    """A question's or an answer's text: a string as it is, a number as JSON writes it ("3", "2.5"); anything
    else is refused with a TriceError naming ``where`` (an answer given as an object would otherwise be
    compared as its JSON text, and no rationale would ever be right).

    >>> as_text(3, "x"), as_text("3", "x")
    ('3', '3')
    >>> as_text({"value": 3}, "qa.jsonl:2: field 'answer'")
    Traceback (most recent call last):
    ...
    trice.errors.TriceError: qa.jsonl:2: field 'answer' must be a string or a number, got object {'value': 3}
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    kind = {dict: "object", list: "list", bool: "true/false"}.get(type(value), type(value).__name__)
    raise TriceError(f"{where} must be a string or a number, got {kind} {value!r:.60}")


def load_hub(where: str, dataset: str, config: str | None = None, **kwargs):
    """``datasets.load_dataset(dataset, config, **kwargs)`` for a task family with no local data; every
    failure (no ``datasets``, no network, an unknown dataset) is a one-line TriceError."""
    try:
        import datasets
    except ImportError:
        raise TriceError(f"{where}: no local data (pass data_dir / --data-dir, or set {DATA_ENV}) and the "
                         "`datasets` package is not installed (pip install datasets)") from None
    try:
        return datasets.load_dataset(dataset, config, **kwargs)
    except Exception as exc:  # offline, hub errors: all the user's to fix
        raise TriceError(f"{where}: cannot load {dataset} from the hub ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); pass data_dir / --data-dir or set {DATA_ENV}") from None


def split_examples(examples: Sequence, seed: int, test_fraction: float = 0.2,
                   where: str = "data") -> tuple[list, list]:
    """The deterministic train/test cut used when a dataset has no held-out split: shuffle with
    ``seed``, the first floor((1 - test_fraction) * n) (at least 1) are ``train``, the rest ``test``.

    Shared by ``jsonl:`` and ``hf:``, so one file read by either family splits alike.

    >>> split_examples(list(range(10)), seed=0)
    ([8, 4, 3, 0, 9, 1, 2, 5], [6, 7])
    >>> [len(part) for part in split_examples(list(range(10)), seed=0, test_fraction=0.5)]
    [5, 5]
    """
    if not 0.0 <= float(test_fraction) < 1.0:
        raise TriceError(f"{where}: test_fraction must be in [0, 1), got {test_fraction}")
    order = list(range(len(examples)))
    random.Random(f"jsonl:{seed}").shuffle(order)
    n_train = max(1, math.floor(len(examples) * (1.0 - float(test_fraction)) + 1e-9))
    return [examples[i] for i in order[:n_train]], [examples[i] for i in order[n_train:]]


def load_function(spec: str, what: str = "checker") -> Callable[..., Any]:
    """``"module:function"`` (or ``"path/to/file.py:function"``) -> the function: a user's checker or reward
    (``what`` names it in errors)."""
    module_name, _, func_name = spec.rpartition(":")
    if not module_name or not func_name:
        raise TriceError(f"{what} {spec!r} must look like 'module:function'")
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
        raise TriceError(f"cannot import {what} {spec!r}: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise TriceError(f"{what} {spec!r}: module {module_name!r} has no function {func_name!r}")
    return func
