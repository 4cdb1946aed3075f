"""Checkpoint files: round trip, and clear errors for missing, corrupt or mismatched files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from invispose.errors import ModelError
from invispose.model.checkpoint import (
    DEFAULT_CHECKPOINT,
    FORMAT_VERSION,
    export_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from invispose.model.inputs import inputs_from_batch
from invispose.model.metrics import MeanPoseStats
from invispose.model.network import PoseNet, PoseNetConfig
from invispose.schemas import WindowBatch

SMALL = PoseNetConfig(
    n_heads=4, n_subcarriers=8, d_link=16, d_model=32, n_link_layers=1, n_decoder_layers=1
)


def test_round_trip_gives_the_same_outputs(
    tmp_path: Path, make_batch: Callable[..., WindowBatch]
) -> None:
    torch.manual_seed(3)
    model = PoseNet(SMALL).eval()
    batch = make_batch(1, 4)
    stats = MeanPoseStats()
    stats.update(batch.keypoints_m, batch.person_mask, batch.room_size_m)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, mean_pose=stats, metadata={"a": 1})
    loaded = load_model(path)
    assert loaded.model.cfg == SMALL
    assert not loaded.model.training
    assert loaded.metadata["a"] == 1
    assert loaded.mean_pose is not None and loaded.mean_pose.n_persons == stats.n_persons
    with torch.inference_mode():
        before, after = model(inputs_from_batch(batch)), loaded.model(inputs_from_batch(batch))
    torch.testing.assert_close(before.keypoints_m, after.keypoints_m, rtol=0, atol=0)
    torch.testing.assert_close(before.presence_logit, after.presence_logit, rtol=0, atol=0)


def test_export_drops_the_training_state_and_keeps_the_model(
    tmp_path: Path, make_batch: Callable[..., WindowBatch]
) -> None:
    torch.manual_seed(4)
    model = PoseNet(SMALL).eval()
    optimizer = torch.optim.AdamW(model.parameters())
    batch = make_batch(2, 4)
    model(inputs_from_batch(batch)).keypoints_m.sum().backward()
    optimizer.step()  # optimiser state as large as the weights twice over
    stats = MeanPoseStats()
    stats.update(batch.keypoints_m, batch.person_mask, batch.room_size_m)
    train_state = {"step": 120, "optimizer": optimizer.state_dict()}
    source = save_checkpoint(tmp_path / "best.pt", model, mean_pose=stats,
                             train_state=train_state, metadata={"val": {"mpjpe_mm": 900.0}})
    shipped = export_checkpoint(source, tmp_path / "ship.pt")
    assert shipped.stat().st_size < 0.6 * source.stat().st_size
    loaded = load_model(shipped)
    assert loaded.train_state is None
    assert loaded.metadata["step"] == 120 and loaded.metadata["val"] == {"mpjpe_mm": 900.0}
    assert loaded.mean_pose is not None and loaded.mean_pose.n_persons == stats.n_persons
    with torch.inference_mode():
        before, after = model(inputs_from_batch(batch)), loaded.model(inputs_from_batch(batch))
    torch.testing.assert_close(before.keypoints_m, after.keypoints_m, rtol=0, atol=0)


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no checkpoint at .*nope.pt.*invispose train"):
        load_model(tmp_path / "nope.pt")
    assert DEFAULT_CHECKPOINT == Path("models/invispose-space.pt")


def test_shipped_weights_fit_the_network_and_carry_their_baseline() -> None:
    path = Path(__file__).resolve().parents[3] / DEFAULT_CHECKPOINT
    assert path.stat().st_size <= 20e6
    loaded = load_model(path)  # raises if the weights no longer fit PoseNet
    assert loaded.model.cfg.space_inputs  # the space model: every router of a hop at once
    assert loaded.train_state is None  # shipped without the optimiser
    assert loaded.mean_pose is not None and loaded.mean_pose.n_persons > 1000


def test_corrupt_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ModelError, match="corrupt"):
        load_model(path)
    good = save_checkpoint(tmp_path / "good.pt", PoseNet(SMALL))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(truncated)


def test_foreign_and_future_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelError, match="not an InvisPose"):
        read_checkpoint(foreign)
    path = save_checkpoint(tmp_path / "m.pt", PoseNet(SMALL))
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(ModelError, match="format version"):
        load_model(path)


def test_weights_that_do_not_fit_the_hyperparameters(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.pt", PoseNet(SMALL))
    payload = torch.load(path, weights_only=True)
    payload["hyperparameters"]["d_model"] = 48
    torch.save(payload, path)
    with pytest.raises(ModelError, match="does not fit"):
        load_model(path)
    payload["hyperparameters"]["colour"] = "red"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="unknown model hyperparameters: colour"):
        load_model(path)
