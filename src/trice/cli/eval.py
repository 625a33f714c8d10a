"""``trice eval RUN_DIR``: greedy and self-consistency accuracy of a saved run, on its own held-out
questions, prompted, sampled and checked as the run did (:func:`trice.training.setup.prepare`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import TriceError


def cmd_eval(args) -> int:
    import torch

    from ..artifacts.run_dir import RunDir
    from ..evaluation.statistics import standard_error
    from ..methods.initialisation import load_exemplars
    from ..modeling import Policy, load_model
    from ..runtime.distributed import default_device, init
    from ..tasks import task_from_config
    from ..tools import tool_stats
    from ..training.setup import prepare

    run = RunDir(args.run_dir)
    config = run.config()
    policy_path = Path(args.policy) if getattr(args, "policy", None) else run.policy_path
    if not policy_path.exists():
        raise TriceError(f"{policy_path} is not a saved policy" if getattr(args, "policy", None)
                         else f"{run.path} has no saved policy (policy/): did the run finish?")
    if args.n_eval is not None:
        config = dataclasses.replace(config, n_eval=args.n_eval)
    task = task_from_config(config)
    here = init(config.device)  # under a launcher each process evaluates its share of the questions
    model, tokenizer = load_model(config.model, config.dtype, config.device or default_device())
    exemplars = load_exemplars(run.exemplars_path) if run.exemplars_path.exists() else []
    # the run's own questions that fit the context, before any forward pass
    held_out = prepare(config, model, tokenizer, task, exemplars=exemplars, training=False).held_out
    policy = Policy.load(model, tokenizer, policy_path)
    accuracy, verdicts, texts = held_out.greedy(policy)
    n = len(held_out.examples)
    result = {"n_eval": n, "greedy_accuracy": accuracy, "standard_error": standard_error(accuracy, n),
              **(tool_stats(texts, verdicts) if held_out.tool is not None else {})}
    if args.sc_samples:
        result["sc_accuracy"] = held_out.self_consistency(policy, args.sc_samples,
                                                          torch.Generator().manual_seed(config.seed))
        result["sc_samples"] = args.sc_samples
    if here.is_main:
        where = policy_path if getattr(args, "policy", None) else run.path
        # eval.json also keeps each question's verdict (for paired comparisons, e.g. benchmarks/h2h_report.py)
        (where / "eval.json").write_text(json.dumps({**result, "verdicts": [bool(v) for v in verdicts]}, indent=2)
                                         + "\n", encoding="utf-8")
        print(json.dumps(result))
    return 0
