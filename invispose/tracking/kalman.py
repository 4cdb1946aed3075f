"""Constant-velocity Kalman filter on a body centre (x, y, z and their velocities).

The state is ``[x, y, z, vx, vy, vz]`` in room metres and metres per second; the filter
observes the position only. With white-noise acceleration and measurement noise that are
the same on every axis and independent between axes, the 6×6 covariance is block-diagonal
per axis and stays so: each axis is a 2×2 filter over (position, velocity). The covariance
is therefore kept compactly as ``(N, 3, 3)``: per axis ``[var_p, cov_pv, var_v]``, and every
operation is a handful of elementwise numpy calls on all tracks at once (no matrix
inversions). :func:`full_covariance` expands it to the textbook 6×6 matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
STATE_DIM = 6
POS_DIM = 3
VAR_P, COV_PV, VAR_V = 0, 1, 2  # last axis of the compact covariance


@dataclass(frozen=True, slots=True)
class ConstantVelocityKalman:
    """Noise model of the filter; the state lives with the caller (arrays, not objects)."""

    #: white-noise acceleration: people start, stop and fall, so this is generous
    accel_std_mps2: float = 4.0
    #: standard deviation of one observed body centre, metres
    measurement_std_m: float = 0.08
    #: initial velocity uncertainty of a new track, metres per second
    initial_velocity_std_mps: float = 1.0

    def initiate(self, position_m: F64) -> tuple[F64, F64]:
        """States (N, 6) at rest and compact covariances (N, 3, 3) at positions (N, 3)."""
        pos = np.asarray(position_m, dtype=np.float64)
        x = np.concatenate([pos, np.zeros_like(pos)], axis=-1)
        cov = np.zeros(pos.shape + (3,))
        cov[..., VAR_P] = self.measurement_std_m**2
        cov[..., VAR_V] = self.initial_velocity_std_mps**2
        return x, cov

    def predict(self, x: F64, cov: F64, dt_s: float) -> tuple[F64, F64]:
        """Advance states (N, 6) and covariances (N, 3, 3) by ``dt_s`` seconds."""
        transition_t, cov_map, noise = _step_matrices(float(dt_s), self.accel_std_mps2**2)
        return x @ transition_t, cov @ cov_map + noise

    def update(self, x: F64, cov: F64, z_m: F64, noise_scale: F64 | float = 1.0) -> tuple[F64, F64]:
        """Correct states (N, 6) and covariances (N, 3, 3) with observed positions (N, 3).

        ``noise_scale`` (N,) multiplies the measurement standard deviation, so that a
        weakly supported observation moves the track less.
        """
        r = (self.measurement_std_m * np.asarray(noise_scale, dtype=np.float64)) ** 2
        a, b, c = cov[..., VAR_P], cov[..., COV_PV], cov[..., VAR_V]  # (N, 3) each
        s = a + np.asarray(r)[..., None]  # innovation variance per axis
        k_p, k_v = a / s, b / s  # Kalman gains of position and velocity
        innovation = z_m - x[..., :POS_DIM]  # (N, 3)
        x_new = np.concatenate(
            [x[..., :POS_DIM] + k_p * innovation, x[..., POS_DIM:] + k_v * innovation], -1
        )
        cov_new = np.stack([(1.0 - k_p) * a, (1.0 - k_p) * b, c - k_v * b], axis=-1)
        return x_new, cov_new

    def position_std_m(self, cov: F64) -> F64:
        """Horizontal position uncertainty (N,) of covariances (N, 3, 3), metres."""
        return np.sqrt(cov[..., 0, VAR_P] + cov[..., 1, VAR_P])


@lru_cache(maxsize=16)
def _step_matrices(dt: float, q: float) -> tuple[F64, F64, F64]:
    """Transposed state transition (6, 6), covariance map (3, 3) and noise (3,) of one step.

    Cached: the tracker steps by the same dt frame after frame.
    """
    transition = np.eye(STATE_DIM)
    transition[:POS_DIM, POS_DIM:] = dt * np.eye(POS_DIM)  # position += dt · velocity
    # per axis [a, b, c] → [a + 2dt b + dt² c, b + dt c, c], as cov @ cov_map
    cov_map = np.array([[1.0, 0.0, 0.0], [2.0 * dt, 1.0, 0.0], [dt * dt, dt, 1.0]])
    noise = np.array([q * dt**4 / 4.0, q * dt**3 / 2.0, q * dt**2])  # white-noise acceleration
    for a in (transition, cov_map, noise):
        a.flags.writeable = False
    return transition.T, cov_map, noise


def full_covariance(cov: F64) -> F64:
    """The 6×6 covariances (N, 6, 6) of compact ones (N, 3, 3)."""
    out = np.zeros(cov.shape[:-2] + (STATE_DIM, STATE_DIM))
    axes = np.arange(POS_DIM)
    out[..., axes, axes] = cov[..., VAR_P]
    out[..., axes, axes + POS_DIM] = cov[..., COV_PV]
    out[..., axes + POS_DIM, axes] = cov[..., COV_PV]
    out[..., axes + POS_DIM, axes + POS_DIM] = cov[..., VAR_V]
    return out
