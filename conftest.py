"""pytest set-up for the whole repository (tests/conftest.py has the test suite's own fixtures).

The docstring examples of src/trice run as tests in the test process (``--doctest-modules``), beside
other tests in the same worker. Each one runs in its own temporary directory, which is also its
current directory (the examples write relative paths, as a user copying them would in theirs), with
the experiment trackers' settings pointed there: W&B offline with its files under that directory,
trackio's store there, the hub offline. So an example leaves nothing outside its directory (no
``/tmp/trice-demo`` shared by parallel workers, nothing in ``~/.cache/huggingface/trackio``) and
``os.environ``, the current directory and trackio's paths are as before once it ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_WANDB_DIRS = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")
_NOT_LOCAL = ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME",
              "TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID", "TRACKIO_PROJECT",
              "TRACKIO_WEBHOOK_URL")


def _doctest_text(item) -> str:
    return "\n".join(example.source for example in item.dtest.examples)


def _move_trackio_store(store: Path, monkeypatch) -> None:
    """trackio reads $TRACKIO_DIR once, on import, into module constants: point those (and the paths
    derived from them) at ``store`` for this example; monkeypatch puts them back after it."""
    try:
        import trackio  # noqa: F401  (imported before the variable is set: its constants stay the user's)
        from trackio import utils
    except ImportError:
        return
    old = Path(utils.TRACKIO_DIR)
    for module in [m for name, m in list(sys.modules.items()) if name.split(".")[0] == "trackio" and m is not None]:
        for attr, value in list(vars(module).items()):
            if attr.isupper() and isinstance(value, Path) and (value == old or old in value.parents):
                monkeypatch.setattr(module, attr, store / value.relative_to(old))


@pytest.fixture(autouse=True)
def _doctest_sandbox(request):
    """For docstring examples only: a private current directory and the trackers' files in it."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    tmp_path = request.getfixturevalue("tmp_path")
    monkeypatch = request.getfixturevalue("monkeypatch")
    text = _doctest_text(request.node).lower()
    for name in _NOT_LOCAL:
        monkeypatch.delenv(name, raising=False)
    if "trackio" in text:
        _move_trackio_store(tmp_path / "trackio", monkeypatch)
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave the doctest's capture of stdout alone
    for name in _WANDB_DIRS:
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    yield
    if "wandb" in text and "wandb" in sys.modules:
        # the W&B service process was started for this example, with its settings: stop it
        sys.modules["wandb"].teardown()
