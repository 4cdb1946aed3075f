"""The demo room offline: the shipped estimator on 40 s of `configs/default.yaml`'s scene.

Every simulated router of the config streams its frames through the runtime's Windower;
every `model.hop_s` (the runtime's hop) the hop's windows go to the estimator together, as
the space host sends them, and its detection to the space's Tracker. Prints, for the estimator's detections and for the
tracker's published persons (what `make run` shows): the hip error (the c most present
slots, or the c first persons, matched to the c people, as in the evaluation), the same
for the room centre, and how often the reported count is right.

Usage: .venv/bin/python models/eval/demo_check.py [config] [checkpoint | classical]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

from invispose.config import load_config
from invispose.csi.window import Windower
from invispose.localise.classical import ClassicalEstimator
from invispose.model.checkpoint import DEFAULT_CHECKPOINT, load_model
from invispose.sim.live import SimulatedStream
from invispose.tracking.tracker import Tracker

DURATION_S = 40.0
TRACK_SETTLE_S = 3.0  # tracks need a few hops to be confirmed


def matched_errors(hips: np.ndarray, truth: np.ndarray) -> list[float]:
    """Floor errors of reported hips (n, 2) matched to the true ones (c, 2) (Hungarian)."""
    if not len(hips) or not len(truth):
        return []
    cost = np.linalg.norm(hips[:, None] - truth[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].tolist()


def tracked_hips(persons: list) -> np.ndarray:  # type: ignore[type-arg]
    """Hip centres (n, 2) of a published frame's persons."""
    return np.array([np.mean([kp.position_m[:2] for kp in p.keypoints if kp.id in (11, 12)],
                             axis=0) for p in persons]).reshape(-1, 2)


def main(config: str = "configs/default.yaml", checkpoint: str = str(DEFAULT_CHECKPOINT)) -> None:
    site = load_config(config)
    space = site.spaces[0]
    scenes, windowers = {}, {}
    for r in site.routers:
        source = r.source.model_copy(update={"epoch_s": 0.0})  # type: ignore[union-attr]
        scenes[r.id] = SimulatedStream.from_config(r.model_copy(update={"source": source}),
                                                   space).scene
        windowers[r.id] = Windower(router_id=r.id, space_id=space.id,
                                   tx_pos_m=r.tx_positions_m, rx_pos_m=r.rx_positions_m,
                                   room_size_m=space.size_m, chain_phase_rad=r.chain_phase_rad)
    classical = checkpoint == "classical"
    estimator = ClassicalEstimator() if classical else None
    model = None if classical else load_model(checkpoint).model
    tracker = Tracker.from_config(site, space.id)
    centre = np.asarray(space.size_m[:2]) / 2
    errors, centre_errors, right = [], [], []
    tracked_errors, tracked_right, tracked_counts = [], [], []
    hop_s = site.model.hop_s  # the runtime's hop: what the tracker sees in `make run`
    for t in np.arange(0.0, DURATION_S, hop_s):
        hop = []
        for rid, scene in scenes.items():
            for frame in scene.frames(rid, t, t + hop_s):
                windowers[rid].push(frame)
            hop.append(windowers[rid].make_window())
        if t < 1.0:
            continue  # the first windows are not full yet
        det = estimator.detect(hop) if estimator else model.predict_hops([hop])[0][0]  # type: ignore[union-attr]
        truth = np.array([p.keypoints_m[[11, 12]].mean(0)[:2]
                          for p in next(iter(scenes.values())).ground_truth(t + hop_s)])
        hips = det.keypoints_m[:, [11, 12]].mean(axis=1)[:, :2]  # (K, 2)
        errors += matched_errors(hips[np.argsort(-det.presence, kind="stable")[: len(truth)]],
                                 truth)
        centre_errors += np.linalg.norm(truth - centre, axis=1).tolist()
        right.append(int((det.presence >= 0.5).sum()) == len(truth))
        persons = tracker.update([det], now_s=float(t + hop_s)).pose_frame.persons
        if t >= TRACK_SETTLE_S:
            tracked_errors += matched_errors(tracked_hips(persons)[: len(truth)], truth)
            tracked_right.append(len(persons) == len(truth))
            tracked_counts.append((len(persons), len(truth)))
    print(f"{checkpoint}: hip error median {np.median(errors):.2f} m, p90 "
          f"{np.percentile(errors, 90):.2f} m (room centre {np.median(centre_errors):.2f} m); "
          f"count right in {np.mean(right):.0%} of {len(right)} hops")
    if tracked_errors:
        print(f"  tracked (published): hip error median {np.median(tracked_errors):.2f} m, p90 "
              f"{np.percentile(tracked_errors, 90):.2f} m; count right in "
              f"{np.mean(tracked_right):.0%} of {len(tracked_right)} frames; "
              f"{np.mean([a for a, _ in tracked_counts]):.2f} persons published per frame "
              f"for {np.mean([b for _, b in tracked_counts]):.2f} there (errors are of the "
              f"published ones)")
    else:
        print(f"  tracked (published): no person in {len(tracked_right)} frames")


if __name__ == "__main__":
    main(*sys.argv[1:])
