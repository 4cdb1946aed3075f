"""`invispose calibrate`: measure a router's chain phases from a walk at known positions.

For a `simulated` router the walk is simulated: one person walks a fixed loop through
the room (0.8 m from the walls, 1 m/s) in front of that router's own radio, the same
device the runtime streams, and the loop's known positions calibrate it
(``calibration.ChainCalibrator``). The command prints the ``chain_phase_rad`` rows to put
in the router's configuration and, as a check, how far the router's own floor-map peak
lands from the walker on the walk's second half with the static estimate and with the
measured phases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from invispose.config import DEFAULT_CONFIG, RouterConfig, SimulatedSource, SpaceConfig, load_config
from invispose.csi.window import Windower, link_phases
from invispose.errors import InvisPoseError
from invispose.localise.backprojection import RECENT_PACKETS, heatmap, router_calibration
from invispose.localise.calibration import ChainCalibrator
from invispose.localise.floor import floor_grid
from invispose.localise.views import views_from_windows
from invispose.output import print_json
from invispose.schemas import CsiWindow, FloatArray

HOP_S = 0.32
WALL_M = 0.8  # the loop keeps this far from the walls
SPEED_MPS = 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `calibrate` command."""
    cal = subparsers.add_parser(
        "calibrate", help="measure multi-antenna routers' chain phases (chain_phase_rad)"
    )
    cal.add_argument("--config", type=Path, default=None, help="site config (default demo)")
    cal.add_argument("--router", action="append", default=None,
                     help="router id (repeatable; default: every multi-antenna router)")
    cal.add_argument("--seconds", type=float, default=30.0, help="length of the walk")
    cal.add_argument("--json", action="store_true", help="JSON instead of YAML rows")
    cal.set_defaults(func=cmd_calibrate)


def loop_waypoints(size_m: FloatArray) -> FloatArray:
    """Corners (5, 2) of the walk: a loop WALL_M inside the walls, then across the middle."""
    w, d = float(size_m[0]), float(size_m[1])
    m = min(WALL_M, w / 4, d / 4)
    return np.array([[w - m, m], [w - m, d - m], [m, d - m], [m, m], [w - m, d - m]],
                    dtype=np.float32)


def simulated_walk(
    router: RouterConfig, space: SpaceConfig, seconds: float
) -> tuple[list[CsiWindow], FloatArray]:
    """The router's windows of a simulated walk and the walker's floor position (N, 2)
    in the middle of each window's newest RECENT_PACKETS packets."""
    from invispose.sim.scene import RouterSpec, Scene  # the simulator only for this
    from invispose.sim.scripts import PersonScript

    source = router.source
    assert isinstance(source, SimulatedSource)
    spec = RouterSpec(router.id, source.hardware, tuple(router.tx_positions_m),
                      tuple(router.rx_positions_m), source.rate_hz)
    room = Scene.simple(space.size_m, [spec], 0, seed=source.seed, epoch_s=0.0).room
    walker = PersonScript("calibration", 1.75, np.asarray(space.size_m, np.float64))
    corners = loop_waypoints(np.asarray(space.size_m, np.float32))
    walker.start(corners[-2], 0.0)
    while len(walker.segments) < 4 * len(corners):  # past any walk length asked for
        for corner in corners:
            walker.add("walk", to_m=corner, speed_mps=SPEED_MPS)
    scene = Scene(room, [spec], [walker], seed=source.seed, epoch_s=0.0)
    windower = Windower(router_id=router.id, space_id=space.id,
                        tx_pos_m=router.tx_positions_m, rx_pos_m=router.rx_positions_m,
                        room_size_m=space.size_m, rate_hz=source.rate_hz)
    lag_s = RECENT_PACKETS / 2 / source.rate_hz
    windows, truth = [], []
    for t in np.arange(0.0, seconds, HOP_S):
        for frame in scene.frames(router.id, float(t), float(t + HOP_S)):
            windower.push(frame)
        window = windower.make_window()
        if window is None or t < 0.64:  # the first windows are not full yet
            continue
        person = scene.ground_truth(float(t + HOP_S - lag_s))[0]
        windows.append(window)
        truth.append(person.keypoints_m[[11, 12]].mean(axis=0)[:2])
    return windows, np.asarray(truth, np.float32).reshape(-1, 2)


def _peak_errors(
    windows: list[CsiWindow], truth: FloatArray, size_m: FloatArray, measured: bool
) -> FloatArray:
    """Distance (N,) from the walker to the router's own map peak, per window."""
    grid = floor_grid(size_m)
    out = []
    for view, xy in zip(views_from_windows(windows), truth, strict=True):
        if not measured:
            view.link_phase = None
        power = heatmap(view, grid.cells_m, router_calibration(view, size_m))
        out.append(float(np.linalg.norm(grid.cells_m[int(np.argmax(power)), :2] - xy)))
    return np.asarray(out, np.float32)


def calibrate_router(
    router: RouterConfig, space: SpaceConfig, seconds: float
) -> dict[str, object]:
    """Chain phases of one simulated router and the check on the walk's second half."""
    if not isinstance(router.source, SimulatedSource):
        raise InvisPoseError(
            f"router {router.id}: calibrating a {router.kind} router needs a walk at known "
            "positions recorded from it, which `invispose calibrate` cannot take yet; "
            "only simulated routers are calibrated"
        )
    windows, truth = simulated_walk(router, space, seconds)
    n_rx = len(router.rx_positions_m)
    calibrator = ChainCalibrator(n_rx=n_rx)
    half = len(windows) // 2
    for window, xy in zip(windows[:half], truth[:half], strict=True):
        calibrator.add(views_from_windows([window])[0], xy)
    phases = calibrator.phases()
    if phases is None:
        raise InvisPoseError(
            f"router {router.id}: {calibrator.windows} windows with motion; a walk of "
            f"{seconds:.0f} s is too short (try --seconds 30)"
        )
    size = np.asarray(space.size_m, np.float32)
    check = windows[half:]
    for w in check:
        w.link_phase = link_phases(phases, w.n_links // n_rx, n_rx)
    before = _peak_errors(check, truth[half:], size, measured=False)
    after = _peak_errors(check, truth[half:], size, measured=True)
    return {
        "router": router.id,
        "chain_phase_rad": np.round(phases.astype(np.float64), 3).tolist(),
        "windows": calibrator.windows,
        "peak_error_m": {
            "static_estimate": {"median": float(np.median(before)),
                                "p90": float(np.percentile(before, 90))},
            "measured": {"median": float(np.median(after)),
                         "p90": float(np.percentile(after, 90))},
        },
    }


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate the chosen routers and print their chain_phase_rad rows."""
    site = load_config(args.config or DEFAULT_CONFIG)
    chosen = args.router or [r.id for r in site.routers if len(r.tx_positions_m) *
                             len(r.rx_positions_m) > 1]
    known = {r.id: r for r in site.routers}
    unknown = [r for r in chosen if r not in known]
    if unknown:
        raise InvisPoseError(f"no router {', '.join(unknown)} in the config")
    results = []
    for rid in chosen:
        router = known[rid]
        if len(router.tx_positions_m) * len(router.rx_positions_m) < 2:
            raise InvisPoseError(f"router {rid}: one link has no chain phases to calibrate")
        print(f"calibrating {rid}: {args.seconds:.0f} s walk ...", file=sys.stderr, flush=True)
        result = calibrate_router(router, site.space(router.space), args.seconds)
        err = result["peak_error_m"]
        assert isinstance(err, dict)
        print(f"  {rid}: own-map peak error median {err['static_estimate']['median']:.2f} m "
              f"(static estimate) -> {err['measured']['median']:.2f} m (measured)",
              file=sys.stderr)
        results.append(result)
    if args.json:
        print_json(results)
        return 0
    print("# chain_phase_rad for the routers' entries in the config")
    for r in results:
        print(f"- id: {r['router']}\n  chain_phase_rad: {json.dumps(r['chain_phase_rad'])}")
    return 0
