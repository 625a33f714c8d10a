"""The choices users type, each listed once: the config validates them (:mod:`trice.config`) and the
layers that act on them read them here. Imports nothing, so the lowest layers can use it."""

PARAMS = ("prompt", "lora", "full")  # what is trained: a soft prompt (the paper), LoRA, or every weight
DTYPES = ("float32", "bfloat16", "float16", "auto")  # auto: bfloat16 on a GPU that has it, else float32
TOOLS = ("none", "calculator")  # tools a rationale may call (trice.tools)
PROMPT_FORMATS = ("auto", "plain", "chat")  # trice.prompts
SAMPLERS = ("torch", "vllm")  # who samples rationales (trice.generation)
ENGINES = ("auto", "slots", "compiled", "plain")  # the torch sampler's engine (trice.generation.sampler)
TRACKERS = ("none", "tensorboard", "wandb", "trackio")  # --report-to, as transformers names them
ANSWER_TYPES = ("auto", "exact", "number", "math")  # how hf: tasks compare answers (trice.tasks.hf)
ON_TOO_LONG = ("drop", "error")  # questions that do not fit in the model's context (trice.training.setup)
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo")  # TRL's GRPOConfig.loss_type (its default first)
GRPO_SCALE_REWARDS = ("group", "batch", "none")  # TRL's GRPOConfig.scale_rewards (its default first)
