"""Tool calls inside rationales (trice.tools): the calculator, forced tokens in both sampling engines,
the masked likelihood and its gradient, and an exact resume of a run that uses a tool."""

import time

import pytest
import torch

from tiny import coin_task, make_tiny_lm
from trice.modeling import Policy
from trice.generation.sampler import sample
from trice.modeling.scoring import score, token_logprobs
from trice.tools import (CLOSE, ERROR, MAX_CALLS, OPEN, Calculator, calculate, make_tool, mark, mark_gold, segments,
                         tool_stats, visible)

VALID = [("1+2", "3"), ("7/2", "3.5"), ("2**10", "1024"), ("(3+4)*2", "14"), ("-5", "-5"), ("3 // 2", "1"),
         ("17 % 5", "2"), ("2.5*2", "5"), ("5--3", "8"), ("1,000+1", "1001"), ("12,345*2", "24690"),
         ("10/3", "3.333333"), ("0.1+0.2", "0.3"), ("((((1))))", "1"), (" 4 * 6 ", "24"), ("2**-1", "0.5")]
MALFORMED = ["", "  ", "()", "1+", "*3", "1 2", "3..4", "(1,2)", "1,00", "1e3", "4x5", "12%", "1/0", "5//0",
             "7 % 0", "0**-1", "--", "(1+2"]
HOSTILE = ["9**9**9", "10**16", "2**1000", "99999999*99999999", "(-8)**(1/3)", "__import__('os')", "abs(3)",
           "x+1", "(1).real", "().__class__", "[1]*10", "'a'*9", "1" * 101, "(" * 50 + "1" + ")" * 50,
           "1+" * 60 + "1", "lambda: 1", "open('f')", "1 if 1 else 2", "10**15*10"]


@pytest.mark.parametrize("expression,value", VALID)
def test_calculator_computes_arithmetic(expression, value):
    assert calculate(expression) == value


@pytest.mark.parametrize("expression", MALFORMED + HOSTILE)
def test_calculator_refuses_malformed_and_hostile_input_quickly(expression):
    start = time.perf_counter()
    assert calculate(expression) == ERROR
    assert time.perf_counter() - start < 1.0  # bounded: nothing is computed beyond the limits


def test_calculator_hook_fires_only_at_an_open_call_and_caps_calls():
    hook = Calculator(max_calls=2)
    assert hook("So 3 * 4 is <<3*4=") == "12>>"
    assert hook("So 3 * 4 is <<3*4") is None  # not at "="
    assert hook("a = ") is None and hook("x = 3 =") is None  # no open call
    assert hook("<<1+1=2>> and 2 =") is None  # the last call is closed
    assert hook("<<1+=") == ERROR + ">>"  # malformed: the error marker, the row goes on
    assert hook("<<a=b=") is None
    assert hook("<<1+1=2>> <<2+2=4>> <<3+3=") is None  # the cap: later calls are left to the model
    assert Calculator()("<<2+2=4>> " * (MAX_CALLS - 1) + "<<3+3=") == "6>>"
    assert hook(">> >> >> <<3+3=") == "6>>"  # ">>" the model writes is not a call: the cap counts calls
    assert make_tool("none") is None and isinstance(make_tool("calculator"), Calculator)


def test_marks_round_trip_and_gold_rationales_get_the_spans_the_calculator_inserts():
    text = "3 * 4 is <<3*4=" + mark("12>>") + "12."
    assert visible(text) == "3 * 4 is <<3*4=12>>12."
    assert segments(text) == [("3 * 4 is <<3*4=", False), ("12>>", True), ("12.", False)]
    assert segments("plain") == [("plain", False)]
    gold = "Half is <<48/2=24>>24 and <<24+1=25>>25."
    assert mark_gold(gold) == "Half is <<48/2=" + mark("24>>") + "24 and <<24+1=" + mark("25>>") + "25."
    assert mark_gold(mark_gold(gold)) == mark_gold(gold)
    stats = tool_stats([mark_gold(gold), "no call"], [True, False])
    assert stats["tool_use"] == 0.5 and stats["tool_calls"] == 1.0 and stats["tool_calls_valid"] == 1.0
    assert stats["accuracy_with_tool"] == 1.0 and stats["accuracy_without_tool"] == 0.0


class EveryFourth:
    """A test tool for a random tiny model: whenever the text's length is a multiple of 4, insert "#!"."""

    trigger = None  # every token may complete a call

    def __call__(self, text):
        return "#!" if text and len(text) % 4 == 0 else None


@pytest.fixture(scope="module")
def policy():
    model, tok = make_tiny_lm(0)
    return Policy.create(model, tok, "lora", prefix_text="Q: 1 + 1 = 2\n")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_both_engines_insert_the_same_tool_tokens(policy, temperature):
    prompts = [f"Q: {i} + {i} =" for i in range(7)]
    outs = {engine: sample(policy, prompts, max_new_tokens=20, temperature=temperature, stop=(),
                           generator=torch.Generator().manual_seed(1), batch_size=3, engine=engine, hook=EveryFourth())
            for engine in ("slots", "plain")}
    assert [s.text for s in outs["slots"]] == [s.text for s in outs["plain"]]
    assert sum(OPEN in s.text for s in outs["slots"]) >= 4
    for s in outs["slots"]:
        pieces = segments(s.text)
        tool = [p for p, inserted in pieces if inserted]
        assert all(p == "#!" for p in tool) and (tool or len(s.text) < 4)
        # every insertion follows model text whose visible length so far is a multiple of 4
        seen = ""
        for p, inserted in pieces:
            if inserted:
                assert len(seen) % 4 == 0
            seen += p
        assert s.num_tokens == len(visible(s.text)) + int(s.finished)  # char tokenizer; tool tokens and EOS count


def test_a_row_with_tools_does_not_depend_on_its_batch(policy):
    prompts = [f"Q: {i} * 2 =" for i in range(6)]
    alone = [sample(policy, [p], max_new_tokens=16, stop=(), generator=torch.Generator().manual_seed(4),
                    hook=EveryFourth())[0].text for p in prompts[:1]]
    together = sample(policy, prompts, max_new_tokens=16, stop=(), generator=torch.Generator().manual_seed(4),
                      batch_size=4, hook=EveryFourth())
    assert together[0].text == alone[0]


def _by_hand(policy, prompt, pieces):
    """Sum of log p(token) over the model's tokens, from one plain forward of the whole sequence."""
    tok = policy.tokenizer
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    ids, chosen = [], []
    for piece, inserted in pieces:
        piece_ids = tok(piece, add_special_tokens=False).input_ids
        ids += piece_ids
        chosen += [not inserted] * len(piece_ids)
    prefix = tok(policy.prefix_text, add_special_tokens=False).input_ids
    full = torch.tensor([prefix + prompt_ids + ids])
    logits = policy.model(input_ids=full).logits[0].float()
    logp = torch.log_softmax(logits[:-1], -1).gather(-1, full[0, 1:, None]).squeeze(-1)
    start = len(prefix) + len(prompt_ids) - 1
    cont = logp[start:start + len(ids)]
    return (cont * torch.tensor(chosen, dtype=cont.dtype)).sum(), cont


def test_masked_logprob_is_the_sum_over_the_models_tokens(policy):
    prompt, pieces = "Q: 3 * 4 =", [(" is <<3*4=", False), ("12>>", True), ("12. So 12", False), ("!", True)]
    text = "".join(mark(p) if inserted else p for p, inserted in pieces)
    with torch.no_grad():
        masked = score(policy, [prompt], [text])[0]
        expected, per_token = _by_hand(policy, prompt, pieces)
        unmasked = score(policy, [prompt], [visible(text)])[0]
    assert masked == pytest.approx(float(expected), abs=1e-4)
    assert unmasked == pytest.approx(float(per_token.sum()), abs=1e-4)  # the same tokens, none masked
    assert abs(float(unmasked - masked)) > 1e-3  # so the mask did something
    model_only = token_logprobs(policy, [prompt], [text])[0]
    assert len(model_only) == sum(len(p) for p, inserted in pieces if not inserted)


def test_the_gradient_has_no_contribution_from_tool_tokens(policy):
    params = policy.trainable_parameters()
    prompt = "Q: 5 + 6 ="
    pieces = [(" <<5+6=", False), ("11>>", True), ("11", False)]

    def grads(fn):
        for p in params:
            p.grad = None
        fn().backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    text = "".join(mark(p) if inserted else p for p, inserted in pieces)
    ours = grads(lambda: score(policy, [prompt], [text]).sum())
    hand = grads(lambda: _by_hand(policy, prompt, pieces)[0])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, hand))
    only_tool = grads(lambda: score(policy, [prompt], [" <<5+6=" + mark("11>>")]).sum() -
                      score(policy, [prompt], [" <<5+6="]).sum())
    assert all(float(g.abs().max()) < 1e-4 for g in only_tool)  # a trailing tool span adds nothing (float rounding)
    unmasked = grads(lambda: score(policy, [prompt], [visible(text)]).sum())
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, unmasked))


def test_a_tool_run_keeps_the_marks_in_memory_and_resumes_exactly(tmp_path, monkeypatch):
    """TRICE with a tool: memory rationales keep the tool's spans marked, verdicts see visible text, and a
    crash then --resume ends in the same state as an uninterrupted run."""
    from trice import TrainConfig, train
    from trice.methods.memory import Memory
    from trice.modeling import scoring as scorer
    from trice.training import loop, setup

    for module in (loop, setup):
        monkeypatch.setattr(module, "make_tool", lambda name: EveryFourth() if name == "calculator" else None)
    seen = []

    class Task(type(coin_task())):
        def is_correct(self, rationale, answer):
            seen.append(rationale)
            return sum(map(ord, rationale)) % 2 == 0

    def task():
        base = coin_task(gold=True)
        return Task(base.name, base.train, base.test, exemplars=base.exemplars)

    class Crash(Exception):
        pass

    def run(out, crash_at=None):
        model, tok = make_tiny_lm(0)
        calls, real = {"n": 0}, scorer.score

        def crashing(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise Crash
            return real(*args, **kwargs)

        monkeypatch.setattr(scorer, "score", crashing)
        config = TrainConfig(method="trice", params="lora", lr=0.01, steps=6, batch_size=4, subsample=3,
                             max_new_tokens=10, n_eval=3, eval_every=3, checkpoint_every=1, threads=1,
                             tools="calculator", out=str(out))
        try:
            return train(config, model=model, tokenizer=tok, task=task())
        finally:
            monkeypatch.setattr(scorer, "score", real)

    reference = run(tmp_path / "ref")
    memory = Memory.load(tmp_path / "ref" / "memory.jsonl")
    assert any(OPEN in z for z in memory.rationales)  # the memory stores which spans the tool inserted
    assert seen and not any(OPEN in z or CLOSE in z for z in seen)  # the checker sees visible text only
    with pytest.raises(Crash):
        run(tmp_path / "crashed", crash_at=4)
    model, tok = make_tiny_lm(0)
    resumed = train(model=model, tokenizer=tok, task=task(), resume=str(tmp_path / "crashed"))
    for measured in ("wall_seconds", "peak_rss_gb"):
        resumed.pop(measured), reference.pop(measured)
    assert resumed == reference
    assert Memory.load(tmp_path / "crashed" / "memory.jsonl").rationales == memory.rationales


def test_tools_with_the_vllm_sampler_are_accepted_by_the_config():
    """The calculator runs under --sampler vllm too (its trigger "=" stops vLLM's rows; a tool without a
    trigger is refused by the vLLM sampler itself: tests/test_vllm_sampler.py)."""
    from trice import TrainConfig

    config = TrainConfig(tools="calculator", sampler="vllm").validate()
    assert (config.tools, config.sampler) == ("calculator", "vllm")
