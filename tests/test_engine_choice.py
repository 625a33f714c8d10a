"""engine="auto" on CUDA reads what make gpu-check measured on that GPU (trice.generation.engine_choice); the
choice is a pure function of the figures, kept per GPU name, and said once."""

import json
import os

from trice.generation import engine_choice
from trice.generation.engine_choice import cuda_engine, decide, record


def test_the_compiled_engine_is_chosen_only_where_it_beats_the_plain_path_at_every_size():
    assert decide({"plain": {64: 100, 256: 400}, "compiled": {64: 300, 256: 500}}) == "compiled"
    assert decide({"plain": {64: 100, 256: 400}, "compiled": {64: 300, 256: 390}}) == "plain"
    assert decide({"plain": {64: 100}, "compiled": {256: 900}}) == "plain"  # no size measured for both
    assert decide({}) == "plain"


def test_a_recorded_measurement_decides_for_that_gpu_only(tmp_path, monkeypatch, capsys):
    path = tmp_path / "choices.json"
    monkeypatch.setenv("TRICE_ENGINE_CHOICES", str(path))
    assert cuda_engine("NVIDIA H100 80GB HBM3")[0] == "plain"  # nothing measured yet
    entry = record("NVIDIA H100 80GB HBM3", {"plain": {64: 3376, 256: 12817}, "compiled": {64: 21000, 256: 40000}})
    assert entry["engine"] == "compiled"
    record("NVIDIA A10G", {"plain": {64: 2000, 256: 8000}, "compiled": {64: 1500, 256: 9000}})
    table = json.loads(path.read_text())
    assert set(table) == {"NVIDIA H100 80GB HBM3", "NVIDIA A10G"}
    engine, why = cuda_engine("NVIDIA H100 80GB HBM3")
    assert engine == "compiled" and "21,000 tok/s at 64 rows" in why and "3,376" in why
    assert cuda_engine("NVIDIA A10G")[0] == "plain"
    stamp = path.stat().st_mtime_ns  # a new measurement is read again (the file is cached by its mtime)
    record("NVIDIA A10G", {"plain": {64: 2000, 256: 8000}, "compiled": {64: 2500, 256: 9000}})
    os.utime(path, ns=(stamp + 10 ** 9, stamp + 10 ** 9))
    assert cuda_engine("NVIDIA A10G")[0] == "compiled"
    assert cuda_engine("NVIDIA L4")[0] == "plain" and "make gpu-check" in cuda_engine("NVIDIA L4")[1]
    engine_choice._said.clear()
    engine_choice.say_once(engine, why)
    engine_choice.say_once(engine, why)
    assert capsys.readouterr().err.count("engine auto -> compiled") == 1


def test_an_unreadable_choices_file_falls_back_to_the_plain_path(tmp_path):
    bad = tmp_path / "choices.json"
    bad.write_text("{not json")
    assert cuda_engine("NVIDIA H100", bad)[0] == "plain"
