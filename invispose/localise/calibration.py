"""Chain phases of a multi-antenna router, measured from a person at known positions.

Each tx/rx antenna pair of a receiver such as the Intel 5300 adds a fixed, unknown phase
(separate RF chains and PLL states). Back-projection needs it: the links of one router
are coherent only up to those phases, and with them wrong the floor map is a blur. They
cannot be read off one window: the static channel (the line of sight the geometry
predicts) is corrupted by the room's multipath (``calibrate_from_static`` misses by up to
~2 rad in an 8×6 m room), and maximising the sharpness of maps over many windows admits
wrong, equally sharp solutions (a phase ramp across an array turns every bearing).

With the person's position known, the links' matched outputs at that cell share one
signal up to the chain phases, so the principal eigenvector of their covariance,
accumulated over the windows of a short calibration walk, gives them. Measured on the
simulator's streaming path (two Intel 3×3 routers, a walker,
``models/eval/calibration_study.py``): an 8×6 m room goes from a median 2.36 m (static
estimate) to 0.33 m after 13 s of calibration walk (0.26 m with the true phases); a 5×4 m
room from 0.23 m (p90 1.08) to 0.19 m (p90 0.44; 0.14 m true).

The phases are a property of the radio: they hold while it runs and are stored in the
router's configuration (``chain_phase_rad``), one row per transmit antenna.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from invispose.localise.backprojection import RouterView, link_covariance, principal_phases
from invispose.localise.floor import TORSO_HEIGHT_M
from invispose.schemas import ComplexArray, FloatArray

MIN_WINDOWS = 10  # windows of a walk a calibration needs before it is trusted


@dataclass(slots=True)
class ChainCalibrator:
    """Accumulates one router's links' covariance at known positions (one per layout).

    A router that changes its transmit stream count between packets has several link
    layouts; each is accumulated apart and the one with the most links decides.
    """

    n_rx: int
    height_m: float = TORSO_HEIGHT_M
    _cov: dict[int, ComplexArray] = field(default_factory=dict)  # links -> (L, L)
    _count: dict[int, int] = field(default_factory=dict)

    def add(self, view: RouterView, xy_m: npt.ArrayLike) -> bool:
        """One window with the person at floor position ``xy_m``; False if nothing moved."""
        n_l = view.static.shape[0]
        if n_l < 2:
            return False
        cell = np.array([[*np.asarray(xy_m, np.float64).reshape(2), self.height_m]],
                        dtype=np.float32)  # (1, 3)
        cov = link_covariance(view, cell)  # (L, L) trace 1, or zeros
        if not np.any(cov):
            return False
        self._cov[n_l] = self._cov.get(n_l, 0) + cov
        self._count[n_l] = self._count.get(n_l, 0) + 1
        return True

    @property
    def windows(self) -> int:
        """Windows accumulated for the layout with the most links."""
        return self._count[max(self._count)] if self._count else 0

    def phases(self) -> FloatArray | None:
        """Chain phases (n_tx, n_rx) radians, link (tx 0, rx 0) at zero; None if too few."""
        if self.windows < MIN_WINDOWS:
            return None
        n_l = max(self._cov)
        flat = principal_phases(self._cov[n_l])  # (L,)
        if flat is None:
            return None
        out: FloatArray = flat.reshape(n_l // self.n_rx, self.n_rx)
        return out

