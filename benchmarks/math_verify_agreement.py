"""math-verify vs GSM8K's numeric rule: agreement on every gold answer, and where they differ on
model outputs. Not a timing benchmark. Prints markdown (docs/math-verify.md holds one run).

(a) Each training example: the official gold (``parse_gold``) against math-verify reading the
    gold text after ``####`` (commas kept), the gold rationale's final "The answer is N.", and gold+1.
(b) Model outputs: SmolLM2-135M (the packaged GGUF) sampled once per question after a 3-shot
    prefix (the first three training rationales), plus hand-made answer forms of a few golds.
    Columns: the old rule (``normalize_number`` equality), math-verify alone (``math_equal``) and
    the GSM8K check now (``answer_matches``: old rule, else word-free math-verify).

    python benchmarks/math_verify_agreement.py [--questions 150] [--samples /tmp/samples.json]
"""

import argparse
import json
import os
import re
import sys
import time
from decimal import Decimal
from pathlib import Path

from trice.tasks.base import extract_answer
from trice.tasks.gsm8k import GSM8KTask, answer_matches, normalize_number, parse_gold
from trice.tasks.math_answer import math_answer_text, math_equal

# GSM8K's training split, read where TRICE_DATA_DIR points (else ../shared/data beside the repository)
DATA = Path(os.environ.get("TRICE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data") / "gsm8k"
_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def gold_agreement(task: GSM8KTask) -> None:
    rows = task.train
    counts = {"gold text": 0, "rationale": 0, "check": 0, "gold+1 rejected": 0}
    bad = []
    for n, ex in enumerate(rows, 1):
        text = ex.meta["solution"].split("####")[-1].strip()  # as written: "1,000" keeps its comma
        gold = parse_gold(ex.meta["solution"])
        verdicts = {"gold text": math_equal(text, gold),
                    "rationale": math_equal(math_answer_text(ex.rationale) or "", gold),
                    "check": task.check(ex.rationale, ex),
                    "gold+1 rejected": not math_equal(str(Decimal(gold) + 1), gold)}
        for key, ok in verdicts.items():
            counts[key] += ok
        if not all(verdicts.values()):
            bad.append((n, text, [k for k, ok in verdicts.items() if not ok]))
    print(f"## (a) Gold answers: {len(rows)} GSM8K training examples\n")
    print("| comparison with parse_gold | agree |\n|---|---|")
    for key, label in [("gold text", "math-verify reads the text after `####`"),
                       ("rationale", "math-verify reads the gold rationale's \"The answer is N.\""),
                       ("check", "GSM8K check (`answer_matches`) accepts the gold rationale"),
                       ("gold+1 rejected", "math-verify rejects gold + 1")]:
        print(f"| {label} | {counts[key]}/{len(rows)} |")
    print(f"\nDisagreements: {len(bad)}" + "".join(f"\n- line {n}: {t!r} ({', '.join(k)})" for n, t, k in bad))


def sample_answers(task: GSM8KTask, questions: int, cache: Path | None) -> list[dict]:
    if cache and cache.is_file():
        return json.loads(cache.read_text())[:questions]
    import torch

    from trice.modeling import Policy, load_model
    from trice.prompts import PLAIN
    from trice.generation.sampler import sample

    torch.set_num_threads(1)  # a shared machine
    model, tokenizer = load_model("smollm2-135m", dtype="float32")
    policy = Policy.untuned(model, tokenizer).with_prefix(PLAIN.prefix(task.train[:3]))
    examples = task.train[3:3 + questions]
    start = time.time()
    outs = sample(policy, [PLAIN.prompt(ex.question) for ex in examples], max_new_tokens=128,
                  temperature=1.0, generator=torch.Generator().manual_seed(0))
    print(f"sampled {len(outs)} in {time.time() - start:.0f} s", file=sys.stderr)
    rows = [{"id": i + 4, "gold": ex.answer, "text": out.text}  # id: the line of train.jsonl
            for i, (ex, out) in enumerate(zip(examples, outs))]
    if cache:
        cache.write_text(json.dumps(rows))
    return rows


# Hand-made forms of a gold g (hand-written: the small model rarely writes these itself).
FORMS = [("$g", "${g}"), ("g.00", "{g}.00"), ("commas", "{gc}"), ("\\boxed{g}", "\\boxed{{{g}}}"),
         ("$\\boxed{g}$", "$\\boxed{{{g}}}$"), ("\\frac{2g}{2}", "\\frac{{{g2}}}{{2}}"), ("2g/2", "{g2}/2"),
         ("g%", "{g}%"), ("x = g", "x = {g}"), ("g dollars", "{g} dollars"), ("g apples", "{g} apples"),
         ("\\$g", "\\${g}"), ("g + 0", "{g} + 0"), ("(g)", "({g})"), ("g+1", "{g1}"), ("g0", "{g}0"), ("-g", "-{g}"),
         ("g, g+1", "{g}, {g1}"), ("g+1, g", "{g1}, {g}"), ("g and g+1", "{g} and {g1}"),
         ("g:30", "{g}:30"), ("g x 2", "{g} x 2"), ("g.5", "{g}.5")]


def form_table(golds: list[str]) -> None:
    print(f"\n### Hand-made answer forms of {len(golds)} golds ({', '.join(golds)})\n")
    print("| form | example | old accepts | math-verify accepts | GSM8K check accepts |\n|---|---|---|---|---|")
    for name, fmt in FORMS:
        answers = [fmt.format(g=g, gc=f"{int(g):,}", g2=2 * int(g), g1=int(g) + 1) for g in golds]
        old = sum(normalize_number(a) == normalize_number(g) for a, g in zip(answers, golds))
        mv = sum(math_equal(a, g) for a, g in zip(answers, golds))
        new = sum(answer_matches(a, g) for a, g in zip(answers, golds))
        print(f"| {name} | `{answers[-1]}` | {old}/{len(golds)} | {mv}/{len(golds)} | {new}/{len(golds)} |")


def model_table(rows: list[dict]) -> None:
    verdicts = []
    for row in rows:
        answer = extract_answer(row["text"])
        old = answer is not None and normalize_number(answer) == normalize_number(row["gold"])
        mv = answer is not None and math_equal(answer, row["gold"])
        verdicts.append((row, answer, old, mv, answer_matches(answer, row["gold"])))
    answered = [v for v in verdicts if v[1] is not None]
    differ = [v for v in answered if len({v[2], v[3], v[4]}) > 1]
    print(f"\n## (b) Model outputs: {len(rows)} SmolLM2-135M samples, {len(answered)} with "
          f"\"the answer is\"\n")
    print(f"Correct: old rule {sum(v[2] for v in answered)}, math-verify {sum(v[3] for v in answered)}, "
          f"GSM8K check {sum(v[4] for v in answered)}. Verdicts differ on {len(differ)}.\n")
    if differ:
        print("| question id | gold | extracted answer | old | math-verify | GSM8K check |\n|---|---|---|---|---|---|")
    for row, answer, old, mv, new in differ:
        print(f"| {row['id']} | {row['gold']} | `{answer}` | {old} | {mv} | {new} |")
    # The model is almost never right, so also ask: would each answer count if the gold were the
    # first or the last number it states? That tests its form (units, commas, extra text).
    stated = {a: _NUM_RE.findall(a) for _, a, *_ in answered}
    pairs = sorted({(a, normalize_number(n)) for a, nums in stated.items() for n in nums[:1] + nums[-1:]})
    judged = [(a, g, normalize_number(a) == normalize_number(g), math_equal(a, g), answer_matches(a, g))
              for a, g in pairs]
    differ = [r for r in judged if len(set(r[2:])) > 1]
    print(f"\nThe same {len({a for a, _ in pairs})} distinct answers against the first and the last "
          f"number each states ({len(judged)} pairs): old rule accepts {sum(r[2] for r in judged)}, "
          f"math-verify {sum(r[3] for r in judged)}, GSM8K check {sum(r[4] for r in judged)}; they differ on "
          f"{len(differ)}:\n")
    print("| extracted answer | gold (a number it states) | old | math-verify | GSM8K check |\n|---|---|---|---|---|")
    for answer, gold, old, mv, new in differ:
        print(f"| `{answer}` | {gold} | {old} | {mv} | {new} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=150, help="questions to sample (0: none)")
    parser.add_argument("--samples", type=Path, help="JSON cache of the samples (read if it exists)")
    parser.add_argument("--data-dir", type=Path, default=DATA)
    args = parser.parse_args()
    task = GSM8KTask(data_dir=args.data_dir)
    gold_agreement(task)
    rows = sample_answers(task, args.questions, args.samples) if args.questions else []
    if rows:
        model_table(rows)
    golds = [ex.answer for ex in task.train if ex.answer.isdigit()]
    form_table([g for g in golds if int(g) < 1000][:4] + [g for g in golds if int(g) >= 1000][:4])


if __name__ == "__main__":
    main()
