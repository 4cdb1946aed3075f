"""Set loss: Hungarian matching of slots to persons, and the loss terms on matched slots."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from invispose.model.inputs import inputs_from_batch
from invispose.model.loss import LossWeights, hungarian_match, set_loss, targets_from_batch
from invispose.model.network import PoseNet, PoseNetConfig, PoseOutput
from invispose.schemas import WindowBatch


def perfect_output(batch: WindowBatch, slot_of: list[dict[int, int]]) -> PoseOutput:
    """Outputs that put person p of window b exactly into slot slot_of[b][p]."""
    n, k = batch.person_mask.shape
    keypoints = torch.full((n, k, 17, 3), 50.0)  # empty slots far away
    presence = torch.full((n, k), -12.0)
    fall = torch.full((n, k), -12.0)
    activity = torch.zeros(n, k, 6)
    for b, mapping in enumerate(slot_of):
        for p, slot in mapping.items():
            keypoints[b, slot] = torch.from_numpy(batch.keypoints_m[b, p])
            presence[b, slot] = 12.0
            fall[b, slot] = 12.0 if batch.falling[b, p] else -12.0
            activity[b, slot, int(batch.activity[b, p])] = 20.0
    conf = torch.full((n, k, 17), 12.0)
    return PoseOutput(presence, keypoints, conf, fall, activity)


def test_matching_finds_persons_in_any_slot(make_batch: Callable[..., WindowBatch]) -> None:
    batch = make_batch(5, 8, max_count=4)
    rng = np.random.default_rng(0)
    slot_of = []
    for b in range(len(batch)):
        persons = np.flatnonzero(batch.person_mask[b])
        slots = rng.permutation(4)[: len(persons)]
        slot_of.append(dict(zip(persons.tolist(), slots.tolist(), strict=True)))
    out = perfect_output(batch, slot_of)
    match = hungarian_match(out, targets_from_batch(batch), LossWeights())
    found: dict[int, dict[int, int]] = {}
    triples = zip(match.batch_idx, match.slot_idx, match.person_idx, strict=True)
    for b, s, p in triples:
        found.setdefault(int(b), {})[int(p)] = int(s)
    assert match.batch_idx.numel() == int(batch.person_mask.sum())
    assert {b: m for b, m in found.items()} == {b: m for b, m in enumerate(slot_of) if m}


def test_perfect_prediction_has_near_zero_loss(make_batch: Callable[..., WindowBatch]) -> None:
    batch = make_batch(6, 8, max_count=3)
    slot_of = [
        {p: i for i, p in enumerate(np.flatnonzero(batch.person_mask[b]).tolist())}
        for b in range(len(batch))
    ]
    _, terms = set_loss(perfect_output(batch, slot_of), targets_from_batch(batch), LossWeights())
    assert terms["keypoints_l1_m"] == pytest.approx(0.0, abs=1e-6)
    assert terms["presence"] < 1e-4
    assert terms["fall"] < 1e-4 and terms["activity"] < 1e-4
    assert terms["confidence"] < 1e-4  # confidence target is 1 at zero error


def test_wrong_keypoints_cost_their_l1(make_batch: Callable[..., WindowBatch]) -> None:
    batch = make_batch(7, 4, max_count=1)
    batch.person_mask[:] = False
    batch.person_mask[:, 0] = True
    out = perfect_output(batch, [{0: 2}] * 4)
    out.keypoints_m[:, 2] += torch.tensor([0.3, 0.0, 0.0])
    _, terms = set_loss(out, targets_from_batch(batch), LossWeights())
    assert terms["keypoints_l1_m"] == pytest.approx(0.1, rel=1e-5)  # 0.3 m on one of 3 axes


def test_empty_windows_only_train_presence(make_batch: Callable[..., WindowBatch]) -> None:
    batch = make_batch(8, 4)
    batch.person_mask[:] = False
    torch.manual_seed(0)
    model = PoseNet(
        PoseNetConfig(n_heads=4, n_subcarriers=8, d_link=16, d_model=32, n_decoder_layers=1)
    )
    out = model(inputs_from_batch(batch))
    loss, terms = set_loss(out, targets_from_batch(batch), LossWeights())
    assert terms["keypoints_l1_m"] == 0.0 and terms["presence"] > 0
    loss.backward()
    head = model.presence_head.weight.grad
    assert head is not None and head.abs().sum() > 0
