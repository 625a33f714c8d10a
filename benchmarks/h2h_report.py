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
                         "accuracy": got["greedy_accuracy"], "n_eval": got["n_eval"]})
    summary = run / "summary.json"  # a trice run's final policy, evaluated by the run itself (same questions)
    if summary.exists():
        done = json.loads(summary.read_text())
        steps = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "seconds_elapsed" in r
                 and r.get("step") == done["steps_done"] and "event" not in r]
        if steps and (not rows or rows[-1]["step"] < done["steps_done"]):
            rows.append({"step": done["steps_done"], "seconds": steps[-1]["seconds_elapsed"],
                         "accuracy": done["greedy_accuracy_after"], "n_eval": done["n_eval"]})
    return rows


def report(out: Path, doc: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc.mkdir(parents=True, exist_ok=True)
    runs = {p.name: points(p) for p in sorted(out.glob("*-seed*")) if (p / "metrics.jsonl").exists()}
    with open(doc / "head-to-head.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "step", "seconds", "accuracy", "n_eval"])
        writer.writeheader()
        for name, rows in runs.items():
            writer.writerows({"run": name, **r} for r in rows)
    lines = ["| run | snapshots | seconds per step | accuracy at the snapshots (seconds: accuracy) | last (± SE) |",
             "|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    untuned = [json.loads((p / "summary.json").read_text())["greedy_accuracy_before"] for p in out.glob("*-seed*")
               if (p / "summary.json").exists()]  # trice's runs evaluate the untuned model on the same questions
    if untuned:
        ax.axhline(untuned[0], color="grey", ls="--", lw=1, label="untuned")
        lines.insert(0, f"Untuned, the same 200 questions: {untuned[0]:.3f}.\n")
    colours = {"trl": "tab:red", "grpo": "tab:blue", "trice-auto": "tab:green"}
    for name, rows in runs.items():
        if not rows:
            continue
        method = name.rsplit("-seed", 1)[0]
        per_step = (rows[-1]["seconds"] - rows[0]["seconds"]) / (rows[-1]["step"] - rows[0]["step"]) \
            if len(rows) > 1 else float("nan")
        shown = ", ".join(f"{r['seconds']:.0f}: {r['accuracy']:.3f}" for r in rows)
        last = rows[-1]["accuracy"]
        se = math.sqrt(last * (1 - last) / rows[-1]["n_eval"])
        lines.append(f"| {name} | {len(rows)} | {per_step:.1f} | {shown} | {last:.3f} ± {se:.3f} |")
        ax.plot([0] + [r["seconds"] for r in rows], [None] + [r["accuracy"] for r in rows], "o-",
                color=colours.get(method), alpha=0.8, label=method)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(dict(zip(labels, handles)).values(), dict(zip(labels, handles)).keys())
    ax.set_xlabel("seconds since the run started (model loading and set-up included)")
    ax.set_ylabel("held-out greedy accuracy (200 questions)")
    ax.set_title("chain_sum, SmolLM2-135M, LoRA r=8: TRL GRPOTrainer vs trice", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(doc / "head-to-head.png", dpi=110)
    (doc / "head-to-head.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
