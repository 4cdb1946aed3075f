"""Training: the model learns on a tiny synthetic set, resumes exactly, reads its config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from invispose.errors import ConfigError, ModelError
from invispose.model.checkpoint import load_model
from invispose.model.evaluate import evaluate_batches
from invispose.model.train import TrainConfig, load_train_config, lr_at, train
from invispose.schemas import WindowBatch

PROJECT_ROOT = Path(__file__).resolve().parents[3]
TINY_MODEL = {
    "n_subcarriers": 8,
    "n_heads": 4,
    "d_link": 32,
    "d_model": 64,
    "n_link_layers": 1,
    "n_decoder_layers": 2,
}


def tiny_config(tmp_path: Path, **changes: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "steps": 300,
        "batch_size": 32,
        "lr": 2e-3,
        "warmup_steps": 20,
        "val_every": 1000,
        "checkpoint_every": 1000,
        "checkpoint": tmp_path / "last.pt",
        "best_checkpoint": None,
        "device": "cpu",
        "progress": False,
        "model": TINY_MODEL,
    }
    values.update(changes)
    return TrainConfig.model_validate(values)


def test_model_learns_to_beat_the_mean_pose(
    tmp_path: Path,
    make_batch: Callable[..., WindowBatch],
    make_source: Callable[..., Any],
) -> None:
    cfg = tiny_config(tmp_path, seed=5)
    val = make_batch(999, 128)
    result = train(cfg, source=make_source(1, cfg.batch_size), val_batch=val)
    assert result.step == 300
    assert result.checkpoint == tmp_path / "last.pt"
    test = make_batch(2024, 256)
    ours, baseline, _, windows = evaluate_batches(result.model, [test], result.mean_pose, None)
    assert windows == 256
    assert ours["mpjpe_mm"] < 0.6 * baseline["mpjpe_mm"]
    assert ours["pck3d_150"] > baseline["pck3d_150"]
    assert ours["count_accuracy"] > baseline["count_accuracy"]
    # the saved checkpoint holds the same model and the baseline statistics
    loaded = load_model(tmp_path / "last.pt")
    again, _, _, _ = evaluate_batches(loaded.model, [test], result.mean_pose, None)
    assert again["mpjpe_mm"] == pytest.approx(ours["mpjpe_mm"], rel=1e-5)
    assert loaded.mean_pose is not None
    assert loaded.mean_pose.n_persons == result.mean_pose.n_persons


def test_space_model_learns_poses_from_floor_maps(
    tmp_path: Path,
    make_batch: Callable[..., WindowBatch],
    make_source: Callable[..., Any],
) -> None:
    cfg = tiny_config(tmp_path, seed=5, steps=200, model={**TINY_MODEL, "space_inputs": True})
    result = train(cfg, source=make_source(1, cfg.batch_size), val_batch=make_batch(999, 64))
    test = make_batch(2024, 256)
    ours, baseline, _, _ = evaluate_batches(result.model, [test], result.mean_pose, None)
    assert ours["root_error_m"]["median"] < 0.25 * baseline["root_error_m"]["median"]
    assert ours["mpjpe_mm"] < 0.5 * baseline["mpjpe_mm"]
    assert ours["count_accuracy"] > baseline["count_accuracy"]


def test_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path,
    make_batch: Callable[..., WindowBatch],
    make_source: Callable[..., Any],
) -> None:
    val = make_batch(998, 16)
    common = {"batch_size": 8, "warmup_steps": 0, "min_lr_ratio": 1.0, "seed": 11}
    straight = train(
        tiny_config(tmp_path / "a", steps=8, **common), source=make_source(2, 8), val_batch=val
    )
    half = tiny_config(tmp_path / "b", steps=4, **common)
    train(half, source=make_source(2, 8), val_batch=val)
    resumed = train(
        tiny_config(tmp_path / "b", steps=8, **common),
        resume=tmp_path / "b" / "last.pt",
        source=make_source(2, 8),
        val_batch=val,
    )
    assert resumed.step == 8
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    assert resumed.mean_pose.n_persons == straight.mean_pose.n_persons


def test_resume_refuses_other_hyperparameters(
    tmp_path: Path,
    make_batch: Callable[..., WindowBatch],
    make_source: Callable[..., Any],
) -> None:
    cfg = tiny_config(tmp_path, steps=1, batch_size=4)
    train(cfg, source=make_source(3, 4), val_batch=make_batch(3, 4))
    other = tiny_config(tmp_path, steps=2, batch_size=4, model={**TINY_MODEL, "d_model": 32})
    with pytest.raises(ModelError, match="other hyperparameters"):
        train(other, resume=tmp_path / "last.pt", source=make_source(3, 4))


def test_shipped_config_is_valid_and_mistakes_are_named(tmp_path: Path) -> None:
    cfg = load_train_config(PROJECT_ROOT / "configs" / "train.yaml", steps=10)
    assert cfg.steps == 10
    assert cfg.data.source == "sim"
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\nbatchsize: 3\n")
    with pytest.raises(ConfigError) as info:
        load_train_config(bad)
    assert ("batchsize", "Extra inputs are not permitted") in info.value.problems
    bad.write_text("model: {wide: 3}\n")
    with pytest.raises(ConfigError, match="wide"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_train_config(tmp_path / "missing.yaml")


def test_learning_rate_warms_up_then_decays(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1)
    assert lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0)
    assert lr_at(cfg, 55) == pytest.approx(0.55)
    assert lr_at(cfg, 100) == pytest.approx(0.1)
