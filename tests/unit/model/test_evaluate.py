"""Evaluation glue: metrics of model and baseline, the JSON document, the table, the CLI."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from invispose.errors import ModelError
from invispose.model.checkpoint import save_checkpoint
from invispose.model.commands import register
from invispose.model.evaluate import (
    Evaluation,
    best_fall_threshold,
    calibrate_falls,
    calibrate_presence,
    evaluate_batches,
    evaluate_checkpoint,
    predict_arrays,
    take,
)
from invispose.model.metrics import MeanPoseStats, MetricAccumulator
from invispose.model.network import PoseNet, PoseNetConfig
from invispose.schemas import FloatArray, WindowBatch

LOCATION_KEYS = {"root_error_m", "root_relative_mpjpe_mm", "count_confusion",
                 "one_person_exactly_one", "persons", "windows", "by_routers", "by_motion"}
KEYS = {
    "mpjpe_mm", "pa_mpjpe_mm", "pck3d_150", "oks_ap", "ap50", "ap75",
    "count_accuracy", "fall_precision", "fall_recall",
}
SMALL = PoseNetConfig(
    n_heads=4, n_subcarriers=8, d_link=16, d_model=32, n_link_layers=1, n_decoder_layers=1
)


def front(points_m: FloatArray, room_size_m: FloatArray) -> FloatArray:
    """A plain front view for tests: u across the width, v down from the ceiling."""
    u = points_m[..., 0] / room_size_m[0]
    v = 1.0 - points_m[..., 2] / room_size_m[2]
    return np.stack([u, v], axis=-1)


def test_truth_scores_perfectly(make_batch: Callable[..., WindowBatch]) -> None:
    batch = make_batch(4, 32, max_count=3)
    acc = MetricAccumulator(project=front)
    presence = batch.person_mask.astype(np.float32)
    acc.update(
        presence, batch.keypoints_m, batch.falling.astype(np.float32),
        batch.keypoints_m, batch.person_mask, batch.falling, batch.room_size_m,
    )
    result = acc.result()
    assert set(result) == KEYS
    assert result["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert result["pck3d_150"] == 1.0
    assert result["oks_ap"] == pytest.approx(1.0)
    assert result["count_accuracy"] == 1.0
    assert result["fall_precision"] == 1.0 and result["fall_recall"] == 1.0


def test_model_and_baseline_side_by_side(make_batch: Callable[..., WindowBatch]) -> None:
    torch.manual_seed(0)
    model = PoseNet(SMALL)
    train = make_batch(5, 64)
    stats = MeanPoseStats()
    stats.update(train.keypoints_m, train.person_mask, train.room_size_m)
    test = make_batch(6, 40)
    parts = [take(test, np.arange(0, 25)), take(test, np.arange(25, 40))]
    ours, base, classic, windows = evaluate_batches(model, parts, stats, front, batch_size=16)
    assert windows == 40
    assert set(ours) == set(base) == set(classic) == KEYS | LOCATION_KEYS
    assert ours["persons"] == base["persons"] == int(test.person_mask.sum())
    # the baseline puts a body per true person at the mean place, never predicts a fall
    assert 0 < base["mpjpe_mm"] < 3000
    assert base["fall_recall"] == 0.0 or math.isnan(base["fall_recall"])
    expected_count = np.mean(test.person_mask.sum(1) == stats.majority_count)
    assert base["count_accuracy"] == pytest.approx(expected_count)
    doc = Evaluation("cross-layout", 3, windows, ours, base, classic).to_json()
    assert set(doc) == {"split", "seed", "windows", "model", "baseline", "classical"}
    assert set(doc["model"]) == set(doc["baseline"]) == set(doc["classical"])
    assert set(doc["classical"]["root_error_m"]) == {"median", "p90"}
    assert set(doc["model"]["by_routers"]) == {"1"}
    json.dumps(doc, allow_nan=False)  # undefined metrics are null, never NaN


def test_table_shows_all_three_columns() -> None:
    values = dict.fromkeys(KEYS, 0.5) | {"mpjpe_mm": 123.44, "fall_precision": math.nan}
    values |= {"root_error_m": {"median": 0.25, "p90": 0.5},
               "by_routers": {"2": {"root_error_m": {"median": 0.75, "p90": 1.0}}}}
    text = Evaluation("same-layout", 1, 10, values, values, values).table()
    assert "MPJPE (mm)" in text and "123.4" in text and "mean pose" in text
    assert "classical" in text and "0.250" in text and "2 rtr" in text and "0.750" in text
    assert "n/a" in text


def test_missing_checkpoint_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no checkpoint"):
        evaluate_checkpoint(tmp_path / "none.pt", "same-layout", 0, 10)
    path = save_checkpoint(tmp_path / "m.pt", PoseNet(SMALL))
    with pytest.raises(ModelError, match="unknown split"):
        evaluate_checkpoint(path, "kitchen", 0, 10)


def test_cli_eval_reports_a_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="invispose")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["eval", "--checkpoint", str(tmp_path / "x.pt"), "--split", "cross-hardware", "--json"]
    )
    assert (args.split, args.seed, args.windows, args.json) == ("cross-hardware", 0, 1000, True)
    assert args.func(args) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    train_args = parser.parse_args(["train", "--resume", "runs/x.pt", "--steps", "5"])
    assert train_args.config == Path("configs/train.yaml")
    assert train_args.resume == Path("runs/x.pt") and train_args.steps == 5
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--split", "train"])


def test_presence_calibration_picks_the_threshold_that_counts_best(
    make_batch: Callable[..., WindowBatch],
) -> None:
    torch.manual_seed(0)
    model = PoseNet(SMALL)
    batch = make_batch(8, 48)
    with torch.no_grad():  # every slot at presence 0.88: at 0.5 it always reports four
        model.presence_head.weight.zero_()
        model.presence_head.bias.fill_(2.0)
    truth = batch.person_mask.sum(1)
    assert 0 < np.mean(truth == 0) < 1
    threshold = calibrate_presence(model, batch)
    # reporting nobody beats reporting four: the first threshold above 0.88 is chosen
    assert threshold == pytest.approx(0.89)
    presence, _, _ = predict_arrays(model, batch)
    assert float(np.mean((presence >= 0.5).sum(1) == truth)) == pytest.approx(np.mean(truth == 0))
    assert float(model.presence_offset) == pytest.approx(np.log(threshold / (1 - threshold)))


def test_best_fall_threshold_separates_fall_windows() -> None:
    presence = np.array([[0.9, 0.1], [0.9, 0.9], [0.2, 0.9], [0.9, 0.1]])  # (N, K)
    fall = np.array([[0.27, 0.6], [0.12, 0.13], [0.9, 0.25], [0.12, 0.1]])
    truth = np.array([True, False, True, False])
    # only reported persons count: window 0's 0.6 and window 2's 0.9 are absent slots;
    # every threshold in (0.13, 0.25] finds both falls with no false alarm: the highest
    assert best_fall_threshold(presence, fall, truth) == pytest.approx(0.25)
    # window 1 falls too: 0.13 finds it as well, at precision 3/3 (window 3 stays below)
    assert best_fall_threshold(presence, fall, np.array([True, True, True, False])) == 0.13


def test_fall_calibration_moves_the_threshold_to_where_falls_are_reported(
    make_batch: Callable[..., WindowBatch],
) -> None:
    torch.manual_seed(0)
    model = PoseNet(SMALL)
    batch = make_batch(8, 48)
    batch.person_mask[:, 0] = True
    batch.falling[:] = False
    batch.falling[:, 0] = np.arange(len(batch)) % 3 > 0  # two thirds of the windows: a fall
    with torch.no_grad():  # everyone present, every fall probability 0.125: none at 0.5
        model.presence_head.weight.zero_()
        model.presence_head.bias.fill_(4.0)
        model.fall_head.weight.zero_()
        model.fall_head.bias.fill_(float(np.log(0.125 / 0.875)))
    # scores that cannot tell the windows apart: an alarm on every window is right 2/3 of
    # the time, precise enough, and finds every fall
    threshold = calibrate_falls(model, batch)
    assert threshold == pytest.approx(0.12)
    presence, _, fall = predict_arrays(model, batch)
    assert np.all((presence >= 0.5) & (fall >= 0.5))
    assert float(model.fall_offset) == pytest.approx(np.log(threshold / (1 - threshold)))
    # one fall in three: no threshold is precise enough, the offset stays where it is
    batch.falling[:, 0] = np.arange(len(batch)) % 3 == 0
    assert calibrate_falls(model, batch) == 0.5
    assert float(model.fall_offset) == pytest.approx(np.log(threshold / (1 - threshold)))
