"""GSM8K grade-school math: ``gsm8k``, from a local directory or the Hugging Face hub.

Where the data comes from, first that exists:

1. ``data_dir`` (CLI ``--data-dir``): a directory in the official layout, ``train.jsonl`` and/or
   ``test.jsonl`` (lines ``{"question": ..., "answer": "... #### N"}``);
2. ``$TRICE_DATA_DIR/gsm8k``;
3. the hub, ``datasets.load_dataset("openai/gsm8k", "main")`` (``datasets`` is imported only then).

Splits load on first use, so a directory holding only ``train.jsonl`` works until ``task.test``
is read, which then raises a TriceError.

Gold answers are parsed as the official code does (the text after ``####``, stripped, commas
removed). Gold rationales are the solution text without its ``<<...>>`` calculator annotations,
ending in "The answer is N." so that each is itself a correct rationale. A model's answer is read
from its final "the answer is N." and is correct when it equals the gold as a number (``$``, commas,
a final period and trailing zeros, 5.0 or 5.00, ignored: the official rule) or, failing that, when
it has no words (2+ letters outside LaTeX commands, so "72 clips" is wrong) and math-verify finds
it equal (:func:`~trice.tasks.math_answer.math_equal`: 1/2 = 0.5, \\frac{1}{2}, \\boxed{72}, 50%).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..errors import TriceError
from .base import Example, Task, extract_answer
from .io import as_text, field, load_hub, local_data_dir, read_jsonl
from .math_answer import math_equal
from .registry import register

SPLITS = ("train", "test")
HUB_DATASET = ("openai/gsm8k", "main")

_ANNOTATION_RE = re.compile(r"<<[^<>]*>>")
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word; \frac, \boxed (LaTeX commands) are not


def parse_gold(solution: str) -> str | None:
    """The official gold answer: the text after ``####``, stripped, commas removed.

    None when there is no ``####`` or what follows is not a number.

    >>> parse_gold("3 + 4 = <<3+4=7>>7 apples.\\n#### 1,007")
    '1007'
    """
    if "####" not in solution:
        return None
    answer = solution.split("####")[-1].strip().replace(",", "")
    return answer if _NUMBER_RE.fullmatch(answer) else None


def gold_rationale(solution: str, answer: str) -> str:
    """The worked solution without calculator annotations, ending in "The answer is N."

    >>> gold_rationale("She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7", "7")
    'She has 3 + 4 = 7 apples.\\nThe answer is 7.'
    """
    body = _ANNOTATION_RE.sub("", solution.split("####")[0]).strip()
    return f"{body}\nThe answer is {answer}." if body else f"The answer is {answer}."


def normalize_number(text: str) -> str:
    """Canonical numeric form: no ``$`` or commas, no final period, no trailing zeros.

    Text that is not a number comes back whitespace-collapsed and otherwise unchanged.

    >>> [normalize_number(s) for s in ["$1,000.", "5.0", "5.00", "-0.50", "+3", "seven"]]
    ['1000', '5', '5', '-0.5', '3', 'seven']
    """
    text = " ".join(text.split())
    cleaned = text.replace("$", "").replace(",", "").strip()
    if cleaned.endswith("."):
        cleaned = cleaned[:-1].rstrip()
    if not _NUMBER_RE.fullmatch(cleaned):
        return text
    try:
        value = Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the regex admits only numbers
        return text
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def answer_matches(predicted: str | None, gold: str) -> bool:
    """Whether an extracted answer matches the gold: equal numbers (:func:`normalize_number`), or a
    word-free answer that math-verify finds equal. Words are refused because math-verify would read
    "5 apples" as 5 but "72 clips" as a product of symbols; GSM8K's official rule accepts neither.

    >>> [answer_matches(p, "0.5") for p in ["$0.50", "1/2", "\\\\frac{1}{2}", "50%", "5", "0.5 cups", None]]
    [True, True, True, True, False, False, False]
    """
    if predicted is None:
        return False
    if normalize_number(predicted) == normalize_number(gold):
        return True
    return not _WORD_RE.search(predicted) and math_equal(predicted, gold)


class GSM8KTask(Task):
    """GSM8K with lazily loaded ``train``/``test`` and a numeric answer check.

    >>> import json, pathlib
    >>> d = pathlib.Path("gsm8k-toy")
    >>> d.mkdir(exist_ok=True)
    >>> row = {"question": "Toy: 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\\n#### 4"}
    >>> _ = (d / "train.jsonl").write_text(json.dumps(row) + "\\n")
    >>> task = GSM8KTask(data_dir=d)
    >>> ex = task.train[0]
    >>> ex.answer, ex.rationale
    ('4', '2 + 2 = 4\\nThe answer is 4.')
    >>> task.is_correct("So the answer is $4.00.", "4"), task.check(ex.rationale, ex)
    (True, True)
    """

    def __init__(self, data_dir: str | Path | None = None, seed: int = 0):
        self.name = "gsm8k"
        self.exemplars = None
        self.seed = seed  # the official splits are used as they are; kept for a uniform API
        self._splits: dict[str, list[Example]] = {}
        self._dir = local_data_dir("gsm8k", data_dir)
        if self._dir is not None and not any((self._dir / f"{s}.jsonl").is_file() for s in SPLITS):
            raise TriceError(f"gsm8k: {self._dir} has neither train.jsonl nor test.jsonl "
                             f"(the official GSM8K layout)")

    # ``train``/``test`` load on first access; the setters let callers replace a split.
    @property
    def train(self) -> list[Example]:
        return self._split("train")

    @train.setter
    def train(self, examples: list[Example]) -> None:
        self._splits["train"] = list(examples)

    @property
    def test(self) -> list[Example]:
        return self._split("test")

    @test.setter
    def test(self, examples: list[Example]) -> None:
        self._splits["test"] = list(examples)

    @property
    def source(self) -> str:
        return str(self._dir) if self._dir is not None else f"hub:{HUB_DATASET[0]}"

    def _split(self, split: str) -> list[Example]:
        if split not in self._splits:
            if self._dir is not None:
                self._splits[split] = self._load_file(split)
            else:
                self._splits.update(self._load_hub())
        return self._splits[split]

    def _load_file(self, split: str) -> list[Example]:
        path = self._dir / f"{split}.jsonl"
        if not path.is_file():
            have = [f"{s}.jsonl" for s in SPLITS if (self._dir / f"{s}.jsonl").is_file()]
            raise TriceError(f"gsm8k: no {split} split: {path} does not exist "
                             f"({self._dir} has {', '.join(have)} only)")
        return [self._example(field(obj, "question", path, n), field(obj, "answer", path, n),
                              f"{path}:{n}")
                for n, obj in read_jsonl(path)]

    def _load_hub(self) -> dict[str, list[Example]]:
        loaded = load_hub("gsm8k", *HUB_DATASET)
        return {split: [self._example(as_text(row["question"], f"hub:{split}:{i + 1}: question"),
                                      as_text(row["answer"], f"hub:{split}:{i + 1}: answer"), f"hub:{split}:{i + 1}")
                        for i, row in enumerate(loaded[split])]
                for split in SPLITS}

    @staticmethod
    def _example(question: str, solution: str, where: str) -> Example:
        answer = parse_gold(solution)
        if answer is None:
            raise TriceError(f"{where}: answer does not end in '#### <number>'")
        return Example(question, answer, gold_rationale(solution, answer),
                       meta={"solution": solution, "source": where})

    def normalize(self, answer: str) -> str:
        return normalize_number(answer)

    def is_correct(self, rationale: str, answer: str) -> bool:
        return answer_matches(extract_answer(rationale), answer)

    def __repr__(self) -> str:
        loaded = ", ".join(f"{s}={len(v)}" for s, v in self._splits.items())
        return f"GSM8KTask(source={self.source!r}{', ' + loaded if loaded else ''})"


@register("gsm8k")
def _gsm8k(name: str, data_dir=None, seed: int = 0, **options) -> Task:
    if name:
        raise TriceError(f"unknown task 'gsm8k/{name}': GSM8K has no subtasks (use 'gsm8k')")
    if options:
        raise TriceError(f"gsm8k: unknown option(s) {', '.join(sorted(options))}")
    return GSM8KTask(data_dir=data_dir, seed=seed)
