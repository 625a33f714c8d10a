"""Which torch engine ``engine="auto"`` runs on a GPU: the one ``make gpu-check`` measured fastest on that GPU.

On a CPU the slot engine wins by measurement (benchmarks/PROFILE.md) and ``auto`` picks it. On CUDA the answer
depends on the GPU and on whether CUDA graphs pay there, so it is read from a measurement instead of assumed:
``benchmarks/gpu_check.py`` times the plain path and the compiled slot engine at two row counts and
:func:`record` keeps, per GPU name, the engine that :func:`decide` picks from those figures. Without a
measurement for the GPU at hand ``auto`` keeps the plain path (the slot engine's eager step is launch-bound on
an H100) and says so, once per process.

The file is ``$TRICE_ENGINE_CHOICES``, or ``~/.cache/trice/engine-choices.json``.

>>> decide({"plain": {64: 3376, 256: 12817}, "compiled": {64: 21000, 256: 40000}})
'compiled'
>>> decide({"plain": {64: 3376, 256: 12817}, "compiled": {64: 4000, 256: 9000}})  # must win at every size
'plain'
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DEFAULT = "plain"  # on CUDA without a measurement
_said: set = set()
_read: dict = {}  # path -> (modification time, the choices read from it)


def choices_path() -> Path:
    return Path(os.environ.get("TRICE_ENGINE_CHOICES") or Path.home() / ".cache" / "trice" / "engine-choices.json")


def decide(tokens_per_s: dict) -> str:
    """``"compiled"`` when the compiled slot engine sampled more tokens/s than the plain path at every row count
    measured for both, else ``"plain"``. ``tokens_per_s``: ``{engine: {rows: tokens/s}}``."""
    plain, compiled = tokens_per_s.get("plain", {}), tokens_per_s.get("compiled", {})
    rows = set(plain) & set(compiled)
    return "compiled" if rows and all(compiled[r] > plain[r] for r in rows) else "plain"


def record(device_name: str, tokens_per_s: dict, path: Path | None = None) -> dict:
    """Keep the choice for ``device_name`` (what ``torch.cuda.get_device_name`` says) with the figures behind it."""
    path = path or choices_path()
    table = json.loads(path.read_text()) if path.exists() else {}
    entry = {"engine": decide(tokens_per_s), "tokens_per_s": {e: {str(r): v for r, v in by.items()}
                                                              for e, by in tokens_per_s.items()},
             "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": "benchmarks/gpu_check.py"}
    table[device_name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    return entry


def _table(path: Path) -> dict:
    """The recorded choices, read again only when the file changed (``auto`` asks at every sampling call)."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    if _read.get(path, (None,))[0] != stamp:
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        _read[path] = (stamp, table if isinstance(table, dict) else {})
    return _read[path][1]


def cuda_engine(device_name: str, path: Path | None = None) -> tuple[str, str]:
    """(engine, why) for a CUDA device of this name: its recorded measurement, or the plain path without one."""
    path = path or choices_path()
    entry = _table(path).get(device_name)
    if not entry or entry.get("engine") not in ("plain", "compiled"):
        return DEFAULT, f"no measurement for {device_name} in {path}: make gpu-check measures one"
    figures = "; ".join(f"{e} " + ", ".join(f"{v:,.0f} tok/s at {r} rows" for r, v in by.items())
                        for e, by in entry.get("tokens_per_s", {}).items() if e in ("plain", "compiled"))
    return entry["engine"], f"measured on {device_name} by make gpu-check ({entry.get('measured', '?')}): {figures}"


def device_name(device) -> str:
    """What ``torch.cuda.get_device_name`` says of ``device`` (the key of the choices), or a placeholder where
    CUDA cannot answer."""
    import torch

    try:
        return torch.cuda.get_device_name(device)
    except (AssertionError, RuntimeError):  # a torch without CUDA (a test's stand-in device)
        return "unknown CUDA device"


def say_once(engine: str, why: str) -> None:
    """One line on stderr, the first time a process picks ``engine`` for this reason."""
    if (engine, why) not in _said:
        _said.add((engine, why))
        print(f"trice: engine auto -> {engine} ({why})", file=sys.stderr)
