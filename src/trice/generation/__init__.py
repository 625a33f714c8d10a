"""Sampling rationales: the :class:`Sampler` interface the trainer owns (:mod:`.sampler`), the torch
engines behind it (the slot engine :mod:`.slot_engine`, the plain path :mod:`.plain_engine`), what they
share (:mod:`.rows`: the draw of :mod:`.draw`, the stops of :mod:`.stops`, tool results of
:mod:`.tool_inserts`), and the vLLM backend (:mod:`.vllm_sampler`)."""

from .sampler import Sample, Sampler, TorchSampler, auto_engine, sample

__all__ = ["Sample", "Sampler", "TorchSampler", "auto_engine", "sample"]
