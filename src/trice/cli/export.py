"""``trice export RUN_DIR OUT``: a run's policy as a model other tools load (:mod:`trice.export`)."""

from __future__ import annotations

from pathlib import Path


def cmd_export(args) -> int:
    from ..export import export

    files = export(args.run_dir, args.out, dtype=args.dtype, device=args.device)
    print(f"exported {args.run_dir} to {args.out}: {', '.join(files)}")
    print(f"how to prompt it as the run did: {Path(args.out) / 'TRICE_USAGE.md'}")
    return 0
