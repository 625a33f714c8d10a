"""How much issue 27's changes moved one method's row of a study table: the same method, config and seeds,
run before them (a run stopped at the first step that reached the budget; held-out questions drawn from the
training seed) and after them (a run does not start a step whose predicted cost would pass the budget;
held-out questions from the task's data seed only). Prints a markdown table, a row per (task, rule).

    python benchmarks/budget_rule_effect.py --method trice \\
        basic_arithmetic:docs/study/basic_arithmetic-results.csv:runs/study3/basic_arithmetic/results.csv:60000

Each argument is TASK:OLD_CSV:NEW_CSV:BUDGET, the CSVs as ``trice compare`` writes them (results.csv).
Seed 0's held-out questions are the same under both rules (data seed 0 = training seed 0); seeds 1 and 2 were
asked different questions before, so the old and new means are not paired.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from trice.evaluation.statistics import mean_ci  # noqa: E402


def rows_of(path: str, method: str) -> list[dict]:
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r["method"] == method and r["greedy_accuracy"] not in ("", None)]


def line(task: str, rule: str, rows: list[dict], budget: float) -> str:
    acc, half = mean_ci([float(r["greedy_accuracy"]) for r in rows])
    before = statistics.fmean(float(r["greedy_accuracy_before"]) for r in rows)
    steps = statistics.fmean(int(r["steps_done"]) for r in rows)
    spends = [int(r["token_passes"]) / budget for r in rows]
    seed0 = next((float(r["greedy_accuracy"]) for r in rows if r["seed"] == "0"), float("nan"))
    return (f"| {task} | {rule} | {len(rows)} | {before:.3f} | {acc:.3f} ± {half:.3f} | {seed0:.3f} | {steps:.1f} | "
            f"{min(spends):.2f} - {max(spends):.2f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="+", help="TASK:OLD_CSV:NEW_CSV:BUDGET")
    parser.add_argument("--method", default="trice")
    args = parser.parse_args(argv)
    print(f"| task | rule | seeds | untuned (mean over seeds) | `{args.method}` accuracy | seed 0 | steps | "
          "spend / budget (min - max) |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.tasks:
        task, old, new, budget = spec.split(":")
        for rule, path in (("before (first step past the budget)", old), ("after (predicted cost)", new)):
            rows = rows_of(path, args.method)
            if rows:
                print(line(task, rule, rows, float(budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
