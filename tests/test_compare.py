"""`trice compare` and `trice report` on a tiny local model (issue 5)."""

import csv
import json
import sys
from pathlib import Path

import pytest

from trice.cli import main
from trice.evaluation.statistics import mean_ci

HERE = Path(__file__).parent


def test_mean_ci():
    mean, half = mean_ci([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4) and half == pytest.approx(4.303 * 0.2 / 3 ** 0.5)
    assert mean_ci([0.5])[0] == 0.5


def test_compare_writes_table_plots_and_respects_the_token_budget(tmp_path, local_model, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n" for i in range(16)))
    exemplars = tmp_path / "ex.jsonl"
    exemplars.write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.", "answer": "2"}) + "\n")
    out = tmp_path / "cmp"
    code = main(["compare", "--methods", "trice,rs,fewshot-cot", "--seeds", "0,1", "--model", str(local_model),
                 "--task", f"jsonl:{data}", "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin",
                 "--exemplars", str(exemplars), "--steps", "50",
                 "--token-budget", "400", "--batch-size", "3", "--subsample", "3", "--k", "2",
                 "--max-new-tokens", "5", "--n-eval", "3", "--sc-samples", "2", "--threads", "1",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["method"], r["seed"]) for r in rows] == [("trice", "0"), ("trice", "1"), ("rs", "0"), ("rs", "1"),
                                                         ("fewshot-cot", "0"), ("fewshot-cot", "1")]
    for r in rows:
        for key in ("greedy_accuracy", "sc_accuracy", "tokens_sampled", "wall_seconds"):
            assert r[key] != ""
        # the budget stops sampling methods within one step of it (one step samples <= M k tokens x 5)
        if r["method"] != "fewshot-cot":
            assert 400 - 3 * 2 * 5 <= int(r["tokens_sampled"]) <= 400 + 3 * 2 * 5
            assert int(r["steps_done"]) < 50
    assert rows[0]["memory_coverage"] != "" and rows[2]["memory_coverage"] == ""
    for r in rows:
        assert float(r["change"]) == pytest.approx(float(r["greedy_accuracy"]) - float(r["greedy_accuracy_before"]))
    assert all(r["change"] == "0.0" for r in rows if r["method"] == "fewshot-cot")
    table = (out / "results.md").read_text()
    assert "| trice | 2 |" in table and "±" in table
    for name in ("accuracy_vs_tokens", "proposal_accuracy", "memory_coverage", "mean_beta", "grad_variance"):
        assert (out / f"{name}.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["report", str(out / "trice-seed0")]) == 0
    report = (out / "trice-seed0" / "report.md").read_text()
    assert "greedy_accuracy_after" in report and "plots/memory_coverage.png" in report


def test_compare_reuses_finished_runs_and_refuses_a_different_config(tmp_path, local_model, capsys):
    """A second compare into the same directory reads finished runs back (no retraining: the
    metrics files are untouched) and refuses to mix in runs made with another config."""
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n" for i in range(12)))
    exemplars = tmp_path / "ex.jsonl"
    exemplars.write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.", "answer": "2"}) + "\n")
    out = tmp_path / "cmp"
    flags = ["--model", str(local_model), "--task", f"jsonl:{data}",
             "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin", "--exemplars", str(exemplars),
             "--steps", "2", "--batch-size", "3", "--subsample", "3", "--max-new-tokens", "4", "--n-eval", "3",
             "--sc-samples", "0", "--threads", "1", "--out", str(out)]
    assert main(["compare", "--methods", "trice,fewshot-cot", "--seeds", "0", *flags]) == 0
    metrics = (out / "trice-seed0" / "metrics.jsonl").read_bytes()
    few = [r for r in map(json.loads, (out / "fewshot-cot-seed0" / "metrics.jsonl").read_text().splitlines())
           if r.get("event") == "eval"]
    assert len(few) == 1  # nothing trained: the accuracy before is the accuracy after, evaluated once
    first = list(csv.DictReader(open(out / "results.csv")))
    assert main(["compare", "--methods", "trice,fewshot-cot", "--seeds", "0", *flags]) == 0
    assert (out / "trice-seed0" / "metrics.jsonl").read_bytes() == metrics
    assert list(csv.DictReader(open(out / "results.csv"))) == first
    capsys.readouterr()
    assert main(["compare", "--methods", "trice", "--seeds", "0", *flags, "--steps", "3"]) == 2
    assert "different config" in capsys.readouterr().err


def test_paired_differences_pair_seeds_and_pool_questions():
    """trice against rs: per-seed accuracy differences +0.25 and +0.5 (mean +0.375, CI from t with 1 df);
    discordant questions pooled over both seeds: trice alone right on 3, rs alone right on 0."""
    from trice.experiments.compare import paired_differences
    from trice.evaluation.statistics import mean_ci

    rows = [{"method": "trice", "seed": 0, "greedy_accuracy": 0.75}, {"method": "rs", "seed": 0, "greedy_accuracy": 0.5},
            {"method": "trice", "seed": 1, "greedy_accuracy": 0.75}, {"method": "rs", "seed": 1, "greedy_accuracy": 0.25}]
    verdicts = {("trice", 0): [True, True, True, False], ("rs", 0): [True, True, False, False],
                ("trice", 1): [True, True, False, True], ("rs", 1): [True, False, False, False]}
    (pair,) = paired_differences("trice", rows, verdicts)
    assert pair["method"] == "rs" and pair["seeds"] == 2
    assert pair["difference"] == pytest.approx(0.375) and pair["ci"] == pytest.approx(mean_ci([0.25, 0.5])[1])
    assert (pair["reference_only"], pair["other_only"]) == (3, 0) and pair["z"] == pytest.approx(3 ** 0.5)


def test_compare_under_a_compute_budget_with_curves_and_paired_table(tmp_path, local_model, capsys):
    """Every method, pt-direct too (it samples nothing), stops at the token-pass budget; results.md pairs
    trice with each method on the same questions; the learning curves are drawn against compute."""
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i} + 3 =", "answer": str(i + 3)}) + "\n" for i in range(16)))
    exemplars = tmp_path / "ex.jsonl"
    exemplars.write_text(json.dumps({"question": "1 + 1 =", "rationale": "So the answer is 2.", "answer": "2"}) + "\n")
    out = tmp_path / "study" / "toy"
    code = main(["compare", "--methods", "trice,pt-direct", "--seeds", "0,1", "--model", str(local_model),
                 "--task", f"jsonl:{data}", "--task-option", f"checker={HERE / 'lenient_checker.py'}:coin",
                 "--exemplars", str(exemplars), "--steps", "50", "--compute-budget", "1500", "--eval-points", "3",
                 "--eval-subset", "2", "--batch-size", "3", "--subsample", "3", "--max-new-tokens", "5",
                 "--n-eval", "3", "--sc-samples", "0", "--threads", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "results.csv")))
    for r in rows:
        assert 1000 < int(r["token_passes"]) <= 2000 and int(r["steps_done"]) < 50  # about the 1500 budget
        assert int(r["token_passes"]) == int(r["tokens_sampled"]) + 3 * int(r["tokens_scored"])
    table = (out / "results.md").read_text()
    assert "## trice against each method" in table and "| pt-direct | 2 |" in table
    for name in ("accuracy_vs_compute", "proposal_accuracy_vs_compute", "memory_coverage_vs_compute"):
        assert (out / f"{name}.png").stat().st_size > 1000
    # the study's report over task directories (benchmarks/study_report.py)
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import study_report

    assert study_report.main([str(tmp_path / "study"), "--out", str(tmp_path / "doc")]) == 0
    report = (tmp_path / "doc" / "results.md").read_text()
    assert "## toy" in report and "## trice against each method" in report
    assert "| trice | 2 |" in report.split("Train against held-out")[1]  # both seeds in the memorisation table
    assert (tmp_path / "doc" / "accuracy_vs_compute.png").stat().st_size > 1000
    for name in ("proposal_accuracy", "memory_coverage"):
        assert (tmp_path / "doc" / f"{name}_vs_compute.png").stat().st_size > 1000
    assert "Best at equal compute: **" in report
    # --methods leaves out every other method's runs (a method still running in a task directory)
    assert study_report.main([str(tmp_path / "study"), "--out", str(tmp_path / "doc2"), "--methods", "trice"]) == 0
    memorisation = (tmp_path / "doc2" / "results.md").read_text().split("Train against held-out")[1]
    assert "| trice | 2 |" in memorisation and "| pt-direct |" not in memorisation.split("Compute per step")[1]


def test_method_with_a_tool_and_the_reference_of_the_paired_table(tmp_path):
    """``METHOD+TOOL`` runs the method with that tool in its own directory; --reference picks the method
    the paired table compares with; an unknown method or tool is one clear error."""
    from trice import TrainConfig
    from trice.experiments.compare import compare, method_config
    from trice.errors import TriceError

    seen = []

    def fake_train(config, **kw):
        seen.append((config.method, config.tools, Path(config.out).name))
        right = [config.tools == "calculator"] * 4  # the tool run gets every question right
        return {"greedy_accuracy_before": 0.0, "greedy_accuracy_after": sum(right) / 4, "n_eval": 4,
                "tokens_sampled": 1, "verdicts_after": right, "questions_gained": sum(right), "questions_lost": 0}

    def train(config, **kw):  # compare reads the verdicts back from summary.json
        summary = fake_train(config)
        Path(config.out).mkdir(parents=True, exist_ok=True)
        (Path(config.out) / "summary.json").write_text(json.dumps(summary))
        (Path(config.out) / "metrics.jsonl").write_text("")
        return summary

    import trice.experiments.plots
    real_plots = trice.experiments.plots.comparison_plots
    trice.experiments.plots.comparison_plots = lambda runs, out: None
    try:
        rows = compare(TrainConfig(task="gym/chain_sum"), ["trice", "trice+calculator"], [0], tmp_path,
                       train_fn=train, reference="trice+calculator")
    finally:
        trice.experiments.plots.comparison_plots = real_plots
    assert seen == [("trice", "none", "trice-seed0"), ("trice", "calculator", "trice+calculator-seed0")]
    assert [r["method"] for r in rows] == ["trice", "trice+calculator"]
    table = (tmp_path / "results.md").read_text()
    assert "## trice+calculator against each method" in table
    assert "| trice | 1 | +1.000 | 4 / 0 | +2.00 |" in table
    with pytest.raises(TriceError, match="unknown method 'trice\\+abacus'"):
        method_config(TrainConfig(), "trice+abacus")
    with pytest.raises(TriceError, match="unknown method 'tricey'"):
        method_config(TrainConfig(), "tricey")


def test_learning_curve_bands_stay_inside_zero_and_one():
    """Three seeds near 1 (and near 0) give a Student-t band past the ends; the drawn band is clipped to
    [0, 1] while the mean line is unchanged."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from trice.experiments.plots import _bands

    runs = {f"m-seed{s}": [(0, y0), (100, y1)] for s, (y0, y1) in enumerate([(0.0, 1.0), (0.1, 0.7), (0.0, 1.0)])}
    fig, ax = plt.subplots()
    _bands(ax, runs, lambda xy: xy)
    band = np.concatenate([p.vertices for p in ax.collections[0].get_paths()])
    assert band[:, 1].min() == 0.0 and band[:, 1].max() == 1.0  # unclipped: about -0.11 and 1.27
    line = ax.lines[0].get_ydata()
    assert abs(line[0] - 0.1 / 3) < 1e-12 and abs(line[-1] - 0.9) < 1e-12
    plt.close(fig)


def test_a_method_keeps_its_colour_in_every_panel():
    """Panels list different methods (grpo@k=8 on one task only); each method's line has one colour throughout."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trice.experiments.plots import _bands, _colours

    line = [(0, 0.1), (100, 0.2)]
    tasks = {"a": {"grpo-seed0": line, "grpo@k=8-seed0": line, "trice-seed0": line},
             "b": {"trice-seed0": line, "grpo-seed0": line}}
    colours = _colours(tasks)
    seen = {}
    for runs in tasks.values():
        fig, ax = plt.subplots()
        _bands(ax, runs, lambda xy: xy, colours=colours)
        for drawn in ax.lines:
            seen.setdefault(drawn.get_label().split(" (")[0], set()).add(tuple(drawn.get_color()))
        plt.close(fig)
    assert {m: len(c) for m, c in seen.items()} == {"grpo": 1, "grpo@k=8": 1, "trice": 1}
    assert len({next(iter(c)) for c in seen.values()}) == 3  # and three different colours


def test_best_at_equal_compute_ranks_methods_by_mean_final_accuracy(tmp_path):
    """The study report names the method with the highest mean final accuracy over seeds and TRICE's rank."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import study_report

    path = tmp_path / "results.csv"
    rows = [("trice", 0, 0.30), ("trice", 1, 0.40), ("rs", 0, 0.50), ("rs", 1, 0.30), ("star", 0, 0.1), ("star", 1, 0.2)]
    path.write_text("method,seed,greedy_accuracy\n" + "".join(f"{m},{s},{a}\n" for m, s, a in rows))
    (line,) = study_report.best_at_equal_compute(path)
    assert line.startswith("Best at equal compute: **rs 0.400 ± ")  # mean of 0.5 and 0.3 beats trice's 0.35
    assert "trice 0.350" in line and "ranks 2 of 3" in line and line.endswith("Order: rs > trice > star.")


def test_cost_per_step_says_why_each_run_is_outside_the_spend_band(tmp_path):
    """A run under the band is short because its next step would not fit; one over it overshot its prediction,
    or its only step (which nothing predicted) passed the budget."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import types
    import study_report

    def run(steps, passes):
        return types.SimpleNamespace(summary_path=tmp_path, summary=lambda: {"steps_done": steps, "token_passes": passes},
                                     config=lambda: types.SimpleNamespace(compute_budget=1000), metrics=lambda: [])

    lines = study_report.cost_per_step({"a-seed0": run(4, 800), "a-seed1": run(10, 1000), "b-seed0": run(10, 1080),
                                        "c-seed0": run(1, 1300)})
    assert "| a | 2 | 7.0 | 900 |" in lines[2] and "0.80 - 1.00" in lines[2]
    note = lines[-1]
    assert "a-seed0 (0.80, 4 steps of ~200; under: the next step's predicted cost would not fit)" in note
    assert "b-seed0 (1.08, 10 steps of ~108; over: its last step cost more than" in note and "a-seed1" not in note
    assert "c-seed0 (1.30, 1 step of ~1,300; over: its one step, set-up included, cost more than the budget" in note


def test_budget_rule_effect_prints_one_row_per_rule_from_the_method_s_finished_runs(tmp_path, capsys):
    """benchmarks/budget_rule_effect.py: mean ± 95% interval over the method's seeds, seed 0 alone, mean steps and
    the spend range, before and after; other methods and runs without a final accuracy are left out."""
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import budget_rule_effect

    head = "method,seed,greedy_accuracy_before,greedy_accuracy,token_passes,steps_done\n"
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text(head + "star,0,0.2,0.30,1100,10\nstar,1,0.2,0.40,1050,12\nrs,0,0.2,0.90,1000,10\nstar,2,0.2,,0,0\n")
    new.write_text(head + "star,0,0.2,0.25,950,9\nstar,1,0.3,0.35,990,9\nstar,2,0.25,0.45,1000,9\n")
    arg = f"basic_arithmetic:{old}:{new}:1000"
    assert budget_rule_effect.main([arg, "--method", "star"]) == 0
    before, after = capsys.readouterr().out.strip().splitlines()[2:]
    # before: seeds 0 and 1 only (seed 2 has no accuracy; rs is another method); t(1) = 12.706, sd = 0.0707
    assert before.startswith("| basic_arithmetic | before (first step past the budget) | 2 | 0.200 | 0.350 ± 0.635 | 0.300 | 11.0 |")
    assert before.endswith("| 1.05 - 1.10 |")
    # after: three seeds, t(2) = 4.303, sd = 0.1 -> half-width 0.248
    assert after == "| basic_arithmetic | after (predicted cost) | 3 | 0.250 | 0.350 ± 0.248 | 0.250 | 9.0 | 0.95 - 1.00 |"
