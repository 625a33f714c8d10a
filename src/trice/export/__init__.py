"""``trice export RUN_DIR OUT``: a finished run's policy as a model other tools load.

- ``lora``: the adapters merged into the base weights (PEFT ``merge_and_unload``); ``full``: the
  trained weights. Either is saved as a plain transformers model (safetensors, ``config.json``), with
  the tokenizer and a ``generation_config.json`` (greedy; the EOS ids are every token trice's sampler
  stops at), so ``AutoModelForCausalLM.from_pretrained(OUT)`` and vLLM load it. These runs keep the
  few-shot exemplars as hard text in front of every prompt, so the model must still be given them:
  ``trice_prefix.txt``.
- ``prompt``: the soft prompt as a PEFT prompt-tuning adapter (``adapter_config.json``,
  ``adapter_model.safetensors``) on the run's base model. A GGUF base (the packaged SmolLM2) cannot be
  named as a PEFT base, so its dequantized weights are saved too, in ``OUT/base``.

Every export also writes ``TRICE_USAGE.md`` (how to build a prompt exactly as the run did: the prefix and
the prompt tokenized separately, the stop strings; with runnable transformers and vLLM code) and
``trice_export.json`` (the same facts, machine-readable). The export is written to a temporary
directory beside ``OUT`` and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..choices import PARAMS
from ..errors import TriceError
from .usage import EXPORT_JSON, PREFIX_FILE, USAGE_FILE, usage_note


def _policy_meta(run) -> dict:
    """The final policy's ``trice_policy.json``, or a one-line TriceError."""
    from ..modeling.policy import POLICY_JSON

    path = run.policy_path / POLICY_JSON
    if not path.is_file():
        raise TriceError(f"{run.path} has no final policy (policy/{POLICY_JSON}): the run has not finished; "
                         f"finish it with `trice train --resume {run.path}`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        params = meta["params"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TriceError(f"{path} is not a readable trice policy ({type(exc).__name__}: {exc})") from None
    if params not in PARAMS:
        raise TriceError(f"{path}: cannot export params {params!r}: trice exports {', '.join(PARAMS)}")
    return meta


def _base_reference(name: str) -> str | None:
    """What a PEFT adapter should name as its base: a hub id or an absolute directory; None for GGUF."""
    from ..modeling.loading import DEFAULT_MODEL

    if name is None or name == DEFAULT_MODEL or name.endswith(".gguf"):
        return None
    path = Path(os.path.expanduser(name))
    return str(path.resolve()) if path.is_dir() else name


def _generation_config(policy, max_new_tokens: int):
    """Greedy decoding that stops where trice's sampler stops: EOS or any special token."""
    from transformers import GenerationConfig

    from ..generation.stops import stop_token_ids

    tok = policy.tokenizer
    return GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens,
                            eos_token_id=sorted(stop_token_ids(tok, policy.base_model)),
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)


def export(run_dir, out, dtype: str | None = None, device: str | None = None) -> list[str]:
    """Export the final policy of run ``run_dir`` to the new directory ``out``; returns the files written
    (relative to ``out``). ``dtype`` defaults to the run's (``auto``: float32 on the CPU); ``device``
    to the CPU.

    >>> files = export("runs/demo", "exported/demo")  # doctest: +SKIP
    >>> "model.safetensors" in files and "trice_prefix.txt" in files  # a LoRA run  # doctest: +SKIP
    True
    >>> from transformers import AutoModelForCausalLM  # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained("exported/demo")  # doctest: +SKIP
    """
    from ..artifacts.run_dir import RunDir

    run, out = RunDir(run_dir), Path(out)
    if not run.path.is_dir():
        raise TriceError(f"{run.path} is not a trice run directory (no such directory)")
    config = run.config()  # one-line error if there is no config.yaml
    meta = _policy_meta(run)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TriceError(f"{out} already exists and is not an empty directory; choose a new output directory")
    if out.resolve() == run.path.resolve() or run.path.resolve() in out.resolve().parents:
        raise TriceError(f"{out} is inside the run directory; choose a directory outside it")

    from ..methods import method_from_config
    from ..modeling import Policy, load_model
    from ..prompts import resolve_format

    model, tokenizer = load_model(config.model, dtype or config.dtype, device or "cpu")
    policy = Policy.load(model, tokenizer, run.policy_path)
    fmt = resolve_format(config.prompt_format, tokenizer)
    template = method_from_config(config, [], fmt).prompt("{question}")
    info = {"run": str(run.path.resolve()), "params": meta["params"], "method": config.method, "task": config.task,
            "base_model": config.model, "dtype": str(policy.base_model.dtype).removeprefix("torch."),
            "prompt_format": fmt.name, "prompt_template": template, "stop": list(fmt.stop),
            "max_new_tokens": config.max_new_tokens,
            "prefix_file": PREFIX_FILE if meta["params"] != "prompt" else None,
            "tokenization": "prefix and prompt tokenized separately (add_special_tokens=False), ids concatenated"}
    try:
        summary = run.summary() if run.summary_path.is_file() else None
    except ValueError:  # a damaged summary.json: the export does not need it
        summary = None
    if summary:
        info["task"] = summary.get("task", config.task)
        info["evaluation"] = {k: summary.get(k) for k in ("n_eval", "greedy_accuracy_before", "greedy_accuracy_after")}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(policy, config, info, tmp, out)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def _write(policy, config, info: dict, tmp: Path, out: Path) -> None:
    generation = _generation_config(policy, config.max_new_tokens)
    info["stop_token_ids"] = generation.eos_token_id
    if policy.params == "prompt":
        base = _base_reference(config.model)
        if base is None:  # GGUF: PEFT needs a transformers base, so save the dequantized weights
            policy.base_model.save_pretrained(str(tmp / "base"))
            policy.tokenizer.save_pretrained(str(tmp / "base"))
            generation.save_pretrained(str(tmp / "base"))
            base = str((out / "base").resolve())
            info["base_saved"] = "base"
        policy.model.peft_config[policy.model.active_adapter].base_model_name_or_path = base
        policy.model.save_pretrained(str(tmp), save_embedding_layers=False)
        info["peft_base_model"] = base
    else:
        model = policy.model.merge_and_unload() if policy.params == "lora" else policy.model
        model.generation_config = generation
        model.save_pretrained(str(tmp))
        (tmp / PREFIX_FILE).write_text(policy.prefix_text, encoding="utf-8")
    policy.tokenizer.save_pretrained(str(tmp))
    generation.save_pretrained(str(tmp))
    (tmp / EXPORT_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (tmp / USAGE_FILE).write_text(usage_note(info, str(out)), encoding="utf-8")
