"""The training configuration: one dataclass, read from YAML and overridden by flags.

Every field is a config key and a CLI flag (``batch_size`` <-> ``--batch-size``); ``help`` metadata
feeds the CLI. ``validate()`` turns every bad value into a one-line :class:`TriceError`.

>>> config = TrainConfig(steps=10, batch_size=4, subsample=4)
>>> config.resolved_lr()  # the default for a soft prompt
0.03
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .choices import (
    ANSWER_TYPES,
    DTYPES,
    ENGINES,
    GRPO_LOSS_TYPES,
    GRPO_SCALE_REWARDS,
    ON_TOO_LONG,
    PARAMS,
    PROMPT_FORMATS,
    SAMPLERS,
    TOOLS,
    TRACKERS,
)
from .errors import TriceError
from .methods.registry import (
    METHODS,  # the one list of methods (the registry imports no method here)
)

# Default learning rates per parameterisation (Adam, cosine decay to 0.1x), chosen from measured
# runs on SmolLM2-135M (the project's early calibration runs, re-checked in this repo's demo): a soft
# prompt collapses at 0.3 (the embedding std is ~0.14) and is stable at 0.01-0.03; LoRA r=8 on all
# linear layers rose fastest at 1e-3; full fine-tuning uses the usual small-model 1e-5.
DEFAULT_LR = {"prompt": 0.03, "lora": 1e-3, "full": 1e-5}


def _f(default, help: str, **kw):
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # --- model and what is trained
    model: str = _f("smollm2-135m", "hub id, local directory or .gguf file; smollm2-135m = the packaged SmolLM2-135M-Instruct")
    dtype: str = _f("auto", "model dtype; auto = bfloat16 on a GPU that supports it, float32 on CPUs",
                    choices=DTYPES)
    params: str = _f("prompt", "what is trained: a soft prompt (the paper), LoRA, or all weights", choices=PARAMS)
    lora_r: int = _f(8, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA alpha")
    lora_targets: str = _f("all-linear", "LoRA target modules (PEFT syntax, comma-separated)")
    # --- task
    task: str = _f("gym/chain_sum", "gsm8k | bbh | bbh/<task> | gym/<dataset> | jsonl:<path>")
    task_options: dict = _f({}, "options passed to the task (e.g. reasoning-gym config)")
    data_dir: str | None = _f(None, "local directory of the dataset (else $TRICE_DATA_DIR, else the hub)")
    split: str = _f("train", "hf: tasks: the training split")
    test_split: str | None = _f(None, "hf: tasks: the held-out split (default: test, else a deterministic "
                                      "split of the training split)")
    question_field: str = _f("question", "hf: and jsonl: tasks: the question column")
    answer_field: str = _f("answer", "hf: and jsonl: tasks: the answer column")
    answer_type: str = _f("auto", "hf: tasks: how answers are compared: exact text, number, math "
                                  "(math-verify), or auto (number when every gold answer is one, else exact)",
                          choices=ANSWER_TYPES)
    reward: list = _f([], "TRL-style reward functions module:function (completions plus the dataset's "
                          "columns -> list[float]) used as the checker; several are summed, as TRL does")
    reward_threshold: float = _f(0.0, "a reward above this means correct")
    n_train: int | None = _f(None, "use only the first N training examples")
    # --- method and optimisation
    method: str = _f("trice-auto", "trice-auto (trice-nocv below 0.7 running acceptance, trice above; measured in "
                     "docs/estimator-variance.md), trice (the paper's: CV, subsampled), trice-full (CV), trice-nocv "
                     "(basic), or a baseline: "
                     "star, star-norat, rs, rloo, grpo (TRL's), pt-direct, sft-gold, fewshot-cot, or a likelihood-based peer: "
                     "trice-soft, jepo, latro (ALGORITHM.md 6)", choices=METHODS)
    k: int = _f(4, "samples per example for rs, rloo, grpo (TRL's num_generations; TRL's default is 8), jepo and latro")
    grpo_loss_type: str = _f("dapo", "grpo: how token losses are normalised, as TRL's loss_type (dapo: by the tokens of "
                                     "the whole batch; grpo: per sequence; dr_grpo: by max_new_tokens)",
                             choices=GRPO_LOSS_TYPES)
    grpo_scale_rewards: str = _f("group", "grpo: advantages divided by the group's reward std (group), the batch's "
                                          "(batch) or not (none), as TRL's scale_rewards", choices=GRPO_SCALE_REWARDS)
    latro_kl: float = _f(0.05, "latro: weight of the KL penalty to the initial policy")
    star_inner_steps: int = _f(20, "STaR: fine-tuning steps per outer iteration")
    steps: int = _f(100, "optimiser steps")
    token_budget: int | None = _f(None, "stop once this many tokens have been sampled (set-up included)")
    time_budget: float | None = _f(None, "stop once the run has taken this many seconds (set-up and evaluations "
                                         "included): equal wall-clock comparisons")
    save_policy_every: int = _f(0, "also save the policy every N steps, in policies/step-N/ (`trice eval RUN --policy "
                                   "DIR` evaluates one): accuracy along a run, measured afterwards")
    compute_budget: int | None = _f(None, "stop once this many token-passes are spent: sampled + forward-only + 3 x scored "
                                          "tokens, set-up included (trice.training.budget; compare's fair budget)")
    eval_points: int = _f(0, "learning curve: evaluate on the first eval_subset held-out questions at this many "
                             "evenly spaced points of the budget (compute_budget, else token_budget, else steps)")
    eval_subset: int = _f(100, "held-out questions of the learning curve's intermediate evaluations")
    batch_size: int = _f(16, "M: training examples per step")
    subsample: int = _f(16, "L: terms drawn per step (backward sequences)")
    lr: float | None = _f(None, "learning rate (default depends on --params: prompt 0.03, lora 1e-3, full 1e-5)")
    lr_final_ratio: float = _f(0.1, "cosine decay ends at lr * this")
    max_grad_norm: float | None = _f(None, "clip the gradient norm (off by default, as the reference)")
    temperature: float = _f(1.0, "proposal temperature; 1.0 is exact TRICE, other values an approximation")
    max_new_tokens: int = _f(64, "maximum rationale length in tokens")
    tools: str = _f("none", "tools rationales may call: calculator evaluates <<EXPR= and inserts RESULT>> "
                            "(trice.tools; its tokens are context, not scored)", choices=TOOLS)
    prompt_format: str = _f("auto", "plain text prompts, the tokenizer's chat template, or auto (see "
                                    "trice.prompts.resolve_format)", choices=PROMPT_FORMATS)
    on_too_long: str = _f("drop", "examples whose prompt + max_new_tokens exceed the model's context: drop "
                                  "them with a warning, or error", choices=ON_TOO_LONG)
    sample_batch_size: int = _f(64, "decode rows of the sampling engine (slots refilled as rows finish)")
    engine: str = _f("auto", "the torch sampler's engine: slots (continuous batching), compiled (its decode step "
                             "through torch.compile, static shapes; slower on CPUs, for GPUs: "
                             "trice.generation.compiled_decode), plain (transformers' forward), or auto (slots on a "
                             "CPU, plain on a GPU)", choices=ENGINES)
    score_batch_size: int = _f(16, "rows per scoring forward + backward; gradients accumulate over them "
                                   "(lower it if a step runs out of memory)")
    # --- initialisation (ALGORITHM.md section 2)
    exemplars: str | None = _f(None, "JSONL file of exemplars {question, rationale, answer} instead of searching")
    num_exemplars: int = _f(3, "exemplars in the prompt")
    exemplar_search: int = _f(64, "training questions tried when searching for exemplars")
    # --- evaluation
    eval_every: int = _f(0, "greedy evaluation every N steps (0: only before and after)")
    n_eval: int = _f(200, "held-out questions for evaluation")
    sc_samples: int = _f(0, "self-consistency samples per question at the final evaluation (0: off)")
    # --- run
    checkpoint_every: int = _f(10, "save a checkpoint every N steps (0: only on SIGINT/SIGTERM)")
    keep_checkpoints: int = _f(2, "checkpoints kept on disk (the newest; older ones are deleted)")
    max_bad_steps: int = _f(5, "stop after this many consecutive steps with a non-finite loss or gradient")
    seed: int = _f(0, "random seed of training (sampling, the subsample, the minibatch order)")
    data_seed: int = _f(0, "random seed of the task's data: generated questions and the train/held-out split, kept "
                           "the same across training seeds so that runs compare on the same questions")
    report_to: str = _f("none", "also log every metric to an experiment tracker, as transformers names them",
                        choices=TRACKERS)
    out: str | None = _f(None, "run directory (default runs/<task>-<method>-<time>)")
    threads: int | None = _f(None, "torch CPU threads (default: torch's, i.e. all cores)")
    fsdp: bool = _f(False, "under torchrun: shard the parameters, their gradients and Adam's state across the processes "
                           "(FSDP2), for --params full or lora models too large to replicate (docs/scale-out.md)")
    device: str | None = _f(None, "torch device (default: cuda:LOCAL_RANK when a GPU is present, else cpu)")
    # --- sampling backend
    sampler: str = _f("torch", "who samples rationales: our batched KV-cache sampler, or vLLM (a GPU, or vLLM's CPU "
                      "build; docs/vllm.md)", choices=SAMPLERS)
    vllm_gpu_memory_utilization: float = _f(0.3, "vLLM: fraction of the GPU's memory it may take (its weights, "
                                               "activations and KV cache), next to the trainer")
    sampler_check_rows: int = _f(4, "vLLM: sampled rows re-scored by the trainer each step to log how far "
                                 "the two disagree (0: off)")

    # ------------------------------------------------------------------------------------------
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.params]

    def validate(self) -> "TrainConfig":
        def need(ok: bool, message: str):
            if not ok:
                raise TriceError(f"config: {message}")

        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                raise TriceError(f"config: {f.name} must be one of {', '.join(choices)}, got {value!r}")
            value = _numeric(f, value)
            object.__setattr__(self, f.name, value)
            _check_type(f, value)
        need(self.batch_size >= 2, f"batch_size (M) must be >= 2 (the leave-one-out beta needs two examples), got {self.batch_size}")
        need(0 < self.vllm_gpu_memory_utilization <= 1,
             f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        need(self.sampler_check_rows >= 0, f"sampler_check_rows must be >= 0, got {self.sampler_check_rows}")
        need(self.subsample >= 1, f"subsample (L) must be >= 1, got {self.subsample}")
        need(self.steps >= 0, f"steps must be >= 0, got {self.steps}")
        need(self.token_budget is None or self.token_budget >= 1, f"token_budget must be >= 1, got {self.token_budget}")
        need(self.time_budget is None or self.time_budget > 0, f"time_budget must be > 0, got {self.time_budget}")
        need(self.save_policy_every >= 0, f"save_policy_every must be >= 0, got {self.save_policy_every}")
        need(self.compute_budget is None or self.compute_budget >= 1,
             f"compute_budget must be >= 1, got {self.compute_budget}")
        need(self.eval_points >= 0 and self.eval_subset >= 1, "eval_points must be >= 0 and eval_subset >= 1")
        need(self.lr is None or 0 < self.lr <= 1e4, f"lr must be > 0 and <= 1e4, got {self.lr}")
        need(0 < self.lr_final_ratio <= 1, f"lr_final_ratio must be in (0, 1], got {self.lr_final_ratio}")
        need(self.temperature > 0, f"temperature must be > 0 for proposals, got {self.temperature}")
        need(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(self.n_eval >= 0 and self.eval_every >= 0 and self.sc_samples >= 0,
             "n_eval, eval_every and sc_samples must be >= 0")
        need(self.num_exemplars >= 0 and self.exemplar_search >= 1, "num_exemplars must be >= 0 and exemplar_search >= 1")
        need(self.lora_r >= 1 and self.sample_batch_size >= 1 and self.score_batch_size >= 1,
             "lora_r, sample_batch_size and score_batch_size must be >= 1")
        need(self.k >= 2 or self.method not in ("rs", "rloo", "grpo"), f"k must be >= 2 for {self.method}, got {self.k}")
        need(self.star_inner_steps >= 1, f"star_inner_steps must be >= 1, got {self.star_inner_steps}")
        need(self.n_train is None or self.n_train >= 2, f"n_train must be >= 2, got {self.n_train}")
        need(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        need(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        need(self.keep_checkpoints >= 1 and self.max_bad_steps >= 1, "keep_checkpoints and max_bad_steps must be >= 1")
        need(not self.fsdp or self.params in ("full", "lora"),
             f"fsdp shards full weights or a LoRA model's base; a soft prompt is small enough to replicate "
             f"(drop --fsdp for --params {self.params})")
        need(not self.fsdp or self.sampler == "torch" or self.params == "full",
             "fsdp with --sampler vllm pushes gathered full weights: use --params full, or --sampler torch")
        return self

    # --- YAML ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> "TrainConfig":
        if not isinstance(data, dict):
            raise TriceError(f"{where}: expected a mapping of config keys, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TriceError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise TriceError(f"config file {path} not found") from None
        except yaml.YAMLError as exc:
            raise TriceError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise TriceError(f"{path}: expected a mapping of config keys")
        return cls.from_dict({**data, **overrides}, where=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def _numeric(f: dataclasses.Field, value):
    """PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a string: read it as the float the user meant."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if isinstance(value, str) and kind.split("|")[0].strip() == "float":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_type(f: dataclasses.Field, value) -> None:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in kind
    if value is None:
        if not optional:
            raise TriceError(f"config: {f.name} must not be empty")
        return
    base = kind.split("|")[0].strip()
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "str": lambda v: isinstance(v, str),
          "bool": lambda v: isinstance(v, bool),
          "dict": lambda v: isinstance(v, dict),
          "list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)}.get(base, lambda v: True)(value)
    if not ok:
        raise TriceError(f"config: {f.name} must be {'a list of strings' if base == 'list' else base}, "
                         f"got {type(value).__name__} {value!r}")
