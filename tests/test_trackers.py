"""--report-to: every numeric metric of metrics.jsonl reaches TensorBoard, W&B and trackio under the
same name, read back from what each library wrote (all offline: no network, no server)."""

import json
import socket
import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tiny import coin_task, make_tiny_lm
from trice import TrainConfig, train
from trice.errors import TriceError
from trice.artifacts.run_dir import RunDir
from trice.artifacts.trackers import NoTracker


def expected_points(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as the trackers should log metrics.jsonl: numbers only (bools as 0/1),
    "step" is the x-axis, a record without a step goes at the last step seen (0 at first)."""
    points, step = defaultdict(list), 0
    for record in records:
        step = record.get("step", step)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                points[key].append((step, float(value)))
    return dict(points)


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    """One tiny training run with --report-to tensorboard (steps, evaluations before and after)."""
    out = tmp_path_factory.mktemp("tb") / "run"
    model, tok = make_tiny_lm(0)
    train(TrainConfig(steps=2, batch_size=2, subsample=2, max_new_tokens=4, n_eval=2, threads=1, seed=0,
                      out=str(out), report_to="tensorboard"), model=model, tokenizer=tok, task=coin_task())
    return RunDir(out)


def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_holds_every_numeric_metric_of_metrics_jsonl(tensorboard_run):
    records = tensorboard_run.metrics()
    expected = expected_points(records)
    logged = read_tensorboard(tensorboard_run.path / "tensorboard")
    assert {"loss", "greedy_accuracy", "memory_coverage", "tokens_sampled"} <= set(expected)  # steps, evals, init
    assert set(logged) == set(expected)  # the same names, no more, no fewer
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], rel=1e-6, nan_ok=True), tag
    assert [s for s, _ in logged["greedy_accuracy"]] == [0, 2]  # before and after training


def test_tensorboard_resume_hides_the_steps_logged_again(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), report_to="tensorboard")
    with RunDir.create(config) as run:
        for step in (1, 2, 3):
            run.log({"step": step, "loss": float(step)})
    with RunDir.open(run.path) as resumed:  # as after a checkpoint at step 1
        for step in (2, 3, 4):
            resumed.log({"step": step, "loss": 10.0 * step})
    assert read_tensorboard(run.path / "tensorboard")["loss"] == [(1, 1.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    with RunDir.create(config) as again:  # a new run in the same directory starts over
        again.log({"step": 1, "loss": 5.0})
    assert read_tensorboard(run.path / "tensorboard")["loss"] == [(1, 5.0)]


# --- W&B, offline -------------------------------------------------------------------------------
def wandb_records(path: Path):
    """The records of a W&B transaction log (run-<id>.wandb). wandb 0.31 has no Python reader for it
    (its writer and reader live in the Go wandb-core), so this reads the format by hand: a 7-byte file
    header (":W&B", magic, version), then LevelDB-log chunks (crc32, length, type: 1 full, 2 first,
    3 middle, 4 last) in 32 KiB blocks whose tails shorter than a chunk header are padding."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    # wandb sets WANDB_SERVICE when it starts its service: recorded here so that the test leaves it unset
    monkeypatch.setenv("WANDB_SERVICE", "")
    monkeypatch.delenv("WANDB_SERVICE")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # leave pytest's capture of stdout alone
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def test_wandb_offline_run_holds_every_metric_and_resumes_the_same_run(tensorboard_run, tmp_path, offline_wandb):
    records = tensorboard_run.metrics()  # a real run's records, sent through RunDir.log
    with RunDir.create(TrainConfig(out=str(tmp_path / "run"), report_to="wandb", steps=2)) as run:
        run_id = run.tracker.run.id
        for record in records:
            run.log(record)
    assert (run.path / "wandb" / "trice_run_id").read_text().strip() == run_id
    import wandb

    wandb.teardown()  # finish() can return before wandb-core has written the file; its shutdown waits
    [log] = (run.path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    history, config, names = defaultdict(dict), {}, []
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item_key(i): json.loads(i.value_json) for i in record.history.item}
            history[row.pop("_step")].update({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "run":
            names.append(record.run.display_name)
            config.update({item_key(i): json.loads(i.value_json) for i in record.run.config.update})
    # W&B keeps one row per step: the metrics of all records at a step, a later one's value winning.
    expected = defaultdict(dict)
    for tag, points in expected_points(records).items():
        for step, value in points:
            expected[step][tag] = value
    assert sorted(history) == sorted(expected) == [0, 1, 2]
    for step in expected:
        assert history[step] == pytest.approx(expected[step], nan_ok=True), step
    assert names == ["run"] and config["report_to"] == "wandb" and config["steps"] == 2

    with RunDir.open(run.path) as resumed:  # trice train --resume: the same W&B run
        assert resumed.tracker.run.id == run_id


# --- trackio, local storage -------------------------------------------------------------------------
@pytest.fixture
def offline_trackio(tmp_path, monkeypatch):
    """trackio's local mode in tmp_path; any connection off this machine, host lookup or server socket
    is refused and recorded (in a list the test checks: trackio swallows errors in its threads)."""
    for name in ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_BUCKET_ID", "TRACKIO_DATASET_ID",
                 "TRACKIO_PROJECT", "TRACKIO_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    store = tmp_path / "trackio"
    monkeypatch.setenv("TRACKIO_DIR", str(store))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import trackio  # noqa: F401  (reads TRACKIO_DIR on first import; set it where it was read before)

    for module in [m for n, m in sys.modules.items() if n.startswith("trackio") and hasattr(m, "TRACKIO_DIR")]:
        monkeypatch.setattr(module, "TRACKIO_DIR", store)

    connect, bind, getaddrinfo = socket.socket.connect, socket.socket.bind, socket.getaddrinfo
    local, refused = ("127.0.0.1", "::1", "localhost"), []

    def refuse(what):
        refused.append(what)
        raise OSError(f"offline test: {what}")

    def guarded_connect(self, address):
        if isinstance(address, tuple) and address[0] not in local:
            refuse(f"connect {address}")
        return connect(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host is not None and host not in local:
            refuse(f"lookup {host}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_bind(self, address):
        if isinstance(address, tuple):  # an IP socket: a server
            refuse(f"bind {address}")
        return bind(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "bind", guarded_bind)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return store, refused


def test_trackio_local_run_holds_every_metric(tensorboard_run, tmp_path, offline_trackio):
    from trackio.sqlite_storage import SQLiteStorage

    store, refused = offline_trackio
    records = tensorboard_run.metrics()
    with RunDir.create(TrainConfig(out=str(tmp_path / "run"), report_to="trackio", steps=2)) as run:
        for record in records:
            run.log(record)
    assert (store / "trice.db").exists() and refused == []
    logs = SQLiteStorage.get_logs("trice", "run")
    logged = defaultdict(list)  # trackio keeps one row per record, like metrics.jsonl
    for row in logs:
        for key, value in row.items():
            if key not in ("step", "timestamp"):
                logged[key].append((row["step"], value))
    expected = expected_points(records)
    assert set(logged) == set(expected)
    for tag, points in expected.items():
        assert [s for s, _ in logged[tag]] == [s for s, _ in points], tag
        assert [v for _, v in logged[tag]] == pytest.approx([v for _, v in points], nan_ok=True), tag
    assert SQLiteStorage.get_run_config("trice", "run")["report_to"] == "trackio"
    assert not (run.path / "wandb").exists() and not (run.path / "tensorboard").exists()


# --- none, and a tracker that is not installed ------------------------------------------------
def test_report_to_none_writes_metrics_jsonl_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    with RunDir.create(TrainConfig(out=str(tmp_path / "run"))) as run:
        assert isinstance(run.tracker, NoTracker)
        run.log({"step": 1, "loss": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in run.path.iterdir()) == ["config.yaml", "metrics.jsonl"]
    assert run.metrics() == [{"step": 1, "loss": 0.5}]


@pytest.mark.parametrize("tracker, module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb"),
                                             ("trackio", "trackio")])
def test_a_missing_tracker_library_is_a_one_line_error(tmp_path, monkeypatch, tracker, module):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(TriceError) as error:
        RunDir.create(TrainConfig(out=str(tmp_path / "run"), report_to=tracker))
    message = str(error.value)
    assert "\n" not in message and f"--report-to {tracker}" in message
    assert "pip install 'trice-cot[trackers]'" in message and f"pip install {module.split('.')[-1]}" in message


def test_other_ranks_open_no_tracker(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # opening one would fail
    run = RunDir.create(TrainConfig(out=str(tmp_path / "run"), report_to="wandb"), writes=False)
    run.log({"step": 1, "loss": 0.5})
    assert isinstance(run.tracker, NoTracker) and not (tmp_path / "run").exists()
