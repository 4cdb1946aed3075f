"""Chain phases measured from a simulated walk at known positions (``invispose calibrate``)."""

from __future__ import annotations

import numpy as np
import pytest

from invispose.cli import main
from invispose.config import DEFAULT_CONFIG, RouterConfig, load_config
from invispose.csi.window import link_phases
from invispose.errors import InvisPoseError
from invispose.localise.backprojection import RouterView
from invispose.localise.calibration import MIN_WINDOWS, ChainCalibrator
from invispose.localise.commands import calibrate_router, simulated_walk
from invispose.localise.views import views_from_windows
from invispose.sim.scene import RouterSpec, Scene


def _demo_router(router_id: str) -> tuple[RouterConfig, object]:
    site = load_config(DEFAULT_CONFIG)
    router = next(r for r in site.routers if r.id == router_id)
    return router, site.space(router.space)


def test_a_walk_at_known_positions_recovers_the_chain_phases() -> None:
    router, space = _demo_router("router_a")
    windows, truth = simulated_walk(router, space, 12.0)  # type: ignore[arg-type]
    calibrator = ChainCalibrator(n_rx=3)
    for view, xy in zip(views_from_windows(windows), truth, strict=True):
        calibrator.add(view, xy)
    measured = calibrator.phases()
    assert measured is not None and measured.shape == (3, 3)
    src = router.source
    spec = RouterSpec(router.id, "intel5300", tuple(router.tx_positions_m),
                      tuple(router.rx_positions_m))
    true = Scene.simple(space.size_m, [spec], 0, seed=src.seed).chain_phases(router.id)  # type: ignore[attr-defined, union-attr]
    error = np.angle(np.exp(1j * (measured - (true - true[0, 0]))))  # (3, 3) wrapped
    # measured: 0.14-0.15 rad median, 0.28 rad worst link; a uniform guess is ~1.6 rad off
    assert np.median(np.abs(error)) < 0.3
    assert np.abs(error).max() < 0.8


def test_measured_phases_place_the_walker_better_than_the_static_estimate() -> None:
    router, space = _demo_router("router_c")
    result = calibrate_router(router, space, 16.0)  # type: ignore[arg-type]
    err = result["peak_error_m"]
    assert isinstance(err, dict)
    # measured on this walk: 2.5 m with the static estimate, 0.5 m with the measured phases
    assert err["measured"]["median"] < 0.5 * err["static_estimate"]["median"]
    assert err["measured"]["median"] < 1.0


def test_calibrator_needs_motion_and_enough_windows(rng: np.random.Generator) -> None:
    still = RouterView(
        dynamic=np.zeros((9, 64, 30), np.complex64),
        static=np.ones((9, 30), np.complex64),
        tx_pos_m=np.zeros((9, 3), np.float32),
        rx_pos_m=np.full((9, 3), 3.0, np.float32),
        carrier_hz=5.18e9,
        subcarrier_hz=np.linspace(-8e6, 8e6, 30).astype(np.float32),
    )
    calibrator = ChainCalibrator(n_rx=3)
    assert not calibrator.add(still, [1.0, 1.0])  # nothing moves: no evidence
    moving = RouterView(**{**{f: getattr(still, f) for f in still.__slots__},
                           "dynamic": (rng.normal(size=(9, 64, 30))
                                       + 1j * rng.normal(size=(9, 64, 30))).astype(np.complex64)})
    for _ in range(MIN_WINDOWS - 1):
        assert calibrator.add(moving, [1.0, 1.0])
    assert calibrator.phases() is None  # too few windows to trust
    assert calibrator.add(moving, [1.0, 1.0])
    assert calibrator.phases() is not None
    one_link = RouterView(**{**{f: getattr(still, f) for f in still.__slots__},
                             "dynamic": moving.dynamic[:1], "static": still.static[:1]})
    assert not ChainCalibrator(n_rx=1).add(one_link, [1.0, 1.0])


def test_link_phases_follow_the_transmit_antennas_in_use() -> None:
    table = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(link_phases(table, 2, 3), [0, 1, 2, 3, 4, 5])
    assert link_phases(None, 3, 3) is None
    assert link_phases(table[:1], 2, 3) is None  # fewer rows than antennas in use


def test_config_rejects_chain_phases_of_the_wrong_shape() -> None:
    router, _ = _demo_router("router_a")
    data = router.model_dump()
    data["chain_phase_rad"] = [[0.0, 1.0, 2.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="3 rows of 3 phases"):
        RouterConfig.model_validate(data)
    data["chain_phase_rad"] = [[0.0, 1.0, float("nan")]] * 3
    with pytest.raises(ValueError, match="finite"):
        RouterConfig.model_validate(data)


def test_calibrate_refuses_routers_it_cannot_walk(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--router", "router_b"]) == 1  # ESP32: one link
    assert "one link" in capsys.readouterr().err
    assert main(["calibrate", "--router", "nope"]) == 1
    router, space = _demo_router("router_a")
    data = router.model_dump()
    as_file = RouterConfig.model_validate(
        {**data, "kind": "file", "source": {"kind": "file", "path": "capture.dat"}}
    )
    with pytest.raises(InvisPoseError, match="only simulated routers"):
        calibrate_router(as_file, space, 5.0)  # type: ignore[arg-type]
