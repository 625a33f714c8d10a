"""BIG-Bench Hard: ``bbh`` (all 27 tasks together) and ``bbh/<task>``.

Data, first that exists: ``data_dir`` (CLI ``--data-dir``) in the original BIG-Bench-Hard layout
(``<task>.json`` holding ``{"examples": [{"input", "target"}]}`` and ``cot-prompts/<task>.txt``);
``$TRICE_DATA_DIR/bbh``; the hub, ``datasets.load_dataset("lukaemon/bbh", task)`` (the hub copy
has no CoT prompts, so there ``exemplars`` is None).

Each task is split on its own, as in the paper: a shuffle seeded by ``seed`` and the task name puts
floor(0.6 n) examples in ``train`` and the rest in ``test`` (option ``train_fraction``). Repeated
questions (the data has a few) stay on one side, so the splits share no question.

The check is lm-evaluation-harness's BBH CoT rule: the first match of
``(?<=the answer is )(.*)(?=.)`` (the rest of that line minus its last character, normally the
final period), stripped, must equal the target. Two things are added, both only ever turning a
wrong verdict right: trailing whitespace of the rationale is ignored, and equivalent spellings of
an answer are accepted (``A`` for ``(A)``; any case of True/False, Yes/No, valid/invalid; word lists
with commas; Dyck closing sequences without spaces; numbers as numbers).
"""

from __future__ import annotations

import json
import random
import re
import warnings
from pathlib import Path

from ..errors import TriceError
from .base import Example, Task
from .gsm8k import normalize_number
from .io import load_hub, local_data_dir
from .registry import register

HUB_DATASET = "lukaemon/bbh"
_CHOICE = ("date_understanding disambiguation_qa geometric_shapes hyperbaton "
           "logical_deduction_five_objects logical_deduction_seven_objects "
           "logical_deduction_three_objects movie_recommendation penguins_in_a_table "
           "reasoning_about_colored_objects ruin_names salient_translation_error_detection snarks "
           "temporal_sequences tracking_shuffled_objects_five_objects "
           "tracking_shuffled_objects_seven_objects "
           "tracking_shuffled_objects_three_objects").split()
KIND = {**dict.fromkeys(_CHOICE, "choice"), "boolean_expressions": "case",
        "causal_judgement": "case", "navigate": "case", "web_of_lies": "case",
        "sports_understanding": "case", "formal_fallacies": "case",
        "multistep_arithmetic_two": "number", "object_counting": "number",
        "word_sorting": "words", "dyck_languages": "dyck"}
TASKS = tuple(sorted(KIND))  # the 27 task names

_LM_EVAL_RE = re.compile(r"(?<=the answer is )(.*)(?=.)")
_CHOICE_RE = re.compile(r"\(([A-Za-z])\)|([A-Z])")
_FINAL_RE = re.compile(r"the answer is (.*)\.\s*$")
# pt-direct's target is "The answer is y." (trice.prompts.direct_target), which lm-eval's case-sensitive CoT
# regex never reads (its own direct BBH variant compares the raw generation instead): read it the same way,
# but only when lm-eval's regex finds nothing: every answer lm-eval reads keeps lm-eval's verdict, and a
# rationale that states only "The answer is y." (which lm-eval scores wrong) can now be right.
_DIRECT_RE = re.compile(r"(?<=The answer is )(.*)(?=.)")


def lm_eval_extract(text: str) -> str | None:
    """lm-evaluation-harness's BBH CoT filter: regex, first match, stripped (None: "[invalid]").

    >>> lm_eval_extract("So the answer is (A). Then the answer is (B).")
    '(A). Then the answer is (B)'
    """
    found = _LM_EVAL_RE.findall(text)
    return found[0].strip() if found else None


def infer_kind(target: str) -> str:
    """The answer kind a target looks like, for a check made without a task name."""
    t = target.strip()
    if re.fullmatch(r"\([A-Z]\)", t):
        return "choice"
    if t.lower() in ("true", "false", "yes", "no", "valid", "invalid"):
        return "case"
    if re.fullmatch(r"[-+]?\d+(\.\d+)?", t):
        return "number"
    if t and set(t) <= set(")]}> "):
        return "dyck"
    return "exact"


def canonical(kind: str, answer: str) -> str:
    """The form in which two answers of ``kind`` are compared.

    >>> canonical("choice", "B"), canonical("case", "Valid"), canonical("dyck", "] ) >")
    ('(B)', 'valid', '])>')
    >>> canonical("words", "apple, Banana  cherry")
    'apple banana cherry'
    """
    text = " ".join(answer.split())
    if kind == "choice":
        m = _CHOICE_RE.fullmatch(text)
        return f"({(m.group(1) or m.group(2)).upper()})" if m else text
    if kind == "case":
        return text.lower()
    if kind == "number":
        return normalize_number(text)
    if kind == "words":
        return " ".join(w for w in re.split(r"[\s,]+", text.lower()) if w)
    if kind == "dyck":
        return re.sub(r"[\s,]", "", text)
    return text


def bbh_correct(rationale: str, target: str, task: str | None = None) -> bool:
    """c(z, y) for BBH: lm-evaluation-harness's extraction, then comparison in canonical form.

    >>> bbh_correct("... So the answer is (C).", "(C)"), bbh_correct("So the answer is C.", "(C)")
    (True, True)
    >>> bbh_correct("So the answer is (C)", "(C)")  # no final period: lm-eval reads "(C"
    False
    >>> bbh_correct("The answer is yes.", "yes"), bbh_correct("So the answer is no. The answer is yes.", "yes")
    (True, False)
    """
    text = rationale.rstrip()
    predicted = lm_eval_extract(text)
    if predicted is None:  # a direct answer (pt-direct), see _DIRECT_RE
        found = _DIRECT_RE.findall(text)
        predicted = found[0].strip() if found else None
    if predicted is None:
        return False
    kind = KIND.get(task) or infer_kind(target)
    return canonical(kind, predicted) == canonical(kind, target)


def parse_cot_prompt(text: str, task: str, where: str) -> list[Example]:
    """The exemplars of a ``cot-prompts/<task>.txt`` file: a header, then blocks
    "Q: <question>\\nA: Let's think step by step.\\n<rationale> So the answer is X." """
    exemplars = []
    blocks = re.split(r"(?:^|\n\n)Q: ", text.replace("\r\n", "\n").strip())[1:]
    for i, block in enumerate(blocks, start=1):
        question, sep, rationale = block.partition("\nA: ")
        rationale = rationale.strip()
        if rationale.startswith("Let's think step by step."):
            rationale = rationale[len("Let's think step by step."):].strip()
        final = _FINAL_RE.search(rationale)
        if not sep or not final:
            raise TriceError(f"{where}: exemplar {i} is not 'Q: ...\\nA: ... the answer is X.'")
        exemplars.append(Example(question.strip(), final.group(1).strip(), rationale,
                                 meta={"task": task, "source": f"{where}#{i}"}))
    if not exemplars:
        raise TriceError(f"{where}: no 'Q: ... A: ...' exemplars found")
    return exemplars


def split(examples: list[Example], task: str, seed: int, train_fraction: float = 0.6):
    """Seeded train/test split of one task: floor(train_fraction * n) train examples, and
    repeated questions kept together (so the splits are disjoint as text too)."""
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.question, []).append(ex)
    order = list(groups.values())
    random.Random(f"bbh/{task}/{seed}").shuffle(order)
    n_train = int(len(examples) * train_fraction + 1e-9)
    train: list[Example] = []
    test: list[Example] = []
    for group in order:
        (train if len(train) + len(group) <= n_train else test).extend(group)
    return train, test


def _load_local(root: Path, task: str) -> tuple[list[Example], list[Example] | None]:
    path = root / f"{task}.json"
    if not path.is_file():
        raise TriceError(f"bbh/{task}: {path} not found (expected the BIG-Bench-Hard layout)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TriceError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    rows = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise TriceError(f"{path}: expected an object with an 'examples' list")
    examples = [_example(row, task, f"{path}: example {i}") for i, row in enumerate(rows, 1)]
    if not examples:
        raise TriceError(f"{path}: no examples")
    prompt = root / "cot-prompts" / f"{task}.txt"
    exemplars = (parse_cot_prompt(prompt.read_text(encoding="utf-8"), task, str(prompt))
                 if prompt.is_file() else None)
    return examples, exemplars


def _load_hub(task: str) -> tuple[list[Example], None]:
    rows = load_hub(f"bbh/{task}", HUB_DATASET, task, split="test")
    return [_example(row, task, f"hub:{HUB_DATASET}/{task}: example {i}") for i, row in enumerate(rows, 1)], None


FIELDS = ("input", "target")


def _example(row, task: str, where: str) -> Example:
    if not (isinstance(row, dict) and all(isinstance(row.get(k), str) for k in FIELDS)):
        raise TriceError(f"{where}: needs string fields 'input' and 'target'")
    return Example(row["input"], row["target"], meta={"task": task})


class BBHTask(Task):
    """One BBH task (``tasks="navigate"``) or several combined (``tasks=None``: all 27).

    >>> import json, pathlib
    >>> d = pathlib.Path("bbh-toy")
    >>> (d / "cot-prompts").mkdir(parents=True, exist_ok=True)
    >>> rows = [{"input": f"Toy {i}: yes or no?", "target": "Yes"} for i in range(10)]
    >>> _ = (d / "navigate.json").write_text(json.dumps({"examples": rows}))
    >>> _ = (d / "cot-prompts" / "navigate.txt").write_text("Header.\\n\\nQ: Toy?\\n"
    ...     "A: Let's think step by step.\\nWe stay put. So the answer is Yes.\\n")
    >>> task = BBHTask("navigate", data_dir=d)
    >>> len(task.train), len(task.test), task.exemplars[0].answer
    (6, 4, 'Yes')
    >>> task.check("We end where we began. So the answer is yes.", task.test[0])
    True
    """

    def __init__(self, tasks: str | list[str] | None = None, data_dir=None, seed: int = 0,
                 train_fraction: float = 0.6):
        names = list(TASKS) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
        for name in names:
            if name not in KIND:
                raise TriceError(f"unknown BBH task {name!r} (known: {', '.join(TASKS)})")
        if not 0.0 < float(train_fraction) < 1.0:
            raise TriceError(f"bbh: train_fraction must be in (0, 1), got {train_fraction}")
        root = local_data_dir("bbh", data_dir)
        train: list[Example] = []
        test: list[Example] = []
        self.exemplars_by_task: dict[str, list[Example] | None] = {}
        for name in names:
            examples, exemplars = _load_local(root, name) if root else _load_hub(name)
            self.exemplars_by_task[name] = exemplars
            task_train, task_test = split(examples, name, seed, train_fraction)
            train += task_train
            test += task_test
        missing = [n for n, ex in self.exemplars_by_task.items() if ex is None]
        if missing and root is not None:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            warnings.warn(f"bbh: no cot-prompts/<task>.txt under {root} for {len(missing)} "
                          f"task(s) ({shown}); their exemplars are None",
                          RuntimeWarning, stacklevel=2)
        self.task_names = names
        self.source = str(root) if root else f"hub:{HUB_DATASET}"
        label = f"bbh/{names[0]}" if tasks is not None and len(names) == 1 else "bbh"
        super().__init__(label, train, test,
                         exemplars=self.exemplars_by_task[names[0]] if len(names) == 1 else None)

    def exemplars_for(self, example: Example) -> list[Example] | None:
        """The CoT exemplars of ``example``'s own task (what ``exemplars`` is for one task)."""
        return self.exemplars_by_task.get(example.meta.get("task"), self.exemplars)

    def normalize(self, answer: str) -> str:
        single = self.task_names[0] if len(self.task_names) == 1 else None
        return canonical(KIND.get(single) or infer_kind(answer), answer)

    def is_correct(self, rationale: str, answer: str) -> bool:
        single = self.task_names[0] if len(self.task_names) == 1 else None
        return bbh_correct(rationale, answer, single)

    def check(self, rationale: str, example: Example) -> bool:
        task = example.meta.get("task")
        if task is None and len(self.task_names) == 1:
            task = self.task_names[0]
        return bbh_correct(rationale, example.answer, task)


_OPTIONS = {"train_fraction"}


@register("bbh")
def _bbh(name: str, data_dir=None, seed: int = 0, **options) -> Task:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TriceError(f"bbh: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_OPTIONS))})")
    if name and name not in KIND:
        import difflib

        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TriceError(f"unknown BBH task 'bbh/{name}' ({hint}known: {', '.join(TASKS)})")
    return BBHTask(name or None, data_dir=data_dir, seed=seed, **options)
