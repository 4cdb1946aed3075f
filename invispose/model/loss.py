"""Set-prediction loss: Hungarian matching of person slots to true persons, then per-term losses.

Every window has K predicted slots and up to P true persons in any order. Slots are
matched to persons one-to-one by a cost of keypoint L1 and presence; unmatched slots learn
"nobody here", matched ones learn keypoints, keypoint confidence, fall and activity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from invispose.model.network import PoseOutput
from invispose.schemas import WindowBatch


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms and of the matching cost."""

    presence: float = 1.0
    # keypoint L1 is in metres (≈ 0.05–1): scaled up so it is not drowned by presence BCE
    keypoints: float = 5.0
    confidence: float = 0.5
    fall: float = 0.5
    activity: float = 0.5
    # matching cost = match_keypoints · mean |Δ| (m) − match_presence · p(presence).
    # Presence outweighs a metre of keypoint error: while the model cannot yet tell where
    # a person is, the slot that says "someone is here" still gets matched, so one slot
    # commits to each person and presence learns to count (with 0.5 the nearest slot
    # wins, each of K slots is right ~1/K of the time and presence never passes 0.5).
    match_keypoints: float = 1.0
    match_presence: float = 2.0
    # confidence target exp(−error / conf_sigma_m): 1 at a perfect joint, 1/e at this error
    conf_sigma_m: float = 0.1

    def to_dict(self) -> dict[str, float]:
        """Plain mapping for configs and checkpoints."""
        return asdict(self)


@dataclass(slots=True)
class Targets:
    """Ground truth of a batch as tensors."""

    keypoints_m: Tensor  # (B, P, J, 3)
    person_mask: Tensor  # (B, P) bool
    activity: Tensor  # (B, P) int64, −1 for empty slots
    falling: Tensor  # (B, P) bool


def targets_from_batch(batch: WindowBatch, device: torch.device | str = "cpu") -> Targets:
    """Ground-truth tensors of a WindowBatch."""
    return Targets(
        keypoints_m=torch.from_numpy(np.ascontiguousarray(batch.keypoints_m, np.float32)).to(
            device
        ),
        person_mask=torch.from_numpy(np.asarray(batch.person_mask, bool)).to(device),
        activity=torch.from_numpy(np.asarray(batch.activity, np.int64)).to(device),
        falling=torch.from_numpy(np.asarray(batch.falling, bool)).to(device),
    )


@dataclass(slots=True)
class Matching:
    """Matched (window, slot, person) triples, one per true person."""

    batch_idx: Tensor  # (M,) int64
    slot_idx: Tensor  # (M,) int64 predicted slot
    person_idx: Tensor  # (M,) int64 ground-truth slot


def hungarian_match(out: PoseOutput, targets: Targets, weights: LossWeights) -> Matching:
    """Match each true person to one predicted slot per window (minimum total cost)."""
    with torch.no_grad():
        pred = out.keypoints_m.detach().float()[:, :, None]  # (B, K, 1, J, 3)
        true = targets.keypoints_m[:, None]  # (B, 1, P, J, 3)
        kp_cost = (pred - true).abs().mean(dim=(-1, -2))  # (B, K, P)
        presence = torch.sigmoid(out.presence_logit.detach().float())[..., None]  # (B, K, 1)
        cost = weights.match_keypoints * kp_cost - weights.match_presence * presence  # (B, K, P)
        cost_np = cost.cpu().numpy()
        mask_np = targets.person_mask.cpu().numpy()  # (B, P)
    b_idx: list[int] = []
    s_idx: list[int] = []
    p_idx: list[int] = []
    for b in range(cost_np.shape[0]):
        persons = np.flatnonzero(mask_np[b])
        if persons.size == 0:
            continue
        rows, cols = linear_sum_assignment(cost_np[b][:, persons])
        b_idx.extend([b] * len(rows))
        s_idx.extend(rows.tolist())
        p_idx.extend(persons[cols].tolist())
    device = out.presence_logit.device

    def as_index(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.int64, device=device)

    return Matching(as_index(b_idx), as_index(s_idx), as_index(p_idx))


def set_loss(
    out: PoseOutput, targets: Targets, weights: LossWeights
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (scalar tensor) and its terms as floats for logging."""
    match = hungarian_match(out, targets, weights)
    presence_target = torch.zeros_like(out.presence_logit)  # (B, K)
    presence_target[match.batch_idx, match.slot_idx] = 1.0
    presence = F.binary_cross_entropy_with_logits(out.presence_logit.float(), presence_target)

    zero = out.presence_logit.sum() * 0.0
    keypoints = confidence = fall = activity = zero
    if match.batch_idx.numel() > 0:
        pred = out.keypoints_m[match.batch_idx, match.slot_idx].float()  # (M, J, 3)
        true = targets.keypoints_m[match.batch_idx, match.person_idx]  # (M, J, 3)
        keypoints = (pred - true).abs().mean()
        error_m = (pred.detach() - true).norm(dim=-1)  # (M, J)
        conf_target = torch.exp(-error_m / weights.conf_sigma_m)  # (M, J)
        conf_logit = out.conf_logit[match.batch_idx, match.slot_idx].float()  # (M, J)
        confidence = F.binary_cross_entropy_with_logits(conf_logit, conf_target)
        fall_target = targets.falling[match.batch_idx, match.person_idx].float()  # (M,)
        fall_logit = out.fall_logit[match.batch_idx, match.slot_idx].float()  # (M,)
        fall = F.binary_cross_entropy_with_logits(fall_logit, fall_target)
        act_target = targets.activity[match.batch_idx, match.person_idx]  # (M,)
        labelled = act_target >= 0
        if bool(labelled.any()):
            act_logit = out.activity_logit[match.batch_idx, match.slot_idx].float()  # (M, A)
            activity = F.cross_entropy(act_logit[labelled], act_target[labelled])

    total = (
        weights.presence * presence
        + weights.keypoints * keypoints
        + weights.confidence * confidence
        + weights.fall * fall
        + weights.activity * activity
    )
    terms = {
        "loss": float(total.detach()),
        "presence": float(presence.detach()),
        "keypoints_l1_m": float(keypoints.detach()),
        "confidence": float(confidence.detach()),
        "fall": float(fall.detach()),
        "activity": float(activity.detach()),
    }
    return total, terms
