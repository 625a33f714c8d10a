"""Fully sharded data parallelism (``--fsdp``): every rank holds 1/N of the trainable parameters, their
gradients and Adam's state (FSDP2, ``torch.distributed.fsdp.fully_shard``), as TRL, OpenRLHF and verl train
large policies. What trice needs beyond wrapping the model, and why:

- **Gradients are summed, not averaged**, across ranks (each rank scores its share of a step's sequences and
  the loss is the global sum): every FSDP unit divides by 1 and reduces by sum (``set_gradient_divide_factor``
  and ``set_force_sum_reduction_for_comms``, which are per unit, not recursive; the factor alone fails on
  gloo). So the update is the single-process update (up to float summation order).
- **Every rank runs the same forwards**: FSDP gathers each unit's weights in its forward, a collective, so
  a rank with fewer sequences to score runs zero-weight dummy chunks (:func:`chunks_everywhere`).
- **Sampling gathers the weights once** (:func:`gathered`): each rank decodes its own rows for as many steps
  as they need, which no collective can follow; so the units are unsharded for the whole sampling call
  (peak: one full copy of the weights per rank, in the compute dtype), then sharded again.
- **Checkpoints and the final policy** go through ``torch.distributed.checkpoint``: each rank writes its shard
  (and can be read back on another number of ranks); the final policy is gathered whole on rank 0.
Written by hand because no library connects FSDP with trice's sampling and bookkeeping; the sharding itself
is PyTorch's.
"""

from __future__ import annotations

import contextlib

import torch


def fsdp_modules(model) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_sharded(model) -> bool:
    return bool(model is not None and fsdp_modules(model))


def shard(model, device: torch.device, compute_dtype: torch.dtype | None = None):
    """``fully_shard`` each decoder layer, then the whole model (the embeddings, final norm and LM head), on
    a 1-D mesh of every rank; ``compute_dtype`` (e.g. bfloat16): the weights are gathered and used in it while
    the stored shards, gradients and Adam's state stay in the model's dtype (mixed precision)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs = {"mesh": mesh}
    if compute_dtype is not None and compute_dtype != next(model.parameters()).dtype:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    for unit in fsdp_modules(model):  # sum, not mean, over ranks (see the module's docstring)
        unit.set_gradient_divide_factor(1.0)
        unit.set_force_sum_reduction_for_comms(True)
    return model


def decoder_layers(model) -> list:
    """The model's transformer blocks (``model.model.layers`` in transformers' decoder models, found by name
    under a PEFT wrapper too)."""
    for name, module in model.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList) and len(module):
            return list(module)
    raise ValueError("cannot find the model's decoder layers to shard")


@contextlib.contextmanager
def gathered(model):
    """Every unit's weights gathered for the block (one all-gather per unit, on every rank together), with no
    collective in the forwards inside it: each rank may run as many as its own rows need. A no-op for a model
    that is not sharded."""
    units = fsdp_modules(model)
    if not units:
        yield
        return
    root = model  # (the module sharded last, by shard(): its units are every unit below it)
    root.set_reshard_after_forward(False)  # (recursive)
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
        for unit in units:  # FSDP's defaults: layers reshard after their forward, the root keeps its weights
            unit.set_reshard_after_forward(unit is not root, recurse=False)


def chunks_everywhere(chunks: int, world) -> int:
    """The most chunks any rank scores this step: every rank must run as many forwards and backwards."""
    if world.size == 1:
        return chunks
    import torch.distributed as dist

    count = torch.tensor([chunks], device=world.collective_device())
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    return int(count.item())


def local_bytes(model, optimizer) -> dict[str, int]:
    """The bytes this rank holds of the trainable parameters, their gradients and the optimiser's state (the
    local shards of sharded tensors)."""
    def size(t) -> int:
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size()

    params = [p for p in model.parameters() if p.requires_grad]
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.dim()]
    return {"parameters": sum(size(p) for p in params),
            "gradients": sum(size(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(size(v) for v in state)}


def squared_norm(tensors, world) -> float:
    """sum of |t|^2 over ``tensors`` (gradients, possibly sharded), over every rank's shard."""
    local = sum(float((t.to_local() if hasattr(t, "to_local") else t).double().pow(2).sum()) for t in tensors)
    if world.size == 1:
        return local
    total = torch.tensor([local], dtype=torch.float64, device=world.collective_device())
    world.all_reduce_([total])
    return float(total.item())


def full_state_dict(model, trainable_only: bool = False, everywhere: bool = False) -> dict:
    """The whole model's state dict, gathered on rank 0 in CPU memory (empty elsewhere), or on every rank where
    it is (``everywhere``: each rank's vLLM engine needs the weights); every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=not everywhere,
                                                                ignore_frozen_params=trainable_only))
