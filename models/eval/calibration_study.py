"""Classical localisation of a walker with three kinds of chain phases (model card numbers).

Two simulated Intel 3×3 routers on crossing walls stream a walker (random waypoints,
0.6–1.4 m/s) through the runtime's Windower; the fused floor map's peak is compared with
the hip centre. Phases: `static` (estimated per window from the static channel),
`true` (the simulated devices' own), `measured` (``ChainCalibrator`` on the walk's first
``CAL_S`` seconds at the known positions; scored, like the others, on the second half).

Usage: .venv/bin/python models/eval/calibration_study.py WIDTH DEPTH SEED
(measured: 5 4 1 -> static 0.51, true 0.12, measured 0.19 m; 8 6 2 -> 1.85, 0.20, 0.38 m)
"""

from __future__ import annotations

import sys

import numpy as np

from invispose.csi.window import Windower
from invispose.localise.backprojection import RECENT_PACKETS, heatmap, router_calibration
from invispose.localise.calibration import ChainCalibrator
from invispose.localise.floor import floor_grid, normalised
from invispose.localise.views import views_from_windows
from invispose.sim.scene import RouterSpec, Scene
from invispose.sim.scripts import PersonScript

HOP_S = 0.32
DURATION_S = 40.0
CAL_S = 13.0


def array_3(centre: list[float], axis: list[float]) -> tuple[tuple[float, ...], ...]:
    c, a = np.asarray(centre), np.asarray(axis)
    return tuple(tuple(float(v) for v in c + (i - 1) * 0.029 * a) for i in range(3))


def main(width: float, depth: float, seed: int) -> None:
    room_m = np.array([width, depth, 2.7])
    rng = np.random.default_rng(seed)
    routers = [
        RouterSpec("a", "intel5300", array_3([0.1, depth * 0.3, 1.5], [0, 1, 0]),
                   array_3([width - 0.1, depth * 0.65, 1.2], [0, 1, 0])),
        RouterSpec("b", "intel5300", array_3([width * 0.3, 0.1, 1.6], [1, 0, 0]),
                   array_3([width * 0.66, depth - 0.1, 1.1], [1, 0, 0])),
    ]
    walker = PersonScript("w", 1.75, room_m)
    walker.start(rng.uniform([0.5, 0.5], room_m[:2] - 0.5), 0.0)
    for _ in range(30):
        walker.add("walk", to_m=rng.uniform([0.5, 0.5], room_m[:2] - 0.5),
                   speed_mps=float(rng.uniform(0.6, 1.4)))
    room = Scene.simple(room_m, routers, 0, seed=seed, epoch_s=0.0).room
    scene = Scene(room, routers, [walker], seed=seed, epoch_s=0.0)
    windowers = {r.router_id: Windower(router_id=r.router_id, space_id="lab",
                                       tx_pos_m=np.asarray(r.tx_positions_m),
                                       rx_pos_m=np.asarray(r.rx_positions_m),
                                       room_size_m=room_m) for r in routers}
    grid = floor_grid(room_m)
    hops, truth = [], []
    for t in np.arange(0.0, DURATION_S, HOP_S):
        views = []
        for r in routers:
            for frame in scene.frames(r.router_id, t, t + HOP_S):
                windowers[r.router_id].push(frame)
            views += views_from_windows([windowers[r.router_id].make_window()])  # type: ignore[list-item]
        if t >= 0.64:  # full windows only
            hops.append((t, views))
            lag_s = RECENT_PACKETS / 2 / 100.0
            truth.append(scene.ground_truth(t + HOP_S - lag_s)[0].keypoints_m[[11, 12]]
                         .mean(axis=0)[:2])
    calibrators = [ChainCalibrator(n_rx=3) for _ in routers]
    for (t, views), xy in zip(hops, truth, strict=True):
        if t < CAL_S:
            for cal, view in zip(calibrators, views, strict=True):
                cal.add(view, xy)
    phases = {
        "static": [None for _ in routers],
        "true": [scene.chain_phases(r.router_id).reshape(-1) for r in routers],
        "measured": [c.phases().reshape(-1) for c in calibrators],  # type: ignore[union-attr]
    }
    second = range(len(hops) // 2, len(hops))
    for name, per_router in phases.items():
        errors = []
        for i in second:
            fused = 0.0
            for view, ph in zip(hops[i][1], per_router, strict=True):
                view.link_phase = None if ph is None else np.asarray(ph, np.float32)
                fused = fused + normalised(heatmap(view, grid.cells_m,
                                                   router_calibration(view, room_m)))
            errors.append(np.linalg.norm(grid.cells_m[int(np.argmax(fused)), :2] - truth[i]))
        print(f"{width:g}x{depth:g} m seed {seed} {name:9s} hip error median "
              f"{np.median(errors):.2f} m, p90 {np.percentile(errors, 90):.2f} m")


if __name__ == "__main__":
    main(float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))
