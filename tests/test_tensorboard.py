"""TensorBoard logging: the event files written hold each record's numbers at step = sequences.

tensorboardX has no reader, so the files are parsed here from the TFRecord framing (length,
masked crc32c of the length, payload, masked crc32c of the payload), which also checks them.
"""

from __future__ import annotations

import math
import struct
import sys

import numpy as np
import pytest

from optodsl.errors import DataError
from optodsl.train.tensorboard import TensorBoardLogger

tensorboardX = pytest.importorskip("tensorboardX")
from tensorboardX.proto.event_pb2 import Event, SessionLog  # noqa: E402
from tensorboardX.record_writer import masked_crc32c  # noqa: E402


def _events(log_dir):
    """Every event of every event file in `log_dir`, files in name order."""
    files = sorted(log_dir.glob("events.out.tfevents.*"))
    assert files, f"no event file in {log_dir}"
    events = []
    for path in files:
        data, at = path.read_bytes(), 0
        while at < len(data):
            header = data[at:at + 8]
            (length,) = struct.unpack("<Q", header)
            (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
            payload = data[at + 12:at + 12 + length]
            (payload_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
            assert header_crc == masked_crc32c(header) and payload_crc == masked_crc32c(payload), f"bad crc in {path}"
            events.append(Event.FromString(payload))
            at += 16 + length
        assert at == len(data), f"{path} ends inside a record"
    return events


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for event in _events(log_dir):
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


RECORDS = [
    {"sequences": 0, "step": 0, "train/loss": 1.6, "train/accuracy": 0.2, "heldout_labels/accuracy": 0.25,
     "train_loss": None, "train_accuracy": None},
    {"sequences": 640, "step": 20, "train/loss": 0.7, "train/accuracy": 0.5, "heldout_labels/accuracy": 0.5,
     "train/induction/L2.H3": 0.125, "train_loss": 0.69, "train_accuracy": 0.5, "status": "ok", "finite": True},
]


def test_records_become_scalars_at_step_equal_to_sequences(tmp_path):
    dirs = [tmp_path / "a" / "tensorboard", tmp_path / "b" / "tensorboard"]
    logger = TensorBoardLogger(dirs)
    for record in RECORDS:
        logger.log(0, record)
    logger.log(1, {"sequences": 320, "step": 10, "test_classes/loss": 2.5})
    logger.flush()
    logger.close()

    got = _scalars(dirs[0])
    assert set(got) == {"train/loss", "train/accuracy", "heldout_labels/accuracy", "train/induction/L2.H3",
                        "train_loss", "train_accuracy"}
    assert got["train/loss"] == [(0, pytest.approx(1.6)), (640, pytest.approx(0.7))]
    assert got["heldout_labels/accuracy"] == [(0, 0.25), (640, 0.5)]
    assert got["train/induction/L2.H3"] == [(640, 0.125)]
    assert got["train_loss"] == [(640, pytest.approx(0.69))]
    assert _scalars(dirs[1]) == {"test_classes/loss": [(320, 2.5)]}


def test_numpy_numbers_and_nan_are_logged(tmp_path):
    np = pytest.importorskip("numpy")
    logger = TensorBoardLogger([tmp_path])
    logger.log(0, {"sequences": 32, "step": 1, "train/loss": np.float32(0.5), "train/accuracy": np.int64(1),
                   "train_loss": float("nan")})
    logger.close()
    got = _scalars(tmp_path)
    assert got["train/loss"] == [(32, 0.5)] and got["train/accuracy"] == [(32, 1.0)]
    assert math.isnan(got["train_loss"][0][1])


def test_a_resumed_run_purges_the_steps_it_writes_again(tmp_path):
    first = TensorBoardLogger([tmp_path])
    for record in RECORDS:
        first.log(0, record)
    first.close()
    resumed = TensorBoardLogger([tmp_path])
    resumed.log(0, {"sequences": 640, "step": 20, "train/loss": 0.6})
    resumed.close()

    files = sorted(tmp_path.glob("events.out.tfevents.*"))
    assert len(files) == 2, "the resumed logger must not overwrite the first event file"
    starts = [e.step for e in _events(tmp_path) if e.session_log.status == SessionLog.START]
    assert starts == [0, 640]
    assert _scalars(tmp_path)["train/loss"] == [(0, pytest.approx(1.6)), (640, pytest.approx(0.7)),
                                                (640, pytest.approx(0.6))]


def test_without_tensorboardx_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(DataError) as err:
        TensorBoardLogger([tmp_path / "tensorboard"])
    assert 'pip install "optodsl[tensorboard]"' in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "tensorboard"))


def test_opto_run_with_tensorboard_writes_events_beside_each_run(tmp_path):
    from optodsl.experiment import run_experiment

    spec = tmp_path / "s.opto"
    spec.write_text("sweep h in [1, 2]\nablate L2.* except H$h\n")
    settings = {"train.sequences": 640, "eval.every": 320, "eval.sequences": 64, "data.total_classes": 200}
    results = run_experiment(spec, tmp_path / "out", settings, progress=False, tensorboard=True)
    for res in results:
        scalars = _scalars(res.run_dir / "tensorboard")
        expected = [(m["sequences"], m["train/accuracy"]) for m in res.metrics]
        assert [step for step, _ in scalars["train/accuracy"]] == [s for s, _ in expected] == [0, 320, 640]
        np.testing.assert_allclose([v for _, v in scalars["train/accuracy"]], [v for _, v in expected], rtol=1e-6)
