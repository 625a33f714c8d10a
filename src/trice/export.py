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

from .errors import TriceError

PREFIX_FILE = "trice_prefix.txt"
USAGE_FILE = "TRICE_USAGE.md"
EXPORT_JSON = "trice_export.json"
_PARAMS = ("prompt", "lora", "full")


def _policy_meta(run) -> dict:
    """The final policy's ``trice_policy.json``, or a one-line TriceError."""
    from .model import _POLICY_JSON

    path = run.policy_path / _POLICY_JSON
    if not path.is_file():
        raise TriceError(f"{run.path} has no final policy (policy/{_POLICY_JSON}): the run has not finished; "
                         f"finish it with `trice train --resume {run.path}`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        params = meta["params"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TriceError(f"{path} is not a readable trice policy ({type(exc).__name__}: {exc})") from None
    if params not in _PARAMS:
        raise TriceError(f"{path}: cannot export params {params!r}: trice exports {', '.join(_PARAMS)}")
    return meta


def _base_reference(name: str) -> str | None:
    """What a PEFT adapter should name as its base: a hub id or an absolute directory; None for GGUF."""
    from .model import DEFAULT_MODEL

    if name is None or name == DEFAULT_MODEL or name.endswith(".gguf"):
        return None
    path = Path(os.path.expanduser(name))
    return str(path.resolve()) if path.is_dir() else name


def _generation_config(policy, max_new_tokens: int):
    """Greedy decoding that stops where trice's sampler stops: EOS or any special token."""
    from transformers import GenerationConfig

    from .sampler import _stop_ids

    tok = policy.tokenizer
    return GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=sorted(_stop_ids(policy)),
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
    from .run import RunDir

    run, out = RunDir(run_dir), Path(out)
    if not run.path.is_dir():
        raise TriceError(f"{run.path} is not a trice run directory (no such directory)")
    config = run.config()  # one-line error if there is no config.yaml
    meta = _policy_meta(run)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TriceError(f"{out} already exists and is not an empty directory; choose a new output directory")
    if out.resolve() == run.path.resolve() or run.path.resolve() in out.resolve().parents:
        raise TriceError(f"{out} is inside the run directory; choose a directory outside it")

    from .methods import make_method
    from .model import Policy, load_model
    from .prompts import resolve_format

    model, tokenizer = load_model(config.model, dtype or config.dtype, device or "cpu")
    policy = Policy.load(model, tokenizer, run.policy_path)
    fmt = resolve_format(config.prompt_format, tokenizer)
    template = make_method(config.method, [], fmt=fmt).prompt("{question}")
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


def usage_note(info: dict, out: str) -> str:
    """TRICE_USAGE.md: how to prompt the exported model as the run did. Its first ``python`` block
    defines ``generate(question) -> str`` (the tests run it); ``info`` is trice_export.json's content.

    >>> info = {"params": "lora", "method": "trice", "task": "gym/chain_sum", "base_model": "smollm2-135m",
    ...         "prompt_template": "Question: {question}\\nAnswer:", "stop": ["\\n\\n"], "max_new_tokens": 64}
    >>> "def generate(question)" in usage_note(info, "exported")
    True
    """
    soft = info["params"] == "prompt"
    base_line = ("BASE = os.path.join(OUT, 'base')  # the dequantized GGUF base" if info.get("base_saved")
                 else f"BASE = {info.get('peft_base_model')!r}") if soft else ""
    load = ("model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), OUT).eval()" if soft
            else "model = AutoModelForCausalLM.from_pretrained(OUT).eval()")
    prefix = "PREFIX = ''  # no text prefix: the soft prompt takes its place (generate() below)" if soft else \
        f"PREFIX = open(os.path.join(OUT, {PREFIX_FILE!r}), encoding='utf-8').read()  # the few-shot exemplars"
    what = ("a PEFT prompt-tuning adapter (the trained soft prompt) for the base model "
            + ("saved in `base/` (the run's GGUF base, dequantized)" if info.get("base_saved")
               else f"`{info.get('peft_base_model')}`") if soft else
            "a full model" + (" (LoRA merged into the base weights)" if info["params"] == "lora" else "")
            + f", prompted with the run's few-shot exemplars in `{PREFIX_FILE}`")
    how = ("""The run's input for a question is the soft prompt's embeddings followed by those of the prompt
`TEMPLATE` (below) with the question in place of `{question}`, tokenized with no special tokens added.""" if soft
           else f"""The run's input for a question is the prefix (`{PREFIX_FILE}`) followed by the prompt
`TEMPLATE` (below) with the question in place of `{{question}}`. Tokenize the prefix and the prompt **separately** (no
special tokens added) and concatenate the ids: trice trained and evaluated on exactly these ids, and
tokenizing the joined text can merge tokens across the boundary (e.g. a blank line and "Question")
and change the outputs.""")
    evaluation = info.get("evaluation") or {}
    acc = evaluation.get("greedy_accuracy_after")
    score = f"; held-out greedy accuracy {acc:.3f} on {evaluation.get('n_eval')} questions" if acc is not None else ""
    stop = list(info["stop"])
    # A soft prompt goes in as embeddings, before the prompt's, into the base model's generate: PEFT's own
    # generate for prompt tuning re-inserts the soft prompt at every step under transformers 5.24
    # (it looks for the KV cache under its old name, past_key_values), which changes the outputs.
    generate = ("""    with torch.no_grad():
        embeds = model.get_input_embeddings()(torch.tensor([ids]))
        embeds = torch.cat([model.get_prompt(batch_size=1).to(embeds.dtype), embeds], dim=1)  # soft prompt first
        output = model.get_base_model().generate(
            inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            generation_config=generation_config, tokenizer=tokenizer)
    text = tokenizer.decode(output[0], skip_special_tokens=True)  # (only the new tokens)""" if soft else
                """    with torch.no_grad():
        output = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                generation_config=generation_config, tokenizer=tokenizer)
    text = tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)""")
    code = f"""```python
import os
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
{"from peft import PeftModel" + chr(10) if soft else ""}
OUT = {out!r}
{base_line + chr(10) if soft else ""}tokenizer = AutoTokenizer.from_pretrained(OUT)
{load}
{prefix}
TEMPLATE = {info['prompt_template']!r}
STOP = {stop!r}
generation_config = GenerationConfig.from_pretrained(OUT)  # greedy, {info['max_new_tokens']} tokens, trice's EOS ids
generation_config.stop_strings = STOP  # (generate() then needs tokenizer=)


def input_ids(question):
    prompt = TEMPLATE.replace('{{question}}', question)
    return (tokenizer(PREFIX, add_special_tokens=False).input_ids if PREFIX else []) + \\
        tokenizer(prompt, add_special_tokens=False).input_ids


def generate(question):
    ids = input_ids(question)
{generate}
    return min((text.split(s)[0] for s in STOP), key=len)  # the text before the first stop string
```"""
    vllm = ("vLLM does not load PEFT prompt-tuning adapters; use the code above." if soft else f"""```python
from vllm import LLM, SamplingParams  # with input_ids() from above
llm = LLM(OUT)
params = SamplingParams(temperature=0, max_tokens={info['max_new_tokens']}, stop={stop!r})
texts = [o.outputs[0].text for o in llm.generate([{{"prompt_token_ids": input_ids(q)}} for q in questions], params)]
```""")
    return f"""# Using this trice export

`trice export` of a `{info['method']}` run (params `{info['params']}`, task `{info['task']}`, base
`{info['base_model']}`){score}.
This directory holds {what}.

## Prompting it as the run did

{how} Decode greedily for at most {info['max_new_tokens']} new tokens; stop at an
EOS or special token (the ids in `generation_config.json`) or at a stop string {stop!r}, and cut the
text before the first stop string. That reproduces the run's own greedy evaluation.

## transformers

{code}

## vLLM

{vllm}
"""
