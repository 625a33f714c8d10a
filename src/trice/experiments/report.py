"""``trice report RUN_DIR``: one run's numbers and curves in ``RUN_DIR/report.md``."""

from __future__ import annotations

from pathlib import Path

from ..artifacts.run_dir import RunDir
from .plots import comparison_plots, evaluations


def write_report(run_dir: str | Path) -> Path:
    """``RUN_DIR/report.md``: the run's numbers and its curves in one page."""
    run = RunDir(run_dir)
    config, summary = run.config(), run.summary()
    label = f"{config.method}-seed{config.seed}"
    files = comparison_plots({label: run}, run.path / "plots")
    lines = [f"# trice run: {config.method} on {config.task}", "",
             f"Model `{config.model}`, params `{config.params}`, M = {config.batch_size}, "
             f"L = {config.subsample}, lr = {config.resolved_lr()}, seed {config.seed}.", "",
             "| quantity | value |", "|---|---|"]
    for key, value in summary.items():
        lines.append(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    evals = evaluations(run)
    if evals:
        lines += ["", "## Held-out greedy accuracy", "", "| step | tokens sampled | accuracy |", "|---|---|---|"]
        lines += [f"| {e['step']} | {e.get('tokens_sampled', '')} | {e['greedy_accuracy']:.3f} |" for e in evals]
    lines += ["", "## Curves", ""] + [f"![{f.stem}](plots/{f.name})" for f in files]
    path = run.path / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

