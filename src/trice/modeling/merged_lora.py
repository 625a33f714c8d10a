"""LoRA merged into the base weights while sampling, and taken out again for scoring, bit for bit.

PEFT's own ``merge_adapter()``/``unmerge_adapter()`` add the adapter's delta to the frozen weight
in place and subtract it again, which leaves the frozen weights off by float rounding after every
step (and drifts over a run, visibly so in bf16). Here the frozen weight tensor is never written:
each adapted layer's ``base_layer.weight`` is pointed at a separate merged tensor ``W + delta``
while sampling, and pointed back at the untouched original afterwards. PEFT's layers skip their
adapter branch while their ``merged_adapters`` list is non-empty, so the forward is ``x @ (W +
delta)^T``: one matmul instead of three. Written by hand because PEFT has no out-of-place merge.

The merged tensors are kept between sampling calls until :meth:`MergedLora.invalidate` (the
sampler's ``on_update``) says the adapter changed; the cost is one extra copy of the adapted
weights in memory.
"""

from __future__ import annotations

import contextlib

import torch


def lora_layers(model) -> list:
    """PEFT LoRA layers whose base layer has a plain ``weight`` (Linear, Conv1D)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [m for m in model.modules()
            if isinstance(m, LoraLayer) and isinstance(getattr(m.get_base_layer(), "weight", None), torch.Tensor)
            and hasattr(m, "get_delta_weight") and not getattr(m, "lora_magnitude_vector", None)]


class MergedLora:
    """Swap merged weights in and out of a PEFT LoRA model (a no-op for other models).

    >>> merged = MergedLora(policy.model)  # doctest: +SKIP
    >>> with merged.active():  # doctest: +SKIP
    ...     out = policy.forward(...)  # LoRA folded into the weights  # doctest: +SKIP
    >>> merged.invalidate()  # after an optimiser step  # doctest: +SKIP
    """

    def __init__(self, model, enabled: bool = True):
        # (off for a sharded model: its layers' weights are FSDP's to swap in and out, trice.runtime.sharding)
        self.layers = lora_layers(model) if enabled else []
        self._merged: list[torch.Tensor] | None = None

    def invalidate(self) -> None:
        self._merged = None

    def _build(self) -> list[torch.Tensor]:
        merged = []
        with torch.no_grad():
            for layer in self.layers:
                weight = layer.get_base_layer().weight
                delta = sum((layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A),
                            torch.zeros((), dtype=weight.dtype, device=weight.device))
                merged.append((weight + delta.to(weight.dtype)).detach())
        return merged

    @contextlib.contextmanager
    def active(self):
        if not self.layers or any(layer.merged_adapters for layer in self.layers):
            yield  # nothing to merge, or PEFT merged it itself
            return
        if self._merged is None:
            self._merged = self._build()
        originals = []
        try:
            for layer, merged in zip(self.layers, self._merged):
                weight = layer.get_base_layer().weight
                originals.append(weight.data)
                weight.data = merged
                layer.merged_adapters.extend(a for a in layer.active_adapters if a in layer.lora_A)
            yield
        finally:
            for layer, original in zip(self.layers, originals):
                layer.get_base_layer().weight.data = original
                layer.merged_adapters.clear()


def merged_named_weights(model):
    """``(name, weight)`` for every weight of ``model`` under the plain transformers names, with LoRA merged
    into each adapted weight (W + delta, computed out of place: the frozen weight is not written): what a
    separate inference engine (vLLM) loads. A model without LoRA gives its parameters as they are."""
    modules = dict(model.named_modules())
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        clean = name.removeprefix("base_model.model.").replace(".base_layer", "")
        layer = modules.get(name[: -len(".base_layer.weight")]) if name.endswith(".base_layer.weight") else None
        if layer is None:
            yield clean, p.detach()
            continue
        with torch.no_grad():
            delta = sum((layer.get_delta_weight(a) for a in layer.active_adapters if a in layer.lora_A),
                        torch.zeros((), dtype=p.dtype, device=p.device))
            yield clean, (p + delta.to(p.dtype)).detach()
