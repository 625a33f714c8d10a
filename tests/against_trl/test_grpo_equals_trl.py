"""trice's ``grpo`` is TRL's GRPO: on a tiny model, with the same prompts, completions and rewards, the gradient of
trice's method (``KSampleMethod.step`` -> ``weighted_backward``) equals the gradient of TRL's ``GRPOTrainer``
loss (its own ``training_step``: its reward summation, advantages, loss and backward; only the sampling is
replaced by the fixed completions), for each ``loss_type`` and ``scale_rewards`` trice supports.

In float64 TRL's per-token log-probs come from a plain log_softmax (its chunked kernel accumulates in
float32 whatever the model's dtype) with position ids that skip the prompt's left padding, as trice's
(transformers computes rotary embeddings in float32, so shifted positions round differently), and the
two must agree to float64 rounding (1e-9 relative), or, where rewards are scaled by a standard deviation, to
float32 rounding of it (1e-6 relative: TRL keeps rewards and their statistics in float32). In float32, with TRL's own kernel and positions, they
agree to float32 rounding (5e-5 relative).

Runs where TRL is installed: ``make trl-check`` (the benchmark virtualenv, TRL 1.16.0); skipped elsewhere.
"""

import copy
import tempfile

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is not installed here: `make trl-check` runs this in .venv-bench")

from tiny import make_tiny_lm  # noqa: E402
from trice import TrainConfig  # noqa: E402
from trice.generation.sampler import Sample  # noqa: E402
from trice.methods import Context, method_from_config  # noqa: E402
from trice.modeling import Policy  # noqa: E402
from trice.modeling.scoring import weighted_backward  # noqa: E402
from trice.prompts import PLAIN  # noqa: E402
from trice.tasks import Example, Task  # noqa: E402
from trice.tasks.rewards import use_rewards  # noqa: E402

K = 4  # num_generations
MAX_COMPLETION = 32  # every completion below fits (TRL cuts longer ones)
QUESTIONS = ["1 + 2 =", "3 + 4 + 5 =", "9 + 9 ="]
# 3 questions x 4 completions; group 1's rewards are all equal (advantages 0), reward B returns None for some
TEXTS = ["3.", "1 + 2 is 3. So", "4", "So the answer is 3.",
         "12", "3 + 4 is 7", "7 + 5 is 12.", "so 12",
         "18.", "9 + 9 = 18", "x", "The answer is 18."]
REWARD_A = [1.0, 0.0, 0.0, 1.0, 0.3, 0.3, 0.3, 0.3, 2.0, -1.0, 0.5, 0.0]
REWARD_B = [0.5, None, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 1.0, 1.0, 0.0]
WEIGHTS = [1.0, 0.5]


def reward_a(completions, **kwargs):
    return [REWARD_A[TEXTS.index(c.rstrip("\n"))] for c in completions]


def reward_b(completions, **kwargs):
    return [REWARD_B[TEXTS.index(c.rstrip("\n"))] for c in completions]


class FixedSampler:
    tokens = 0

    def sample(self, prompts, temperature=None, prefix=None):
        assert len(prompts) == len(TEXTS)
        return [Sample(text, len(text), True) for text in TEXTS]


def trice_gradient(model, tok, loss_type, scale_rewards):
    config = TrainConfig(method="grpo", k=K, max_new_tokens=MAX_COMPLETION, grpo_loss_type=loss_type,
                         grpo_scale_rewards=scale_rewards)
    task = use_rewards(Task("toy", [Example(q, "0") for q in QUESTIONS], []), [reward_a, reward_b], weights=WEIGHTS)
    policy = Policy.create(model, tok, "full")
    ctx = Context(policy, task, task.train, config, FixedSampler(), torch.Generator().manual_seed(0))
    weighted = method_from_config(config).step(ctx, [0, 1, 2])
    weighted_backward(policy, weighted.prompts, weighted.continuations, weighted.coefs)
    return {n: p.grad for n, p in model.named_parameters()}


def plain_logps(trainer):
    """TRL's per-token log-probs of the completions, computed by a float64 log_softmax instead of its
    float32-accumulating chunked kernel (everything downstream stays TRL's)."""
    def logps(model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, **kwargs):
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
        logits = logits[:, -logits_to_keep - 1:-1]
        logp = torch.log_softmax(logits / trainer.temperature, -1)
        entropy = -(logp.exp() * logp).sum(-1) if compute_entropy else None  # (TRL logs it)
        return logp.gather(-1, input_ids[:, -logits_to_keep:, None]).squeeze(-1), entropy, None

    trainer._get_per_token_logps_and_entropies = logps


def trl_gradient(model, tok, loss_type, scale_rewards, exact):
    from trl import GRPOConfig, GRPOTrainer

    from datasets import Dataset

    rows = [{"prompt": PLAIN.prompt(q)} for q in QUESTIONS for _ in range(K)]  # one generation batch, as sampled
    completions = [tok(t + PLAIN.end, add_special_tokens=False).input_ids for t in TEXTS]
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, report_to="none", use_cpu=True, bf16=False, fp16=False,
                          gradient_checkpointing=False, per_device_train_batch_size=len(rows),
                          gradient_accumulation_steps=1, num_generations=K, max_completion_length=MAX_COMPLETION,
                          loss_type=loss_type, scale_rewards=scale_rewards, reward_weights=WEIGHTS, save_strategy="no",
                          logging_steps=1, dataloader_num_workers=0)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward_a, reward_b], args=args, processing_class=tok,
                              train_dataset=Dataset.from_list(rows[::K]))
        # only the sampling is replaced: TRL decodes these ids, rewards, normalises and computes its loss itself
        trainer._generate_single_turn = lambda prompt_ids, *a, **k: ([list(c) for c in completions], None)
        if exact:
            plain_logps(trainer)
        trainer.model.train()
        trainer.model.zero_grad(set_to_none=True)
        trainer.current_gradient_accumulation_steps = 1
        trainer.training_step(trainer.model, rows, None)
        return {n: p.grad for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_the_gradient_of_trices_grpo_is_trls(loss_type, scale_rewards, dtype):
    base, tok = make_tiny_lm(0)
    base = base.to(getattr(torch, dtype))
    ours = trice_gradient(copy.deepcopy(base), tok, loss_type, scale_rewards)
    theirs = trl_gradient(copy.deepcopy(base), tok, loss_type, scale_rewards, exact=dtype == "float64")
    assert ours.keys() == theirs.keys()
    diff = max(float((ours[n] - theirs[n]).abs().max()) for n in ours)
    scale = max(float(theirs[n].abs().max()) for n in theirs)
    print(f"TRL {trl.__version__}, {dtype}, loss_type {loss_type}, scale_rewards {scale_rewards}: "
          f"max |grad trice - grad TRL| {diff:.2e} (largest gradient entry {scale:.2e})")
    tolerance = 5e-5 if dtype == "float32" else 1e-9 if scale_rewards == "none" else 1e-6
    assert scale > 0 and diff <= tolerance * scale
