"""The compute-fair study's report (issue 15): every task's ``trice compare`` directory under one root
becomes ``OUT/results.md`` with each task's table, train against held-out accuracy per method (the
memorisation check), whether TRICE's proposal accuracy plateaued, and one figure of learning curves
with a panel per task.

    python benchmarks/study_report.py runs/study --out docs/study

Each task directory is what ``trice compare --config configs/study-<task>.yaml ... --out runs/study/<task>``
wrote; runs still in progress are included with the evaluations they have logged so far.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import sys
from pathlib import Path


def train_vs_heldout(runs: dict) -> list[str]:
    """Per method: the mean training proposal accuracy of the last 10 steps (temperature 1) against the
    final held-out greedy accuracy, means over the finished seeds."""
    by_method: dict[str, list[tuple[float, float]]] = {}
    for label, run in runs.items():
        if not run.summary_path.exists():
            continue
        steps = [r["proposal_accuracy"] for r in run.metrics() if r.get("proposal_accuracy") is not None]
        held_out = run.summary().get("greedy_accuracy_after")
        if steps and held_out is not None:
            by_method.setdefault(label.rsplit("-seed", 1)[0], []).append((statistics.fmean(steps[-10:]), held_out))
    lines = ["| method | seeds | training proposal accuracy (last 10 steps) | held-out greedy accuracy |", "|---|---|---|---|"]
    for method, pairs in by_method.items():
        lines.append(f"| {method} | {len(pairs)} | {statistics.fmean(p[0] for p in pairs):.3f} | "
                     f"{statistics.fmean(p[1] for p in pairs):.3f} |")
    return lines


def plateau(runs: dict, window: int = 20, reference: str = "trice") -> list[str]:
    """TRICE's proposal accuracy over the last two windows of ``window`` steps, per seed: a plateau is a
    change smaller than the windows' combined standard error."""
    lines = []
    for label, run in runs.items():
        if not label.startswith(f"{reference}-seed"):
            continue
        acc = [r["proposal_accuracy"] for r in run.metrics() if r.get("proposal_accuracy") is not None]
        if len(acc) < 2 * window:
            lines.append(f"- {label}: {len(acc)} steps, too few to judge a plateau")
            continue
        a, b = acc[-2 * window:-window], acc[-window:]
        se = (statistics.pvariance(a) / window + statistics.pvariance(b) / window) ** 0.5
        change = statistics.fmean(b) - statistics.fmean(a)
        lines.append(f"- {label}: last {window} steps {statistics.fmean(b):.3f}, the {window} before "
                     f"{statistics.fmean(a):.3f} (change {change:+.3f}, SE {se:.3f}): "
                     f"{'plateaued' if abs(change) < 2 * se else 'still changing'}")
    return lines


def best_at_equal_compute(csv_path: Path, reference: str = "trice") -> list[str]:
    """The method with the highest mean final held-out greedy accuracy over its seeds (compare's
    results.csv), with its 95% CI, and where the reference stands; the paired table above says whether
    the gap is significant."""
    from trice.evaluation.statistics import mean_ci

    by_method: dict[str, list[float]] = {}
    with open(csv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_method.setdefault(row["method"], []).append(float(row["greedy_accuracy"]))
    if not by_method:
        return []
    ranked = sorted(by_method, key=lambda m: -statistics.fmean(by_method[m]))

    def cell(method):
        values = by_method[method]
        mean, half = mean_ci(values)
        ci = "" if half != half else f" ± {half:.3f}"  # NaN with one seed
        return f"{method} {mean:.3f}{ci} ({len(values)} seed{'s' if len(values) > 1 else ''})"

    line = f"Best at equal compute: **{cell(ranked[0])}**"
    if reference in by_method and ranked[0] != reference:
        line += f"; {cell(reference)} ranks {ranked.index(reference) + 1} of {len(ranked)}"
    return [line + ". Order: " + " > ".join(ranked) + "."]


SPEND_BAND = (0.9, 1.05)  # a run's spend as a fraction of its budget, outside which the report names it


def cost_per_step(runs: dict) -> list[str]:
    """Per method (finished seeds, means): optimizer steps done, token-passes spent, token-passes per step,
    the spend as a fraction of the budget (lowest and highest seed), and, where some method logs the answer
    likelihood log p(y | x, z) of its samples (``answer_loglik``), its mean over the first and the last 3
    steps: how many updates a budget buys, whether every method spent it, and whether the likelihood moved."""
    by_method: dict[str, list[tuple]] = {}
    outside = []
    for label, run in runs.items():
        if not run.summary_path.exists():
            continue
        summary, budget = run.summary(), run.config().compute_budget
        steps, passes = summary.get("steps_done") or 0, summary.get("token_passes") or 0
        loglik = [r["answer_loglik"] for r in run.metrics() if r.get("answer_loglik") is not None]
        first, last = (statistics.fmean(loglik[:3]), statistics.fmean(loglik[-3:])) if loglik else (None, None)
        spend = passes / budget if budget else None
        if spend is not None and steps and not SPEND_BAND[0] <= spend <= SPEND_BAND[1]:
            why = ("under: the next step's predicted cost would not fit" if spend < SPEND_BAND[0]
                   else "over: its one step, set-up included, cost more than the budget; a first step has no "
                        "cost before it to predict from, so it always starts" if steps == 1
                   else "over: its last step cost more than the mean of the steps before it predicted")
            outside.append(f"{label} ({spend:.2f}, {steps} {'step' if steps == 1 else 'steps'} of ~{passes / steps:,.0f}; {why})")
        by_method.setdefault(label.rsplit("-seed", 1)[0], []).append((steps, passes, first, last, spend))
    with_loglik = any(r[2] is not None for rows in by_method.values() for r in rows)
    lines = ["| method | seeds | steps | token-passes | token-passes per step | spend / budget (seeds' min - max) |"
             + (" answer log-lik, first 3 → last 3 steps |" if with_loglik else ""),
             "|---|---|---|---|---|---|" + ("---|" if with_loglik else "")]
    for method, rows in by_method.items():
        steps, passes = statistics.fmean(r[0] for r in rows), statistics.fmean(r[1] for r in rows)
        spends = [r[4] for r in rows if r[4] is not None]
        spent = f"{min(spends):.2f} - {max(spends):.2f}" if spends else "-"
        line = (f"| {method} | {len(rows)} | {steps:.1f} | {passes:,.0f} | "
                f"{f'{passes / steps:,.0f}' if steps else '-'} | {spent if steps else '- (no training)'} |")
        if with_loglik:
            logliks = [r for r in rows if r[2] is not None]
            line += (f" {statistics.fmean(r[2] for r in logliks):.2f} → {statistics.fmean(r[3] for r in logliks):.2f} |"
                     if logliks else " - |")
        lines.append(line)
    notes = ["", "Token-passes per step include each run's set-up (TRICE's memory, STaR's outer sampling). A run does "
             "not start a step whose predicted cost (the mean of its latest 5 steps) would pass the budget, so it "
             f"ends within about one step of it; runs outside {SPEND_BAND[0]:.2f} - {SPEND_BAND[1]:.2f} of the budget: "
             + ("; ".join(outside) if outside else "none") + "."]
    return lines + notes


def tool_usage(runs: dict) -> list[str]:
    """For runs with a tool (trice.tools): how often the held-out greedy rationales call it and how often
    those calls evaluate, before and after training, means over seeds; [] when no run has a tool."""
    by_method: dict[str, list[tuple[dict, dict]]] = {}
    for label, run in runs.items():
        evals = [r for r in run.metrics() if r.get("event") == "eval" and "tool_use" in r]
        full = [r for r in evals if r.get("curve_point") is None]  # the full held-out set: first and last
        if run.summary_path.exists() and len(full) >= 2:
            by_method.setdefault(label.rsplit("-seed", 1)[0], []).append((full[0], full[-1]))
    if not by_method:
        return []
    keys = ("tool_use", "tool_calls", "tool_calls_valid", "accuracy_with_tool", "accuracy_without_tool")

    def mean(records, key):
        values = [r.get(key) for r in records if r.get(key) is not None]
        return f"{statistics.fmean(values):.3f}" if values else "-"

    lines = ["| method | seeds | " + " | ".join(f"{k} before / after" for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for method, pairs in by_method.items():
        cells = [f"{mean([p[0] for p in pairs], k)} / {mean([p[1] for p in pairs], k)}" for k in keys]
        lines.append(f"| {method} | {len(pairs)} | " + " | ".join(cells) + " |")
    return lines + ["", "Held-out greedy rationales: tool_use = fraction with a call, tool_calls = calls per "
                    "rationale, tool_calls_valid = fraction of calls the calculator could evaluate (not `?`), "
                    "accuracy_with/without_tool = accuracy of the rationales with / without a call."]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="directory holding one compare directory per task")
    parser.add_argument("--out", default="docs/study")
    parser.add_argument("--title", default="Compute-fair study: results")
    parser.add_argument("--reference", default="trice", help="the method whose proposal accuracy is checked for a plateau")
    parser.add_argument("--finished-only", action="store_true",
                        help="leave out runs without summary.json (a study in progress: their partial curves "
                             "would cut every band of their method short)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods to report (default: every run found): leaves out the runs of "
                             "methods still running in a task directory, whose tables would mix seeds")
    args = parser.parse_args(argv)
    methods = set(args.methods.split(",")) if args.methods else None
    from trice.experiments.plots import learning_curves, training_curves
    from trice.artifacts.run_dir import RunDir

    root, out = Path(args.root), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {}
    command = f"python benchmarks/study_report.py {root} --out {out}" + (
        f" --title '{args.title}' --reference {args.reference}" if args.reference != "trice" else "") + (
        f" --methods {args.methods}" if args.methods else "")
    lines = [f"# {args.title}", "", f"Made by `{command}` from the `trice compare` directories below.", ""]
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = {d.name: RunDir(d) for d in sorted(task_dir.iterdir())
                if d.is_dir() and "-seed" in d.name and (d / "metrics.jsonl").exists()
                and (not args.finished_only or (d / "summary.json").exists())
                and (methods is None or d.name.rsplit("-seed", 1)[0] in methods)}
        if not runs:
            continue
        tasks[task_dir.name] = runs
        lines += [f"## {task_dir.name}", ""]
        if (task_dir / "results.md").exists():
            lines += (task_dir / "results.md").read_text(encoding="utf-8").splitlines() + [""]
            shutil.copy(task_dir / "results.csv", out / f"{task_dir.name}-results.csv")
            lines += best_at_equal_compute(task_dir / "results.csv", args.reference) + [""]
        lines += ["Train against held-out accuracy (memorisation check):", ""] + train_vs_heldout(runs) + [""]
        lines += ["TRICE's proposal accuracy, plateau check:", ""] + (
            plateau(runs, reference=args.reference) or ["- no TRICE run yet"]) + [""]
        lines += ["Compute per step:", ""] + cost_per_step(runs) + [""]
        usage = tool_usage(runs)
        if usage:
            lines += ["Tool use on the held-out questions, before and after training:", ""] + usage + [""]
    if not tasks:
        print(f"no compare directories with runs under {root}", file=sys.stderr)
        return 1
    figure = learning_curves(tasks, out / "accuracy_vs_compute.png")
    lines += [f"![learning curves]({figure.name})", ""]
    for key in ("proposal_accuracy", "memory_coverage"):  # training quantities, also against compute
        lines += [f"![{key} against compute]({training_curves(tasks, key, out / f'{key}_vs_compute.png').name})", ""]
    (out / "results.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out / 'results.md'} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
