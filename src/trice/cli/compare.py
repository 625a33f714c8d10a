"""``trice compare`` (methods x seeds under one budget, with a table and plots) and ``trice report`` (one run)."""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..errors import TriceError
from .flags import config_from_args


def cmd_compare(args) -> int:
    from ..experiments.compare import compare, method_config

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        method_config(TrainConfig(), m)  # a clear error for an unknown method or tool
    try:
        seeds = [int(x) for x in str(args.seeds).split(",") if str(x).strip()]
    except ValueError:
        raise TriceError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    base = config_from_args(args)
    out = args.out or "runs/compare"
    if args.reference is not None and args.reference not in methods:
        raise TriceError(f"--reference {args.reference} is not one of --methods")
    rows = compare(base.validate(), methods, seeds, out, reference=args.reference)
    print((Path(out) / "results.md").read_text(encoding="utf-8"))
    print(f"{len(rows)} runs; results.csv, results.md and plots in {out}")
    return 0


def cmd_report(args) -> int:
    from ..artifacts.run_dir import RunDir
    from ..experiments.report import write_report

    RunDir(args.run_dir).config()  # a clear error if it is not a run directory
    if not (Path(args.run_dir) / "summary.json").exists():
        raise TriceError(f"{args.run_dir} has no summary.json: did the run finish?")
    print(write_report(args.run_dir))
    return 0
