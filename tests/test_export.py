"""`trice export`: the exported model, loaded by plain transformers (and PEFT for a soft prompt) and
prompted as its TRICE_USAGE.md says, gives the same greedy texts as the run's own evaluation."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tiny import coin_task, save_tiny_lm
from trice import TrainConfig, TriceError, train
from trice.cli import main
from trice.evaluation.accuracy import greedy_accuracy
from trice.export import EXPORT_JSON, PREFIX_FILE, USAGE_FILE, export
from trice.methods import make_method
from trice.modeling import Policy, load_model
from trice.prompts import resolve_format
from trice.artifacts.run_dir import RunDir

N_EVAL = 20


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_lm(tmp_path_factory.mktemp("base") / "model")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_dir):
    """``trained(params)``: (run directory, task, summary) of a 3-step run on the tiny model saved to disk."""
    cache = {}

    def get(params):
        if params not in cache:
            run = tmp_path_factory.mktemp(params) / "run"
            task = coin_task(n_test=N_EVAL)
            lr = {"prompt": 0.05, "lora": 0.02, "full": 1e-2}[params]  # large enough to move the weights in 3 steps
            config = TrainConfig(model=str(base_dir), params=params, lr=lr,
                                 steps=3, batch_size=4, subsample=4, max_new_tokens=12, n_eval=N_EVAL,
                                 out=str(run), threads=1, seed=0)
            cache[params] = (run, task, train(config, task=task))
        return cache[params]

    return get


def run_own_greedy(run, task):
    """The run's own greedy evaluation (the function the trainer uses) of its saved final policy."""
    config = RunDir(run).config()
    model, tok = load_model(config.model, config.dtype, "cpu")
    policy = Policy.load(model, tok, RunDir(run).policy_path)
    fmt = resolve_format(config.prompt_format, tok)
    prompt = make_method(config.method, [], fmt=fmt).prompt
    accuracy, _, texts = greedy_accuracy(policy, task, task.test[:N_EVAL], config.max_new_tokens,
                                         config.sample_batch_size, prompt=prompt, stop=fmt.stop)
    return accuracy, texts


def usage_code(out) -> dict:
    """Run the python block of out/TRICE_USAGE.md: it loads the export and defines generate(question)."""
    note = (out / USAGE_FILE).read_text(encoding="utf-8")
    namespace = {}
    exec(note.split("```python\n", 1)[1].split("```", 1)[0], namespace)
    return namespace


def assert_same_outputs(run, task, summary, out):
    accuracy, expected = run_own_greedy(run, task)
    assert accuracy == summary["greedy_accuracy_after"]  # the reload is the run's final policy
    assert len(set(expected)) > 1  # varied texts: the comparison means something
    usage = usage_code(out)
    got = [usage["generate"](e.question) for e in task.test[:N_EVAL]]
    assert got == expected
    return usage


@pytest.mark.parametrize("params", ["lora", "full"])
def test_merged_export_loads_with_from_pretrained_and_reproduces_greedy_outputs(trained, base_dir, tmp_path, params):
    from transformers import AutoModelForCausalLM

    run, task, summary = trained(params)
    out = tmp_path / "exported"
    files = export(run, out)
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", PREFIX_FILE,
                 USAGE_FILE, EXPORT_JSON):
        assert name in files, name
    assert not list(tmp_path.glob(".exported.tmp-*"))
    weights = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k or "base_layer" in k for k in weights)  # a plain model, nothing of PEFT left
    base = AutoModelForCausalLM.from_pretrained(str(base_dir)).state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[name], base[name])  # the training is in the weights
    policy_meta = json.loads((run / "policy" / "trice_policy.json").read_text())
    assert (out / PREFIX_FILE).read_text() == policy_meta["prefix_text"]
    info = json.loads((out / EXPORT_JSON).read_text())
    assert info["params"] == params and info["max_new_tokens"] == 12 and info["stop"] == ["\n\n", "\nQuestion:"]
    usage = assert_same_outputs(run, task, summary, out)
    assert usage["generation_config"].do_sample is False


def test_soft_prompt_export_is_a_peft_adapter_and_reproduces_greedy_outputs(trained, base_dir, tmp_path):
    from peft import PeftModel

    run, task, summary = trained("prompt")
    out = tmp_path / "exported"
    files = export(run, out)
    assert {"adapter_config.json", "adapter_model.safetensors", USAGE_FILE, "tokenizer.json"} <= set(files)
    assert PREFIX_FILE not in files and "model.safetensors" not in files  # the base is referenced, not copied
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "PROMPT_TUNING" and adapter["base_model_name_or_path"] == str(base_dir.resolve())
    usage = assert_same_outputs(run, task, summary, out)
    model = usage["model"]
    assert isinstance(model, PeftModel)
    soft = model.prompt_encoder[model.active_adapter].embedding.weight
    assert soft.shape[0] == adapter["num_virtual_tokens"]
    trained_weights = load_file(str(run / "policy" / "adapter_model.safetensors"))
    assert torch.equal(soft.detach(), next(iter(trained_weights.values())))
    prefix = json.loads((run / "policy" / "trice_policy.json").read_text())["prefix_text"]
    ids = usage["tokenizer"](prefix, add_special_tokens=False).input_ids
    initial = model.get_base_model().get_input_embeddings().weight[ids]
    assert not torch.allclose(soft, initial)  # trained away from its initialisation (the exemplar text)


def test_cli_export_prints_what_it_wrote(trained, tmp_path, capsys):
    run, _, _ = trained("lora")
    assert main(["export", str(run), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "TRICE_USAGE.md" in printed


def _one_line_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


def test_errors_are_one_line(trained, tmp_path, capsys):
    run, _, _ = trained("lora")
    out = str(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    assert "not a trice run directory" in _one_line_error(["export", str(tmp_path / "missing"), out], capsys)
    assert "not a trice run directory" in _one_line_error(["export", str(tmp_path / "empty"), out], capsys)

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run / "config.yaml", unfinished / "config.yaml")
    assert "has no final policy" in _one_line_error(["export", str(unfinished), out], capsys)

    odd = tmp_path / "odd"
    shutil.copytree(run, odd)
    meta = odd / "policy" / "trice_policy.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "params": "ia3"}))
    assert "cannot export params 'ia3'" in _one_line_error(["export", str(odd), out], capsys)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "file").write_text("x")
    assert "already exists" in _one_line_error(["export", str(run), str(taken)], capsys)
    assert "inside the run directory" in _one_line_error(["export", str(run), str(run / "exported")], capsys)
    with pytest.raises(TriceError, match="not a trice run directory"):
        export(tmp_path / "missing", out)
    assert not (tmp_path / "out").exists()


# --- the packaged SmolLM2 (GGUF base), minutes --------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("params", ["lora", "prompt"])
def test_smollm2_export_reproduces_greedy_outputs(tmp_path, params):
    from trice.tasks import task_from_config

    torch.set_num_threads(2)
    options = dict(min_terms=2, max_terms=3, min_digits=1, max_digits=1, n_train=16, n_test=N_EVAL)
    config = TrainConfig(model="smollm2-135m", params=params, task="gym/chain_sum", task_options=options,
                         steps=2, batch_size=4, subsample=4, max_new_tokens=48, n_eval=N_EVAL,
                         exemplars=str(_chain_sum_exemplars(tmp_path / "exemplars.jsonl")),
                         out=str(tmp_path / "run"), threads=2, seed=0)
    summary = train(config)
    task = task_from_config(config)
    out = tmp_path / "exported"
    files = export(tmp_path / "run", out)
    # a GGUF base is dequantized into base/ for PEFT; a merged LoRA is a plain safetensors model
    assert ("base/model.safetensors" if params == "prompt" else "model.safetensors") in files
    accuracy, expected = run_own_greedy(tmp_path / "run", task)
    assert accuracy == summary["greedy_accuracy_after"]
    usage = usage_code(out)
    got = [usage["generate"](e.question) for e in task.test[:N_EVAL]]
    same = sum(g == e for g, e in zip(got, expected))
    print(f"\nSmolLM2 {params} export: {same}/{N_EVAL} greedy outputs identical to the run's own evaluation "
          f"(accuracy {accuracy:.3f})")
    assert got == expected


def _chain_sum_exemplars(path):
    rows = [("4 + 3 =", "7"), ("9 - 2 - 5 =", "2"), ("6 + 1 - 8 =", "-1")]
    path.write_text("".join(json.dumps({
        "question": f"State the final answer to the following arithmetic problem: {q}",
        "rationale": f"{q} {a}. So the answer is {a}.", "answer": a}) + "\n" for q, a in rows))
    return path
