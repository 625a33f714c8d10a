"""Prompt formats (issue 14 item 1): plain text and the tokenizer's chat template, used alike by every
method, the guide, the exemplar search, scoring and evaluation."""

import pytest

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.errors import TriceError
from trice.prompts import PLAIN, THINK, chat_format, resolve_format
from trice.tasks import Example

CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nBe helpful.<|im_end|>\n"
          "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
          "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
# Drops every assistant turn but the last (as some reasoning templates drop past thinking): not splittable.
REWRITES = ("{% for m in messages %}{% if m['role'] == 'user' or loop.last %}<u>{{ m['content'] }}</u>{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}<a>{% endif %}")
EXEMPLARS = [Example("1 + 1 =", "2", rationale="1 + 1 = 2. So the answer is 2."),
             Example("2 + 5 =", "7", rationale="2 + 5 = 7. So the answer is 7.")]


def chat_tokenizer(template=CHATML):
    _, tok = make_tiny_lm(0)
    tok.chat_template = template
    return tok


def test_plain_is_the_papers_format():
    assert PLAIN.prefix(EXEMPLARS) == ("Question: 1 + 1 =\nAnswer: Let's think step by step.\n1 + 1 = 2. So the answer is 2."
                                       "\n\nQuestion: 2 + 5 =\nAnswer: Let's think step by step.\n"
                                       "2 + 5 = 7. So the answer is 7.\n\n")
    assert PLAIN.guide_prefix(EXEMPLARS).startswith("Question: 1 + 1 =\nAnswer: The answer is 2. Let's think step by step.\n")
    assert PLAIN.prompt("3 =") == "Question: 3 =\nAnswer: Let's think step by step.\n"
    assert PLAIN.guide_prompt("3 =", "3") == "Question: 3 =\nAnswer: The answer is 3. Let's think step by step.\n"
    assert PLAIN.direct_prompt("3 =") + PLAIN.direct_target("3") == "Question: 3 =\nAnswer: The answer is 3.\n\n"
    assert PLAIN.bootstrap_prefix().startswith(
        "Question: Tom has 3 apples and buys 2 more. How many apples does he have now?\n"
        "Answer: Let's think step by step.\nTom starts with 3 apples. 3 + 2 = 5. So the answer is 5.\n\n"
        "Question: Is the sky green") and PLAIN.prefix([]) == ""


@pytest.mark.parametrize("template", [CHATML, LLAMA3])
def test_chat_text_is_what_the_template_renders(template):
    """Prefix + prompt is exactly the template's rendering of the same conversation (exemplars as earlier
    turns, the generation prompt, then the rationale's opening); a rationale + end closes the turn as the
    template does."""
    tok = chat_tokenizer(template)
    fmt = chat_format(tok)
    messages = []
    for e in EXEMPLARS:
        messages += [{"role": "user", "content": e.question}, {"role": "assistant", "content": THINK + e.rationale}]
    rendered = tok.apply_chat_template(messages + [{"role": "user", "content": "4 + 4 ="}], tokenize=False,
                                       add_generation_prompt=True)
    assert fmt.prefix(EXEMPLARS) + fmt.prompt("4 + 4 =") == rendered + THINK
    closed = tok.apply_chat_template(messages, tokenize=False)
    assert fmt.prefix(EXEMPLARS) == closed
    guide = fmt.guide_prefix(EXEMPLARS) + fmt.guide_prompt("4 + 4 =", "8")
    assert guide.endswith("The answer is 8. Let's think step by step.\n") and guide.count(fmt.user) == 3
    assert fmt.stop[0] == fmt.end.rstrip() and fmt.end.rstrip() in ("<|im_end|>", "<|eot_id|>")


def test_chat_format_errors():
    _, tok = make_tiny_lm(0)
    with pytest.raises(TriceError, match="no chat template"):
        chat_format(tok)
    with pytest.raises(TriceError, match="cannot be split into turns"):
        chat_format(chat_tokenizer(REWRITES))
    with pytest.raises(TriceError, match="cannot render"):
        chat_format(chat_tokenizer("{{ raise_exception('no') }}"))


def test_auto_follows_the_measurement(monkeypatch):
    import trice.prompts as prompts

    tok = chat_tokenizer()
    monkeypatch.setattr(prompts, "AUTO_PREFERS_CHAT", False)
    assert resolve_format("auto", tok) is PLAIN
    monkeypatch.setattr(prompts, "AUTO_PREFERS_CHAT", True)
    assert resolve_format("auto", tok).name == "chat"
    assert resolve_format("auto", make_tiny_lm(0)[1]) is PLAIN  # no template: plain whatever was measured
    with pytest.raises(TriceError, match="unknown prompt format"):
        resolve_format("xml", tok)


@pytest.mark.parametrize("method", ["trice", "pt-direct", "star"])
def test_training_in_chat_format_scores_and_samples_chat_text(tmp_path, monkeypatch, method):
    """Every scored sequence of a chat-format run is a chat turn: its prompt opens a user turn and ends
    with the assistant's opening, its continuation ends with the end of turn; the policy's prefix is the
    exemplar conversation; sampled rationales never contain the end of turn."""
    from trice.modeling import scoring as scorer
    from trice.training import loop as trainer

    model, tok = make_tiny_lm(0)
    tok.chat_template = CHATML
    fmt = chat_format(tok)
    scored, prefixes = [], []
    real_score, real_create = scorer.score, trainer.Policy.create

    def score(policy, prompts, continuations, **kw):
        scored.extend(zip(prompts, continuations))
        return real_score(policy, prompts, continuations, **kw)

    def create(*args, **kwargs):
        prefixes.append(kwargs["prefix_text"])
        return real_create(*args, **kwargs)

    monkeypatch.setattr(scorer, "score", score)
    monkeypatch.setattr(trainer.Policy, "create", create)
    task = coin_task(8, 2, gold=True)
    config = TrainConfig(method=method, params="lora", prompt_format="chat", steps=5, batch_size=4, subsample=4,
                         star_inner_steps=1, max_new_tokens=6, n_eval=2, threads=1, out=str(tmp_path / "run"))
    train(config, model=model, tokenizer=tok, task=task)
    assert prefixes == [fmt.prefix(task.exemplars)] and prefixes[0].startswith("<|im_start|>system\n")
    assert scored
    for prompt, continuation in scored:
        assert prompt.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" in prompt
        assert continuation.endswith("<|im_end|>\n") and continuation.count("<|im_end|>") == 1
        if method == "pt-direct":
            assert prompt.endswith("<|im_start|>assistant\n") and continuation.startswith("The answer is ")
        else:
            assert prompt.endswith("<|im_start|>assistant\n" + THINK)
    records = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"init"' in line]
    assert '"prompt_format": "chat"' in records[0]


def test_the_run_saves_the_resolved_format_and_old_runs_read_as_plain(tmp_path, monkeypatch):
    import trice.prompts as prompts
    from trice.artifacts.run_dir import RunDir

    monkeypatch.setattr(prompts, "AUTO_PREFERS_CHAT", True)
    model, tok = make_tiny_lm(0)
    tok.chat_template = CHATML
    config = TrainConfig(params="lora", steps=1, batch_size=4, subsample=4, max_new_tokens=4, n_eval=1, threads=1,
                         out=str(tmp_path / "run"))
    train(config, model=model, tokenizer=tok, task=coin_task(8, 2))
    assert RunDir(tmp_path / "run").config().prompt_format == "chat"  # not "auto": resume and eval keep it
    old = tmp_path / "run" / "config.yaml"
    old.write_text("".join(l for l in old.read_text().splitlines(True) if not l.startswith("prompt_format")))
    assert RunDir(tmp_path / "run").config().prompt_format == "plain"
