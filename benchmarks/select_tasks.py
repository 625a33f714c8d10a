"""Choose the tasks of the compute-fair study by a stated criterion, measured before any training.

The criterion (docs/study/criterion.md): the untuned few-shot chain-of-thought greedy accuracy of the
packaged SmolLM2-135M-Instruct (``--method fewshot-cot``: 3 exemplars, plain-text prompt, greedy
decoding) lies between 10% and 70%, on 300 or more held-out questions or on a BIG-Bench Hard task's
whole 40% split. reasoning-gym tasks use their search-found exemplars (the model's own correct
rationales on training questions); BIG-Bench Hard tasks their own 3-shot CoT prompts.

    TRICE_DATA_DIR=/work/shared/data python benchmarks/select_tasks.py --stage screen --only basic_arithmetic
    TRICE_DATA_DIR=/work/shared/data python benchmarks/select_tasks.py --stage confirm --only basic_arithmetic_p,gcd
    TRICE_DATA_DIR=/work/shared/data python benchmarks/select_tasks.py --table      # docs/study/criterion.md's table
    TRICE_DATA_DIR=/work/shared/data python benchmarks/select_tasks.py --estimate --only gcd   # token-passes bound

``screen`` measures a candidate cheaply (its first 100 held-out questions, at most 96 new tokens);
``confirm`` on the whole held-out set the study evaluates on, at the study's max_new_tokens. Each
measurement appends one JSON line to ``--results`` (default runs/select/results.jsonl): candidate,
task, options, stage, n_eval, max_new_tokens, accuracy, standard error, chance level, seconds.
``--table`` prints the markdown table of that file. One thread by default (shared machine).

Each measurement loads the model afresh (float32, CPU) with the study's ``params="lora"``: LoRA's B
matrices start at zero, so this is the untuned model; a fresh load because PEFT wraps it in place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

# name -> (task, task options, max_new_tokens of the study, chance accuracy or None, kind)
GYM_TRAIN, GYM_TEST = 2000, 300
CANDIDATES = {
    # reasoning-gym: n_train large enough that a 16-question x 200-step run stays under 2 epochs
    "basic_arithmetic": ("gym/basic_arithmetic", dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2,
                                                      allow_parentheses=False,
                                                      allow_negation=False), 64, None),
    # allow_parentheses=True: the simple generator's "/" prints a divisor other than the one it divides by
    # (reasoning-gym bug: 497 of 2000 labels wrong), and trice's option check refuses operators=[...]
    "basic_arithmetic_p": ("gym/basic_arithmetic", dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2,
                                                        allow_parentheses=True, allow_negation=False), 64, None),
    "leg_counting": ("gym/leg_counting", dict(min_animals=1, max_animals=3, min_instances=1, max_instances=3),
                     96, None),
    "products": ("gym/products", dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2), 64, None),
    "gcd": ("gym/gcd", dict(min_numbers=2, max_numbers=2, min_value=1, max_value=100), 96, None),
    "simple_equations": ("gym/simple_equations", dict(min_terms=2, max_terms=2, min_value=1, max_value=20),
                         96, None),
    # free-form answers (issue 17: a word or a word list, checked by exact match, so a near miss scores 0)
    "spell_backward": ("gym/spell_backward", dict(min_word_len=3, max_word_len=6), 64, None),
    "word_sequence_reversal": ("gym/word_sequence_reversal", dict(min_words=3, max_words=4), 64, None),
    "family_relationships": ("gym/family_relationships", dict(min_family_size=4, max_family_size=6), 64, None),
    "sentence_reordering": ("gym/sentence_reordering", dict(min_words_in_sentence=3, max_words_in_sentence=6),
                            64, None),
    # BIG-Bench Hard: 250 questions (causal_judgement 187), 60% train / 40% held-out
    "object_counting": ("bbh/object_counting", {}, 128, None),
    "date_understanding": ("bbh/date_understanding", {}, 96, 1 / 6),
    "sports_understanding": ("bbh/sports_understanding", {}, 64, 1 / 2),
    "logical_deduction_three_objects": ("bbh/logical_deduction_three_objects", {}, 128, 1 / 3),
    "tracking_shuffled_objects_three_objects": ("bbh/tracking_shuffled_objects_three_objects", {}, 128, 1 / 3),
    "temporal_sequences": ("bbh/temporal_sequences", {}, 128, 1 / 4),
    "penguins_in_a_table": ("bbh/penguins_in_a_table", {}, 128, 1 / 5),
    "navigate": ("bbh/navigate", {}, 160, 1 / 2),
    "boolean_expressions": ("bbh/boolean_expressions", {}, 224, 1 / 2),
}


def options_for(name: str) -> dict:
    task, options, _, _ = CANDIDATES[name]
    return {**options, "n_train": GYM_TRAIN, "n_test": GYM_TEST} if task.startswith("gym/") else dict(options)


def measure(name: str, stage: str, threads: int, dtype: str, n_eval: int | None,
            max_new_tokens: int | None, out_root: str) -> dict:
    from trice import TrainConfig, TriceError, train

    task_name, _, study_tokens, chance = CANDIDATES[name]
    bbh = task_name.startswith("bbh/")
    if n_eval is None:
        n_eval = 100 if stage == "screen" else (10_000 if bbh else GYM_TEST)  # BBH: the whole 40% split
    if max_new_tokens is None:
        max_new_tokens = min(study_tokens, 96) if stage == "screen" else study_tokens
    config = TrainConfig(method="fewshot-cot", task=task_name, task_options=options_for(name), params="lora", prompt_format="plain",
                         n_eval=n_eval, max_new_tokens=max_new_tokens, threads=threads, seed=0, dtype=dtype,
                         checkpoint_every=0, out=f"{out_root}/{stage}-{name}")
    t0 = time.perf_counter()
    try:
        summary = train(config)
    except TriceError as exc:  # e.g. the exemplar search finds fewer than 3 correct rationales: fails the criterion
        return {"candidate": name, "task": task_name, "options": options_for(name), "stage": stage,
                "n_eval": 0, "max_new_tokens": max_new_tokens, "accuracy": None, "standard_error": None,
                "chance": chance, "seconds": round(time.perf_counter() - t0, 1), "error": str(exc)}
    seconds = time.perf_counter() - t0
    acc, n = summary["greedy_accuracy_before"], summary["n_eval"]
    return {"candidate": name, "task": task_name, "options": options_for(name), "stage": stage, "n_eval": n,
            "max_new_tokens": max_new_tokens, "accuracy": acc,
            "standard_error": math.sqrt(acc * (1 - acc) / n) if n else None, "chance": chance,
            "seconds": round(seconds, 1), "dtype": dtype,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


def estimate(names: list[str], batch: int = 16, subsample: int = 16, steps: int = 30, factor: int = 4) -> str:
    """Token-passes (trice.training.budget) of a ``steps``-step TRICE run, estimated from the prompts' lengths and an
    upper bound on the rationales' (every sampled rationale runs to max_new_tokens): memory set-up
    n_train x T sampled, then per step M x T sampled + 3 x L x (question + T) scored (the shared
    exemplar prefix is not counted). The provisional compute_budget is ``factor`` times that."""
    from trice.modeling import load_model
    from trice.prompts import PLAIN
    from trice.tasks import task_from_config
    from trice import TrainConfig

    _, tokenizer = load_model("smollm2-135m", "float32")
    lines = ["| task | n_train | T = max_new_tokens | mean question tokens | set-up | per step | "
             f"{steps}-step run | provisional compute_budget ({factor}x) |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        task_name, _, tokens, _ = CANDIDATES[name]
        task = task_from_config(TrainConfig(task=task_name, task_options=options_for(name)))
        train = task.train
        q = sum(len(tokenizer(PLAIN.prompt(e.question), add_special_tokens=False).input_ids) for e in train[:200])
        q /= min(len(train), 200)
        setup = len(train) * tokens
        step = batch * tokens + 3 * subsample * (q + tokens)
        run = setup + steps * step
        budget = float(f"{factor * run:.2g}")
        lines.append(f"| {task_name} | {len(train)} | {tokens} | {q:.0f} | {setup:,} | {step:,.0f} | {run:,.0f} | "
                     f"{budget:,.0f} |")
    return "\n".join(lines)


def majority(task_name: str, n: int) -> tuple[float | None, int | None]:
    """BIG-Bench Hard: the accuracy of always giving the held-out split's most common answer, and the
    split's size (seed 0)."""
    if not task_name.startswith("bbh/") or not n:
        return None, None
    from collections import Counter
    from trice import TrainConfig
    from trice.tasks import task_from_config

    test = task_from_config(TrainConfig(task=task_name)).test[:n]
    whole = len(task_from_config(TrainConfig(task=task_name)).test)
    return Counter(e.answer for e in test).most_common(1)[0][1] / len(test), whole


def table(rows: list[dict]) -> str:
    """Chance: a uniform guess among the options; above chance: accuracy - 2 SE > the larger of that and
    the majority-class rate of the held-out split."""
    lines = ["| candidate | task | stage | n held-out | max_new_tokens | accuracy ± SE | chance (uniform / majority) | "
             "10-70% | n ok | above chance | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc, se, chance = r["accuracy"], r["standard_error"], r["chance"]
        if acc is None:
            lines.append(f"| {r['candidate']} | {r['task']} | {r['stage']} | - | {r['max_new_tokens']} | "
                         f"not measured: {r['error']} | {'-' if chance is None else f'{chance:.2f}'} | fail | - | - | "
                         f"{r['seconds']:.0f} |")
            continue
        in_band = 0.10 <= acc <= 0.70
        major, whole = majority(r["task"], r["n_eval"])
        n_ok = r["n_eval"] >= 300 or (whole is not None and r["n_eval"] >= whole)  # BBH: its whole 40% split
        shown = "-" if chance is None else f"{chance:.2f} / {major:.2f}"
        if chance is not None:
            chance = max(chance, major)
        above = "n/a (open answer)" if chance is None else (
            f"{'yes' if acc - 2 * se > chance else 'no'} (z = {(acc - chance) / max(se, 1e-9):+.1f})")
        lines.append(f"| {r['candidate']} | {r['task']} | {r['stage']} | {r['n_eval']} | {r['max_new_tokens']} | "
                     f"{acc:.3f} ± {se:.3f} | {shown} | "
                     f"{'pass' if in_band else 'fail'} | {'pass' if n_ok else 'fail'} | "
                     f"{above} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("screen", "confirm"), default="screen")
    parser.add_argument("--only", default=",".join(CANDIDATES), help="comma-separated candidate names")
    parser.add_argument("--n-eval", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float32", help="model dtype (float32 everywhere, so a GPU run matches the CPU)")
    parser.add_argument("--results", default="runs/select/results.jsonl")
    parser.add_argument("--out-root", default="runs/select")
    parser.add_argument("--table", action="store_true", help="print the table of --results and exit")
    parser.add_argument("--estimate", action="store_true", help="print the token-passes estimate of --only and exit")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if args.table:
        print(table([json.loads(line) for line in results.read_text().splitlines() if line.strip()]))
        return 0
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if "TRICE_DATA_DIR" not in os.environ and default_data.is_dir():
        os.environ["TRICE_DATA_DIR"] = str(default_data)
    torch.set_num_threads(args.threads)
    if args.estimate:
        print(estimate([n.strip() for n in args.only.split(",") if n.strip()]))
        return 0
    results.parent.mkdir(parents=True, exist_ok=True)
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        row = measure(name, args.stage, args.threads, args.dtype, args.n_eval, args.max_new_tokens,
                      args.out_root)
        print(json.dumps(row), flush=True)
        with results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
