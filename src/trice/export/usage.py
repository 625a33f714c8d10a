"""``TRICE_USAGE.md`` of an export: how to prompt the exported model exactly as the run did, with runnable
transformers and vLLM code (tests/test_export.py runs the first)."""

from __future__ import annotations

PREFIX_FILE = "trice_prefix.txt"
USAGE_FILE = "TRICE_USAGE.md"
EXPORT_JSON = "trice_export.json"


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
