"""File helpers shared by the task families: the local data directory, JSONL lines, required fields."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Sequence

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

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> _ = p.write_text('{"q": 1}\\n\\n{"q": 2}\\n')
    >>> [(n, obj["q"]) for n, obj in read_jsonl(p)]
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


def field(obj: dict[str, Any], name: str, path: Path, lineno: int) -> str:
    """``obj[name]`` as a string; a TriceError naming the file and line when it is missing."""
    value = obj.get(name)
    if value is None:
        raise TriceError(f"{path}:{lineno}: missing field {name!r} (fields: {', '.join(obj)})")
    return value if isinstance(value, str) else json.dumps(value)


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
