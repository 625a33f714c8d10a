"""Wall time of TRL GRPOTrainer steps on the bench's model, prompts and lengths (run by bench.py).

8 prompts (the 3-shot prefix + a chain_sum question under the rationale template) x 2 generations = 16
completions of at most 64 tokens, stopping at EOS or at trice's STOP strings (the "\\n\\n" that ends
a rationale, or "\\nQuestion:") as trice's sampler does; LoRA r=8 on all linear layers, fp32, beta = 0 (no reference model), no gradient
checkpointing, no logging, CPU; the reward is the task's checker. Writes a JSON with every step's time
and the median after the first (warm-up) step.

    python benchmarks/trl_grpo_step.py --steps 4 --out trl.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bench_common import exemplars, get_demo_task
    from trice.modeling import load_model
    from trice.prompts import PLAIN

    task = get_demo_task()
    exs, _ = exemplars()
    prefix = PLAIN.prefix(exs)
    train = task.train[:8]
    data = Dataset.from_list([{"prompt": prefix + PLAIN.prompt(e.question), "idx": i} for i, e in enumerate(train)])

    model, tok = load_model()
    # Stop a completion where trice's sampler stops it (its STOP strings: the blank line that ends a
    # rationale, or a new "Question:"): stop_strings in the generation config, which generate() can only
    # use with the tokenizer, so generate gets it; rows that stop are padded, and the pad id is made an
    # EOS id so that TRL's completion mask ends there too.
    from transformers.generation.utils import GenerationMixin

    from trice.prompts import STOP

    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    eos = sorted(set(eos + [tok.eos_token_id, tok.pad_token_id]) - {None})
    model.generation_config.eos_token_id = eos
    original_generate = GenerationMixin.generate

    def generate(self, *a, **k):
        k.setdefault("tokenizer", tok)
        return original_generate(self, *a, **k)

    GenerationMixin.generate = generate

    lengths = []

    def reward(prompts, completions, idx, **kwargs):
        lengths.extend(len(tok(c, add_special_tokens=False).input_ids) for c in completions)
        return [float(task.verdict(c, train[i])) for c, i in zip(completions, idx)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.times, self._t0 = [], None

        def on_step_begin(self, *a, **k):
            self._t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self._t0)
            print(f"  TRL GRPO step {len(self.times) - 1}{' (warm-up)' if len(self.times) == 1 else ''}: "
                  f"{self.times[-1]:.2f} s", flush=True)

    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(output_dir=out, per_device_train_batch_size=16, num_generations=2,
                            max_completion_length=64, beta=0.0, gradient_checkpointing=False, report_to="none",
                            logging_strategy="no", save_strategy="no", use_cpu=True, bf16=False, fp16=False,
                            max_steps=args.steps, learning_rate=1e-3, temperature=1.0, top_p=1.0, top_k=0,
                            seed=0, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
                            generation_kwargs={"stop_strings": list(STOP)})
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=data,
                              processing_class=tok, callbacks=[timer],
                              peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                                     lora_dropout=0.0, task_type="CAUSAL_LM"))
        trainer.train()
    timed = timer.times[1:] or timer.times
    result = {"median_seconds": statistics.median(timed), "step_seconds": timer.times,
              "mean_completion_tokens": statistics.mean(lengths) if lengths else None,
              "completions_per_step": 16, "prompts_per_step": 8, "num_generations": 2,
              "eos_token_ids": eos, "stop_strings": list(STOP), "threads": torch.get_num_threads(),
              "trl": __import__("trl").__version__}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
