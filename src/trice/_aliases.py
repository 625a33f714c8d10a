"""The module paths of trice 0.1, before its modules moved into packages, as aliases of where each now
lives: ``import trice.model`` gives :mod:`trice.modeling`, with a DeprecationWarning. One table instead
of a shim file per old name (which would crowd the package's top level again)."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

OLD = {
    "trice.answer_likelihood": "trice.modeling.answer_likelihood",
    "trice.budget": "trice.training.budget",
    "trice.checkpoint": "trice.training.checkpoint",
    "trice.compare": "trice.experiments.compare",
    "trice.distributed": "trice.runtime.distributed",
    "trice.engine": "trice.generation.slot_engine",
    "trice.enumerable_soft": "trice.enumerable.soft",
    "trice.estimator": "trice.estimators.trice",
    "trice.evaluate": "trice.evaluation.accuracy",
    "trice.initialise": "trice.methods.initialisation",
    "trice.latent_estimators": "trice.estimators.likelihood",
    "trice.layout": "trice.modeling.layout",
    "trice.lora_merge": "trice.modeling.merged_lora",
    "trice.memory": "trice.methods.memory",
    "trice.methods.latent": "trice.methods.experimental.likelihood",
    "trice.methods.sampling": "trice.methods.k_samples",
    "trice.model": "trice.modeling",
    "trice.plain_sampler": "trice.generation.plain_engine",
    "trice.plots": "trice.experiments.plots",
    "trice.randomness": "trice.generation.draw",
    "trice.run": "trice.artifacts.run_dir",
    "trice.sampler": "trice.generation.sampler",
    "trice.scorer": "trice.modeling.scoring",
    "trice.stop_candidates": "trice.generation.stops",
    "trice.stopping": "trice.runtime.interrupts",
    "trice.tool_inserts": "trice.generation.tool_inserts",
    "trice.trackers": "trice.artifacts.trackers",
    "trice.trainer": "trice.training.loop",
    "trice.training_state": "trice.training.state",
    "trice.vllm_sampler": "trice.generation.vllm_sampler",
}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in OLD else None

    def create_module(self, spec):
        return None  # a blank module; exec_module puts the real one in its place

    def exec_module(self, module):
        name = module.__name__
        warnings.warn(f"{name} is now {OLD[name]}", DeprecationWarning, stacklevel=2)
        sys.modules[name] = importlib.import_module(OLD[name])  # the import system returns sys.modules[name]


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
