"""Atomic, verified checkpoints under ``RUN_DIR/checkpoints/step-XXXXXXXX/``.

Each holds ``state.pt`` (trainable parameters, optimiser, scheduler, method state such as the
memory, the step, every RNG state and the metrics position) and ``manifest.json`` (step, file size
and SHA-256). A checkpoint is written into a temporary directory, fsynced, and renamed into place,
so a crash or a full disk mid-save leaves the previous checkpoints as they were. Loading verifies
the manifest and checksum and falls back to the newest good checkpoint, with a warning.

Written by hand because the state is trice's own (memory, samplers' generators, metrics position);
the tensors themselves are saved with ``torch.save``.
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


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``state`` as checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        with open(tmp / "state.pt", "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        manifest = {"step": step, "files": {"state.pt": {"bytes": len(data), "sha256": _sha256(data)}}}
        with open(tmp / "manifest.json", "w", encoding="utf-8") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def verify(path: Path) -> dict[str, Any]:
    """The checkpoint's state if its manifest and checksum hold; ValueError naming the problem."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        expected = manifest["files"]["state.pt"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path.name}: missing or unreadable manifest ({exc})") from None
    try:
        data = (path / "state.pt").read_bytes()
    except OSError as exc:
        raise ValueError(f"{path.name}: cannot read state.pt ({exc.strerror})") from None
    if len(data) != expected.get("bytes") or _sha256(data) != expected.get("sha256"):
        raise ValueError(f"{path.name}: state.pt does not match its manifest (truncated or corrupted)")
    return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")  # not every rank on GPU 0


def load_latest(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that verifies, warning about each newer one that does not."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, verify(path)
        except ValueError as exc:
            warnings.warn(f"skipping checkpoint {exc}; using an older one", RuntimeWarning, stacklevel=2)
    return None
