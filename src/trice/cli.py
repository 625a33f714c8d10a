"""The command line: ``trice train | eval | demo | compare | report``.

Every TrainConfig field is a flag (``--batch-size`` for ``batch_size``); a YAML ``--config`` gives the
base values and flags override it. Errors the user can fix print one line, ``error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import yaml

from .config import TrainConfig
from .errors import TriceError

# The offline demo: the packaged SmolLM2-135M-Instruct, LoRA (a 135M model's soft prompt moves
# accuracy too little to see in 20 minutes: see README), reasoning-gym chain_sum with 2-3 one-digit
# terms, where the untuned model's temperature-1 accuracy starts near 20% and greedy near 30%.
DEMO = dict(
    model="smollm2-135m", params="lora", task="gym/chain_sum", method="trice",  # the paper's estimator
    task_options=dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1, n_train=200, n_test=400),
    steps=80, batch_size=16, subsample=16, max_new_tokens=64, n_eval=400, eval_every=0,
    seed=0, prompt_format="plain",  # the format the demo's figures were measured with (README)
)


def _parse_value(text: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "task_options":
            parser.add_argument("--task-option", action="append", default=None, metavar="KEY=VALUE",
                                dest="task_options", help="task option (repeatable), e.g. min_terms=2")
            continue
        if f.name == "reward":
            parser.add_argument("--reward", action="append", default=None, metavar="MODULE:FUNCTION",
                                dest="reward", help=f.metadata.get("help") + " (repeatable)")
            continue
        parser.add_argument(flag, dest=f.name, default=None, type=_parse_value, help=f.metadata.get("help"))


def _config_from_args(args, base: dict | None = None) -> TrainConfig:
    overrides = {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.name == "task_options":
            options = {}
            for item in value:
                key, sep, raw = item.partition("=")
                if not sep or not key:
                    raise TriceError(f"--task-option expects KEY=VALUE, got {item!r}")
                options[key] = _parse_value(raw)
            value = {**(base or {}).get("task_options", {}), **options}
        overrides[f.name] = value
    if args.config:
        return TrainConfig.from_yaml(args.config, **{**(base or {}), **overrides})
    return TrainConfig.from_dict({**(base or {}), **overrides})


def _print_summary(summary: dict) -> None:
    from .distributed import world

    if not world().is_main:  # one process prints for the job
        return
    before, after, n = summary["greedy_accuracy_before"], summary["greedy_accuracy_after"], summary["n_eval"]
    if before is not None:
        from .evaluate import standard_error

        se = standard_error(before, n)
        in_se = f" = {(after - before) / se:+.1f} SE" if se else ""
        print(f"held-out greedy accuracy: before {before:.3f}, after {after:.3f} "
              f"(n = {n}, standard error {se:.3f}; change {after - before:+.3f}{in_se})")
        if "paired_z" in summary:
            print(f"paired on the same questions: {summary['questions_gained']} turned right, "
                  f"{summary['questions_lost']} turned wrong (McNemar z = {summary['paired_z']:+.1f})")
    coverage = summary.get("memory_coverage")
    print((f"memory coverage {coverage:.3f}, " if coverage is not None else "")
          + f"tokens sampled {summary['tokens_sampled']}")


def cmd_train(args, base: dict | None = None) -> int:
    from .trainer import train

    if getattr(args, "resume", None):
        given = [f.name for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None]
        if given or args.config:
            raise TriceError(f"--resume continues a run with its own config; drop {', '.join(given) or '--config'}")
        summary = train(resume=args.resume)
    else:
        summary = train(_config_from_args(args, base))
    _print_summary(summary)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import greedy_accuracy, self_consistency_accuracy, standard_error
    from .model import Policy, load_model
    from .run import RunDir
    from .tasks import task_from_config
    import torch

    run = RunDir(args.run_dir)
    config = run.config()
    if not run.policy_path.exists():
        raise TriceError(f"{run.path} has no saved policy (policy/): did the run finish?")
    task = task_from_config(config)
    n_eval = args.n_eval if args.n_eval is not None else config.n_eval
    test_set = task.test[:n_eval]
    from .distributed import default_device, init

    here = init(config.device)  # under a launcher each process evaluates its share of the questions
    model, tokenizer = load_model(config.model, config.dtype, config.device or default_device())
    policy = Policy.load(model, tokenizer, run.policy_path)
    from .methods import make_method

    from .initialise import load_exemplars
    from .lengths import drop_too_long
    from .prompts import resolve_format

    fmt = resolve_format(config.prompt_format, tokenizer)
    prompt = make_method(config.method, [], fmt=fmt).prompt  # the template the run trained with
    if run.exemplars_path.exists():  # the questions the run evaluated on: those that fit the context
        prefix = fmt.prefix(load_exemplars(run.exemplars_path))
        test_set = drop_too_long(tokenizer, model, test_set, config, "held-out", [(prefix, lambda e: prompt(e.question))])
    from .tools import make_tool, tool_stats

    tool = make_tool(config.tools)  # the run's tool, as in its own evaluations
    accuracy, verdicts, texts = greedy_accuracy(policy, task, test_set, config.max_new_tokens,
                                                config.sample_batch_size, prompt=prompt, stop=fmt.stop, hook=tool)
    result = {"n_eval": len(test_set), "greedy_accuracy": accuracy,
              "standard_error": standard_error(accuracy, len(test_set)),
              **(tool_stats(texts, verdicts) if tool is not None else {})}
    if args.sc_samples:
        result["sc_accuracy"] = self_consistency_accuracy(
            policy, task, test_set, args.sc_samples, config.max_new_tokens,
            torch.Generator().manual_seed(config.seed), config.sample_batch_size, prompt=prompt, stop=fmt.stop,
            hook=tool)
        result["sc_samples"] = args.sc_samples
    if here.is_main:
        (run.path / "eval.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(result))
    return 0


def cmd_export(args) -> int:
    from .export import export

    files = export(args.run_dir, args.out, dtype=args.dtype, device=args.device)
    print(f"exported {args.run_dir} to {args.out}: {', '.join(files)}")
    print(f"how to prompt it as the run did: {Path(args.out) / 'TRICE_USAGE.md'}")
    return 0


def cmd_compare(args) -> int:
    from .compare import compare, method_config

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        method_config(TrainConfig(), m)  # a clear error for an unknown method or tool
    try:
        seeds = [int(x) for x in str(args.seeds).split(",") if str(x).strip()]
    except ValueError:
        raise TriceError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    base = _config_from_args(args)
    out = args.out or "runs/compare"
    if args.reference is not None and args.reference not in methods:
        raise TriceError(f"--reference {args.reference} is not one of --methods")
    rows = compare(base.validate(), methods, seeds, out, reference=args.reference)
    print((Path(out) / "results.md").read_text(encoding="utf-8"))
    print(f"{len(rows)} runs; results.csv, results.md and plots in {out}")
    return 0


def cmd_report(args) -> int:
    from .plots import write_report

    from .run import RunDir

    RunDir(args.run_dir).config()  # a clear error if it is not a run directory
    if not (Path(args.run_dir) / "summary.json").exists():
        raise TriceError(f"{args.run_dir} has no summary.json: did the run finish?")
    print(write_report(args.run_dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trice", description="TRICE: tune chain-of-thought as a latent variable.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train with TRICE (a YAML config plus flag overrides)")
    p.add_argument("--config", default=None, help="YAML file of config keys")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a run exactly from its last good checkpoint")
    _add_config_flags(p)

    p = sub.add_parser("demo", help="offline demo: TRICE on the packaged SmolLM2 (about 20 minutes on 2 cores)")
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    _add_config_flags(p)

    p = sub.add_parser("compare", help="methods x seeds on one task under one token budget, with a table and plots")
    p.add_argument("--config", default=None, help="YAML file of config keys shared by every run")
    p.add_argument("--methods", default="trice,trice-nocv,star,rs,pt-direct,fewshot-cot,rloo",
                   help="comma-separated methods; METHOD+TOOL runs a method with a tool, e.g. trice+calculator")
    p.add_argument("--reference", default=None, help="the method the paired table compares the others with "
                                                     "(default: trice, else trice-full, trice-nocv, the first)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    _add_config_flags(p)

    p = sub.add_parser("report", help="one run's numbers and curves in RUN_DIR/report.md")
    p.add_argument("run_dir")

    p = sub.add_parser("eval", help="greedy and self-consistency accuracy of a saved run")
    p.add_argument("run_dir")
    p.add_argument("--n-eval", type=int, default=None, help="held-out questions (default: the run's)")
    p.add_argument("--sc-samples", type=int, default=5, help="self-consistency samples (0: off)")

    p = sub.add_parser("export", help="a run's policy as a model transformers/vLLM load (LoRA merged; soft prompt: "
                                      "a PEFT adapter), with its tokenizer and prompt prefix")
    p.add_argument("run_dir")
    p.add_argument("out", help="a new directory")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16", "auto"),
                   help="saved weights' dtype (default: the run's; auto = float32 on the CPU)")
    p.add_argument("--device", default=None, help="torch device for loading and merging (default: cpu)")
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # trice's own warnings (checker failures, dropped examples, skipped checkpoints) are for users:
    # one line each, without the source line Python would print under them.
    if category is RuntimeWarning:
        return f"warning: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_formatwarning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "demo":
            base = dict(DEMO, out=args.out or "runs/demo")
            return cmd_train(args, base)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "export":
            return cmd_export(args)
    except TriceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
