"""trice: Training Chain-of-Thought via Latent-Variable Inference (TRICE, Phan et al. 2023).

``import trice`` imports nothing heavy: ``TrainConfig``, ``TriceError`` and ``train`` load on first use
(``train`` brings torch and transformers). docs/ARCHITECTURE.md draws the packages.

>>> from trice import TrainConfig, train  # doctest: +SKIP
>>> summary = train(TrainConfig(params="lora", task="gym/chain_sum", steps=100))  # doctest: +SKIP
"""

__version__ = "0.2.0"

from . import _aliases

_aliases.install()  # the module paths of 0.1 (trice.modeling, trice.generation.sampler, ...) keep working


def __getattr__(name):
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "TriceError":
        from .errors import TriceError

        return TriceError
    raise AttributeError(f"module 'trice' has no attribute {name!r}")


def train(config=None, **kwargs):
    """Run one training (see :func:`trice.training.loop.train`)."""
    from .training.loop import train as _train

    return _train(config, **kwargs)


__all__ = ["TrainConfig", "TriceError", "train", "__version__"]
