"""Atomic, verified checkpoints under ``RUN_DIR/checkpoints/step-XXXXXXXX/``.

Each holds ``state.pt`` (trainable parameters, optimiser, scheduler, method state such as the
memory, the step, every RNG state and the metrics position) and ``manifest.json`` (step, file size
and SHA-256). A checkpoint is written into a temporary directory, fsynced, and renamed into place,
so a crash or a full disk mid-save leaves the previous checkpoints as they were. Loading verifies
the manifest and checksum and falls back to the newest good checkpoint, with a warning.

Written by hand because the state is trice's own (memory, samplers' generators, metrics position);
the tensors themselves are saved with ``torch.save``. With sharded weights (``--fsdp``) the parameters and
Adam's state go to ``shards/`` instead, written by every rank with ``torch.distributed.checkpoint`` (one file
per rank; it can be read back on another number of ranks), checksummed in the same manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

PREFIX = "step-"
SHARDS = "shards"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 3, sharded: dict | None = None,
                    world=None) -> Path:
    """Write ``state`` as checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints. ``sharded``: the
    sharded part of the state (``{"model": ..., "optim": ...}`` of DTensors), written by every rank of ``world``
    together; then every rank calls this, and rank 0 alone writes ``state``."""
    root = Path(directory)
    final = root / f"{PREFIX}{step:08d}"
    main = world is None or world.is_main
    # every rank writes its shard into the same temporary directory: its name cannot depend on the process
    tmp = root / (f".tmp-{PREFIX}{step:08d}" if sharded is not None else f".tmp-{PREFIX}{step:08d}-{os.getpid()}")
    if main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        if sharded is not None:
            import torch.distributed.checkpoint as dcp

            world.barrier()
            dcp.save(sharded, checkpoint_id=str(tmp / SHARDS))
            world.barrier()
        if main:
            files = {"state.pt": _write(tmp / "state.pt", _serialised(state))}
            if sharded is not None:
                files.update({f"{SHARDS}/{p.name}": _digest(p) for p in sorted((tmp / SHARDS).iterdir())})
            _write(tmp / "manifest.json", json.dumps({"step": step, "files": files}).encode())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(root)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if main:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if world is not None and sharded is not None:
        world.barrier()
    return final


def _serialised(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> dict:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": _sha256(data)}


def _digest(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": _sha256(data)}


def load_sharded(path: str | Path, template: dict) -> dict:
    """Read a checkpoint's ``shards/`` into ``template`` (the sharded state dict of the model and optimiser as
    they are now, on this run's ranks; every rank calls it)."""
    import torch.distributed.checkpoint as dcp

    dcp.load(template, checkpoint_id=str(Path(path) / SHARDS))
    return template


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def verify(path: Path) -> dict[str, Any]:
    """The checkpoint's state if its manifest and every file's size and checksum hold; ValueError naming the problem."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        files = manifest["files"]
        files["state.pt"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path.name}: missing or unreadable manifest ({exc})") from None
    data = b""
    for name, expected in files.items():
        try:
            content = (path / name).read_bytes()
        except OSError as exc:
            raise ValueError(f"{path.name}: cannot read {name} ({exc.strerror})") from None
        if len(content) != expected.get("bytes") or _sha256(content) != expected.get("sha256"):
            raise ValueError(f"{path.name}: {name} does not match its manifest (truncated or corrupted)")
        if name == "state.pt":
            data = content
    return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")  # not every rank on GPU 0


def load_latest(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies, warning about each newer one that does not."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, verify(path)
        except ValueError as exc:
            warnings.warn(f"skipping checkpoint {exc}; using an older one", RuntimeWarning, stacklevel=2)
    return None
