"""Peak memory of one score + backward, in a fresh process (run by bench.py's scoring figure).

    python benchmarks/scoring_memory.py ROWS.json --mode chunked|whole

ROWS.json holds {"prefix": str, "prompts": [...], "continuations": [...]}. The process loads the
packaged model, builds the bench's LoRA policy, and reports (JSON on stdout) the peak resident memory
above the level just before the call, sampled from /proc every 2 ms. One process per mode, so that
neither mode inherits the other's freed heap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows")
    parser.add_argument("--mode", choices=("chunked", "whole"), required=True)
    args = parser.parse_args()
    import torch

    import trice.modeling.scoring as scorer
    from bench_figures import peak_rss_during
    from trice.modeling import Policy, load_model

    data = json.loads(Path(args.rows).read_text())
    model, tok = load_model()
    policy = Policy.create(model, tok, "lora", prefix_text=data["prefix"], lora_r=8, lora_alpha=16)
    if args.mode == "whole":
        scorer._plain_head = lambda config: False  # the [rows, length, vocab] logits at once
    params = policy.trainable_parameters()

    def fwd_bwd():
        loss = -scorer.score(policy, data["prompts"], data["continuations"]).mean()
        loss.backward()
        for p in params:
            p.grad = None

    with torch.no_grad():
        scorer.score(policy, data["prompts"][:1], ["x"])  # import and first-call costs out of the way
    print(json.dumps({"mode": args.mode, "rows": len(data["prompts"]), "peak_bytes": peak_rss_during(fwd_bwd)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
