"""The command line: ``trice train | demo | eval | compare | report | export``, one module per verb.

Every TrainConfig field is a flag (``--batch-size`` for ``batch_size``; :mod:`.flags`); a YAML
``--config`` gives the base values and flags override it. Errors the user can fix print one line,
``error: ...``, and exit 2. ``python -m trice.cli`` is the same program (for ``torchrun -m``).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import TriceError
from .compare import cmd_compare, cmd_report
from .eval import cmd_eval
from .export import cmd_export
from .flags import add_config_flags
from .train import cmd_demo, cmd_train

COMMANDS = {"train": cmd_train, "demo": cmd_demo, "eval": cmd_eval, "compare": cmd_compare, "report": cmd_report,
            "export": cmd_export}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trice", description="TRICE: tune chain-of-thought as a latent variable.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train with TRICE (a YAML config plus flag overrides)")
    p.add_argument("--config", default=None, help="YAML file of config keys")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a run exactly from its last good checkpoint")
    add_config_flags(p)

    p = sub.add_parser("demo", help="offline demo: TRICE on the packaged SmolLM2 (912 s on a 2-core Xeon: docs/demo)")
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    add_config_flags(p)

    p = sub.add_parser("compare", help="methods x seeds on one task under one token budget, with a table and plots")
    p.add_argument("--config", default=None, help="YAML file of config keys shared by every run")
    p.add_argument("--methods", default="trice,trice-nocv,star,rs,pt-direct,fewshot-cot,rloo",
                   help="comma-separated methods; METHOD+TOOL runs a method with a tool, e.g. trice+calculator")
    p.add_argument("--reference", default=None, help="the method the paired table compares the others with "
                                                     "(default: trice, else trice-full, trice-nocv, the first)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    add_config_flags(p)

    p = sub.add_parser("report", help="one run's numbers and curves in RUN_DIR/report.md")
    p.add_argument("run_dir")

    p = sub.add_parser("eval", help="greedy and self-consistency accuracy of a saved run")
    p.add_argument("run_dir")
    p.add_argument("--n-eval", type=int, default=None, help="held-out questions (default: the run's)")
    p.add_argument("--sc-samples", type=int, default=5, help="self-consistency samples (0: off)")
    p.add_argument("--policy", default=None, metavar="DIR",
                   help="a policy the run saved along the way (policies/step-N) instead of its final one")

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
        return COMMANDS[args.command](args)
    except TriceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
