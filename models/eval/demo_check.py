"""The demo room offline: the shipped estimator on 40 s of `configs/default.yaml`'s scene.

Every simulated router of the config streams its frames through the runtime's Windower;
each hop's windows go to the estimator together, as the tracker sends them. Prints the
hip error (the c most present slots matched to the c people, as in the evaluation), the
same for the room centre, and how often the reported count is right.

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

HOP_S = 0.25
DURATION_S = 40.0


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
    centre = np.asarray(space.size_m[:2]) / 2
    errors, centre_errors, right = [], [], []
    for t in np.arange(0.0, DURATION_S, HOP_S):
        hop = []
        for rid, scene in scenes.items():
            for frame in scene.frames(rid, t, t + HOP_S):
                windowers[rid].push(frame)
            hop.append(windowers[rid].make_window())
        if t < 1.0:
            continue  # the first windows are not full yet
        det = estimator.detect(hop) if estimator else model.predict_hops([hop])[0][0]  # type: ignore[union-attr]
        truth = np.array([p.keypoints_m[[11, 12]].mean(0)[:2]
                          for p in next(iter(scenes.values())).ground_truth(t + HOP_S)])
        hips = det.keypoints_m[:, [11, 12]].mean(axis=1)[:, :2]  # (K, 2)
        top = hips[np.argsort(-det.presence, kind="stable")[: len(truth)]]
        cost = np.linalg.norm(top[:, None] - truth[None], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        errors += cost[rows, cols].tolist()
        centre_errors += np.linalg.norm(truth - centre, axis=1).tolist()
        right.append(int((det.presence >= 0.5).sum()) == len(truth))
    print(f"{checkpoint}: hip error median {np.median(errors):.2f} m, p90 "
          f"{np.percentile(errors, 90):.2f} m (room centre {np.median(centre_errors):.2f} m); "
          f"count right in {np.mean(right):.0%} of {len(right)} hops")


if __name__ == "__main__":
    main(*sys.argv[1:])
