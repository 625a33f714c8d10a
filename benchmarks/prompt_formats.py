"""Chat template or plain text? Untuned few-shot greedy accuracy of the packaged SmolLM2-135M-Instruct
in each prompt format, on the same questions with the same exemplars (issue 14 item 1; the default
``--prompt-format auto`` follows this measurement: trice.prompts.AUTO_PREFERS_CHAT).

    python benchmarks/prompt_formats.py [--out docs/prompt-formats.md]

Tasks: reasoning-gym chain_sum as the demo sets it (400 held-out questions, the hand-written
exemplars of the benchmarks) and BIG-Bench Hard boolean_expressions (its held-out split, its own
3-shot CoT exemplars; data from $TRICE_DATA_DIR or ../shared/data). Reported: accuracy with its
standard error, and the paired difference chat - plain on the same questions with McNemar's z.
Not a timing benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import HAND_EXEMPLARS  # noqa: E402

TASKS = [
    ("gym/chain_sum", dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1, n_train=200, n_test=400), 64),
    ("bbh/boolean_expressions", {}, 160),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/prompt-formats.md")
    parser.add_argument("--n-eval", type=int, default=400)
    args = parser.parse_args(argv)
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if "TRICE_DATA_DIR" not in os.environ and default_data.is_dir():
        os.environ["TRICE_DATA_DIR"] = str(default_data)
    from trice.evaluation.accuracy import greedy_accuracy
    from trice.evaluation.statistics import paired_counts, standard_error
    from trice.modeling import Policy, load_model
    from trice.prompts import PLAIN, chat_format
    from trice.tasks import Example, get_task

    model, tok = load_model("smollm2-135m", "float32", "cpu")
    formats = [PLAIN, chat_format(tok)]
    rows = []
    for name, options, max_new_tokens in TASKS:
        task = get_task(name, seed=0, **options)
        exemplars = list(task.exemplars or []) or [Example(q, a, rationale=r) for q, r, a in HAND_EXEMPLARS]
        test = task.test[:args.n_eval]
        verdicts = {}
        for fmt in formats:
            policy = Policy.untuned(model, tok).with_prefix(fmt.prefix(exemplars))
            t0 = time.perf_counter()
            acc, verdicts[fmt.name], texts = greedy_accuracy(policy, task, test, max_new_tokens, 64,
                                                             prompt=fmt.prompt, stop=fmt.stop)
            print(f"{name} {fmt.name}: {acc:.3f} ± {standard_error(acc, len(test)):.3f} (n = {len(test)}, "
                  f"{time.perf_counter() - t0:.0f} s); e.g. {texts[0]!r}", flush=True)
        plain, chat = verdicts["plain"], verdicts["chat"]
        diff = (sum(chat) - sum(plain)) / len(test)
        rows.append((name, len(test), len(exemplars), sum(plain) / len(test), sum(chat) / len(test), diff,
                     paired_counts(plain, chat)))
    lines = ["# Prompt formats on the packaged SmolLM2-135M-Instruct: plain text or the chat template", "",
             "Untuned few-shot greedy accuracy, the same questions and exemplars in both formats "
             "(`python benchmarks/prompt_formats.py`, CPU, float32). The exemplars are earlier turns in chat "
             "format (trice.prompts). SE = binomial standard error; the paired difference is chat - plain on "
             "the same questions, with McNemar's z = (gained - lost) / sqrt(gained + lost).", "",
             "| task | n | exemplars | plain | chat | chat - plain | questions chat got / lost | McNemar z |",
             "|---|---|---|---|---|---|---|---|"]
    for name, n, k, plain, chat, diff, z in rows:
        lines.append(f"| {name} | {n} | {k} | {plain:.3f} ± {standard_error(plain, n):.3f} | "
                     f"{chat:.3f} ± {standard_error(chat, n):.3f} | {diff:+.3f} | "
                     f"{z['questions_gained']} / {z['questions_lost']} | {z['paired_z']:+.2f} |")
    better = sum(r[5] for r in rows)
    lines += ["", f"Decision: `--prompt-format auto` uses **{'chat' if better > 0 else 'plain'}** "
              f"(`AUTO_PREFERS_CHAT = {better > 0}`), the format with the higher mean accuracy over the two tasks "
              f"(mean difference {better / len(rows):+.3f}).", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    sys.exit(main())
