"""The model on the physical simulator's windows: sources, padded mixed hardware, evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from invispose.model.checkpoint import save_checkpoint
from invispose.model.evaluate import evaluate_batches, evaluate_checkpoint, simulator_batches
from invispose.model.inputs import inputs_from_batch
from invispose.model.loss import LossWeights, set_loss, targets_from_batch
from invispose.model.metrics import MeanPoseStats
from invispose.model.network import PoseNet, PoseNetConfig
from invispose.model.train import DataConfig, SimulatorSource, TrainConfig, train
from invispose.sim.dataset import generate_batch

SMALL = PoseNetConfig(d_link=16, d_model=32, n_heads=4, n_link_layers=1, n_decoder_layers=1)


def test_prefetching_worker_gives_the_same_batches_as_inline() -> None:
    inline = SimulatorSource("train", 7, 4, DataConfig(workers=0))
    worker = SimulatorSource("train", 7, 4, DataConfig(workers=1, prefetch_depth=1))
    try:
        for step in (0, 1, 3):
            a, b = inline.batch(step), worker.batch(step)
            np.testing.assert_array_equal(a.amplitude, b.amplitude)
            np.testing.assert_array_equal(a.keypoints_m, b.keypoints_m)
        assert not np.array_equal(inline.batch(0).amplitude, inline.batch(1).amplitude)
    finally:
        inline.close()
        worker.close()


def test_model_trains_on_mixed_hardware_batches() -> None:
    batch = generate_batch("train", 3, 12)
    links = batch.link_mask.sum(1)
    assert links.min() < links.max()  # e.g. a 1-link ESP32 next to a multi-antenna NIC, padded
    torch.manual_seed(0)
    model = PoseNet(SMALL)
    out = model(inputs_from_batch(batch))
    loss, terms = set_loss(out, targets_from_batch(batch), LossWeights())
    torch.autograd.backward(loss)
    assert all(math.isfinite(v) for v in terms.values())
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_evaluate_checkpoint_on_a_held_out_split(tmp_path: Path) -> None:
    torch.manual_seed(0)
    train = generate_batch("train", 1, 16)
    stats = MeanPoseStats()
    stats.update(train.keypoints_m, train.person_mask, train.room_size_m)
    path = save_checkpoint(tmp_path / "m.pt", PoseNet(SMALL), mean_pose=stats)
    result = evaluate_checkpoint(path, "cross-layout", seed=4, n_windows=24, batch_size=8)
    doc = result.to_json()
    assert (doc["split"], doc["seed"], doc["windows"]) == ("cross-layout", 4, 24)
    for column in (doc["model"], doc["baseline"]):
        assert column["mpjpe_mm"] is not None and column["mpjpe_mm"] > 0
        assert column["oks_ap"] is not None and 0.0 <= column["oks_ap"] <= 1.0
    assert "persons" not in doc
    # the same 24 windows, scoring only those with exactly one person
    singles = sum(int((b.person_mask.sum(1) == 1).sum())
                  for b in simulator_batches("cross-layout", 4, 24))
    assert 0 < singles < 24
    one = evaluate_checkpoint(path, "cross-layout", seed=4, n_windows=24, batch_size=8,
                              persons=1).to_json()
    assert (one["windows"], one["persons"]) == (singles, 1)
    assert one["baseline"]["count_accuracy"] in (0.0, 1.0)  # one count, right or wrong


def test_model_learns_to_count_people_from_simulated_csi(tmp_path: Path) -> None:
    # nobody or one person in front of an Intel 5300; the baseline always says one person
    cfg = TrainConfig.model_validate({
        "steps": 300, "batch_size": 32, "lr": 2e-3, "warmup_steps": 20, "val_every": 1000,
        "val_windows": 8, "checkpoint_every": 1000, "checkpoint": tmp_path / "last.pt",
        "best_checkpoint": None, "device": "cpu", "progress": False, "seed": 3, "num_threads": 1,
        "model": {"d_link": 32, "d_model": 64, "n_heads": 4, "n_link_layers": 1,
                  "n_decoder_layers": 1},
        "data": {"max_persons": 1, "hardware": "intel5300", "workers": 0},
    })
    result = train(cfg)  # fresh simulator windows every step
    test = generate_batch("same-layout", 12, 256, max_persons=1, hardware="intel5300")
    ours, baseline, _, _ = evaluate_batches(result.model, [test], result.mean_pose, None)
    assert baseline["count_accuracy"] > 0.6  # most windows hold one person
    assert ours["count_accuracy"] > baseline["count_accuracy"] + 0.04  # 0.82 vs 0.76 here
