"""Head to head with TRL itself (issue 27): TRL 1.16's GRPOTrainer against trice's ``grpo`` and ``trice-auto``, at
equal wall-clock time, each run alone on the machine, then every saved policy evaluated by the same ``trice eval``.

    python benchmarks/trl_head_to_head.py train --method trl|grpo|trice-auto --seed 0 --seconds 900 --out runs/h2h
    python benchmarks/trl_head_to_head.py eval --out runs/h2h          # every snapshot, greedy, 200 held-out questions
    python benchmarks/trl_head_to_head.py report --out runs/h2h --doc docs/trl       # table, CSV and curve

The same task (reasoning-gym chain_sum, 2-3 one-digit terms, the demo's), model (the packaged SmolLM2-135M-Instruct,
float32), LoRA (r 8, alpha 16, all linear layers), prompt (the plain format after the same 3 exemplars,
configs/exemplars/chain_sum.jsonl), reward (trice's check of the task: 1 right, 0 wrong), held-out questions and
evaluator. GRPO's settings are TRL's defaults (``num_generations`` 8, ``loss_type`` dapo, ``scale_rewards`` group,
``beta`` 0, one iteration per batch) on both sides, with 2 questions x 8 completions per step (TRL's per-device
batch 16); the learning rate is trice's LoRA default 1e-3 on every side (TRL's default 1e-6 is for full
fine-tuning: with LoRA it does not move the model in a CPU budget). Each run saves its policy every few steps with
the seconds since its start (model loading and set-up included), so accuracy is read against wall-clock time.
Runs in .venv-bench (the virtualenv with TRL).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXEMPLARS = ROOT / "configs" / "exemplars" / "chain_sum.jsonl"
TASK_OPTIONS = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1, "n_train": 200, "n_test": 200}
LR = 1e-3
MAX_NEW = 64
EVERY = {"trl": 4, "grpo": 4, "trice-auto": 10}  # steps between saved policies


def trice_args(method: str, seed: int, seconds: float, out: Path) -> list[str]:
    args = ["train", "--model", "smollm2-135m", "--dtype", "float32", "--params", "lora", "--lr", str(LR),
            "--task", "gym/chain_sum", "--prompt-format", "plain", "--exemplars", str(EXEMPLARS),
            "--max-new-tokens", str(MAX_NEW), "--n-eval", "200", "--seed", str(seed), "--time-budget", str(seconds),
            "--steps", "100000", "--save-policy-every", str(EVERY[method]), "--method", method, "--out", str(out),
            "--checkpoint-every", "0"]
    for key, value in TASK_OPTIONS.items():
        args += ["--task-option", f"{key}={value}"]
    if method == "grpo":
        args += ["--k", "8", "--batch-size", "2"]
    return args


def train_trl(seed: int, seconds: float, out: Path) -> None:
    """TRL's GRPOTrainer on the same questions, prompts and reward, for ``seconds`` of wall-clock time."""
    started = time.perf_counter()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trice.config import TrainConfig
    from trice.methods.initialisation import load_exemplars
    from trice.modeling import load_model
    from trice.prompts import PLAIN
    from trice.tasks import task_from_config

    torch.manual_seed(seed)
    config = TrainConfig(task="gym/chain_sum", task_options=TASK_OPTIONS, seed=seed)
    task = task_from_config(config)
    prefix = PLAIN.prefix(load_exemplars(EXEMPLARS))
    model, tok = load_model("smollm2-135m", "float32", "cpu")
    rows = [{"prompt": prefix + PLAIN.prompt(e.question), "index": i} for i, e in enumerate(task.train)]

    def reward(completions, index, **kwargs):  # trice's own check of the task, as its methods use it
        return [float(task.verdict(c.split(PLAIN.end)[0], task.train[i])) for c, i in zip(completions, index)]

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = time.perf_counter() - started >= seconds
            if state.global_step % EVERY["trl"] == 0 or control.should_training_stop:  # the last policy too
                path = out / "policies" / f"step-{state.global_step:08d}"
                kwargs["model"].save_pretrained(str(path))
                (path / "trice_policy.json").write_text(json.dumps({"params": "lora", "prefix_text": prefix}))
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"event": "policy_saved", "step": state.global_step,
                                        "path": str(path.relative_to(out)),
                                        "seconds_elapsed": time.perf_counter() - started}) + "\n")

    args = GRPOConfig(output_dir=str(out / "trl"), report_to="none", use_cpu=True, bf16=False, seed=seed,
                      learning_rate=LR, per_device_train_batch_size=16, num_generations=8,
                      max_completion_length=MAX_NEW, gradient_checkpointing=False, save_strategy="no",
                      logging_steps=1, max_steps=100000, generation_kwargs={"stop_strings": [PLAIN.end]})
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, processing_class=tok,
                          train_dataset=Dataset.from_list(rows), callbacks=[Clock()],
                          peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    generate = trainer.model.generate  # transformers needs the tokenizer to stop at a stop string
    trainer.model.generate = lambda *a, **k: generate(*a, tokenizer=tok, **k)
    trainer.train()
    # a run directory trice eval reads: the config of a trice run on the same task, prompts and evaluation
    TrainConfig(model="smollm2-135m", dtype="float32", params="lora", task="gym/chain_sum", task_options=TASK_OPTIONS,
                prompt_format="plain", max_new_tokens=MAX_NEW, n_eval=200, seed=seed, out=str(out)).save(out / "config.yaml")
    (out / "exemplars.jsonl").write_text(EXEMPLARS.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("train", "eval", "report"))
    ap.add_argument("--method", choices=("trl", "grpo", "trice-auto"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=900)
    ap.add_argument("--out", default=str(ROOT / "runs" / "h2h"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "trl"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.command == "train":
        run = out / f"{a.method}-seed{a.seed}"
        run.mkdir(parents=True, exist_ok=True)
        if a.method == "trl":
            train_trl(a.seed, a.seconds, run)
        else:
            subprocess.run([sys.executable, "-m", "trice.cli", *trice_args(a.method, a.seed, a.seconds, run)], check=True)
        return 0
    if a.command == "eval":
        for metrics in sorted(out.glob("*-seed*/metrics.jsonl")):
            run = metrics.parent
            for record in map(json.loads, metrics.read_text().splitlines()):
                if record.get("event") != "policy_saved" or (run / record["path"] / "eval.json").exists():
                    continue
                subprocess.run([sys.executable, "-m", "trice.cli", "eval", str(run), "--policy", str(run / record["path"]),
                                "--sc-samples", "0"], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        return 0
    from h2h_report import report

    report(out, Path(a.doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
