"""The head-to-head's report (benchmarks/trl_head_to_head.py): held-out greedy accuracy of every saved policy
against the seconds its run had taken, per method and seed; a CSV, a markdown table and the curve."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def points(run: Path) -> list[dict]:
    """(step, seconds, accuracy, n) of each evaluated snapshot of one run, with its seconds per step."""
    rows = []
    for record in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        if record.get("event") != "policy_saved":
            continue
        result = run / record["path"] / "eval.json"
        if result.exists():
            got = json.loads(result.read_text())
            rows.append({"step": record["step"], "seconds": record["seconds_elapsed"],
                         "accuracy": got["greedy_accuracy"], "n_eval": got["n_eval"], "verdicts": got.get("verdicts")})
    summary = run / "summary.json"  # a trice run's final policy, evaluated by the run itself (same questions)
    if summary.exists():
        done = json.loads(summary.read_text())
        steps = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "seconds_elapsed" in r
                 and r.get("step") == done["steps_done"] and "event" not in r]
        if steps and (not rows or rows[-1]["step"] < done["steps_done"]):
            rows.append({"step": done["steps_done"], "seconds": steps[-1]["seconds_elapsed"],
                         "accuracy": done["greedy_accuracy_after"], "n_eval": done["n_eval"],
                         "verdicts": done.get("verdicts_after")})
    return rows


def per_step(rows: list[dict]) -> float:
    """Seconds per step between a run's first and last evaluated snapshots."""
    if len(rows) < 2 or rows[-1]["step"] == rows[0]["step"]:
        return float("nan")
    return (rows[-1]["seconds"] - rows[0]["seconds"]) / (rows[-1]["step"] - rows[0]["step"])


def summary_tables(runs: dict[str, list[dict]]) -> list[str]:
    """Per method over seeds: the last snapshot's accuracy (mean, 95% t interval) and seconds per step; then each
    pair of methods, seed paired with seed on the same questions: the difference of the last snapshots and
    McNemar's z pooled over seeds (only where both last snapshots kept their verdicts)."""
    from trice.evaluation.statistics import discordant, mcnemar_z, mean_ci

    by_method: dict[str, dict[int, list[dict]]] = {}
    for name, rows in runs.items():
        if rows:
            method, seed = name.rsplit("-seed", 1)
            by_method.setdefault(method, {})[int(seed)] = rows
    lines = ["| method | seeds | last accuracy, mean ± 95% CI | per seed | seconds per step | steps |",
             "|---|---|---|---|---|---|"]
    for method, seeds in sorted(by_method.items()):
        last = [rows[-1]["accuracy"] for rows in seeds.values()]
        mean, half = mean_ci(last)
        speed, _ = mean_ci([per_step(rows) for rows in seeds.values()])
        steps, _ = mean_ci([rows[-1]["step"] for rows in seeds.values()])
        lines.append(f"| {method} | {len(last)} | {mean:.3f} ± {half:.3f} | {', '.join(f'{a:.3f}' for a in last)} "
                     f"| {speed:.1f} | {steps:.0f} |")
    lines += ["", "| A − B | seeds | difference of the last snapshots, mean ± 95% CI | questions only A / only B right "
              "| McNemar z |", "|---|---|---|---|---|"]
    names = sorted(by_method)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(by_method[a]) & set(by_method[b]))
            diffs = [by_method[a][s][-1]["accuracy"] - by_method[b][s][-1]["accuracy"] for s in common]
            only_a = only_b = 0
            paired = [s for s in common if by_method[a][s][-1]["verdicts"] and by_method[b][s][-1]["verdicts"]]
            for s in paired:
                got_b, got_a = discordant(by_method[a][s][-1]["verdicts"], by_method[b][s][-1]["verdicts"])
                only_a, only_b = only_a + got_a, only_b + got_b
            mean, half = mean_ci(diffs)
            z = f"{mcnemar_z(only_a, only_b):+.2f}" if paired else "-"
            counts = f"{only_a} / {only_b}" + ("" if len(paired) == len(common) else f" ({len(paired)} seeds)")
            lines.append(f"| {a} − {b} | {len(common)} | {mean:+.3f} ± {half:.3f} | {counts} | {z} |")
    return lines


def report(out: Path, doc: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc.mkdir(parents=True, exist_ok=True)
    runs = {p.name: points(p) for p in sorted(out.glob("*-seed*")) if (p / "metrics.jsonl").exists()}
    with open(doc / "head-to-head.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "step", "seconds", "accuracy", "n_eval"], extrasaction="ignore")
        writer.writeheader()
        for name, rows in runs.items():
            writer.writerows({"run": name, **r} for r in rows)
    lines = ["| run | snapshots | seconds per step | accuracy at the snapshots (seconds: accuracy) | last (± SE) |",
             "|---|---|---|---|---|"]
    fig, (ax, by_step) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    untuned = [json.loads((p / "summary.json").read_text())["greedy_accuracy_before"] for p in out.glob("*-seed*")
               if (p / "summary.json").exists()]  # trice's runs evaluate the untuned model on the same questions
    if untuned:
        for panel in (ax, by_step):
            panel.axhline(untuned[0], color="grey", ls="--", lw=1, label="untuned")
        lines.insert(0, f"Untuned, the same 200 questions: {untuned[0]:.3f}.\n")
    colours = {"trl": "tab:red", "grpo": "tab:blue", "trice-auto": "tab:green"}
    for name, rows in runs.items():
        if not rows:
            continue
        method = name.rsplit("-seed", 1)[0]
        shown = ", ".join(f"{r['seconds']:.0f}: {r['accuracy']:.3f}" for r in rows)
        last = rows[-1]["accuracy"]
        se = math.sqrt(last * (1 - last) / rows[-1]["n_eval"])
        lines.append(f"| {name} | {len(rows)} | {per_step(rows):.1f} | {shown} | {last:.3f} ± {se:.3f} |")
        ax.plot([0] + [r["seconds"] for r in rows], [None] + [r["accuracy"] for r in rows], "o-",
                color=colours.get(method), alpha=0.8, label=method)
        by_step.plot([r["step"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colours.get(method),
                     alpha=0.8, label=method)  # does trice's grpo learn per step as TRL's does?
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys())
    ax.set_xlabel("seconds since the run started (model loading and set-up included)")
    ax.set_ylabel("held-out greedy accuracy (200 questions)")
    ax.set_title("chain_sum, SmolLM2-135M, LoRA r=8: TRL GRPOTrainer vs trice", fontsize=10)
    by_step.set_xlabel("optimizer steps")
    by_step.set_xscale("symlog", linthresh=10)
    by_step.set_title("the same snapshots against steps", fontsize=10)
    for panel in (ax, by_step):
        panel.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(doc / "head-to-head.png", dpi=110)
    lines += [""] + summary_tables(runs)
    (doc / "head-to-head.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
