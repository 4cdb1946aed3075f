"""The constant-velocity Kalman filter on the body centre."""

from __future__ import annotations

import numpy as np

from invispose.tracking.kalman import ConstantVelocityKalman, full_covariance


def _textbook(kf: ConstantVelocityKalman, x, p, zs, dt):  # type: ignore[no-untyped-def]
    """The same filter with full 6×6 matrices, written the textbook way."""
    f = np.eye(6)
    f[:3, 3:] = dt * np.eye(3)
    g = np.concatenate([0.5 * dt**2 * np.eye(3), dt * np.eye(3)])  # (6, 3)
    q = kf.accel_std_mps2**2 * g @ g.T
    h = np.hstack([np.eye(3), np.zeros((3, 3))])
    r = kf.measurement_std_m**2 * np.eye(3)
    for z in zs:
        x, p = f @ x, f @ p @ f.T + q
        k = p @ h.T @ np.linalg.inv(h @ p @ h.T + r)
        x, p = x + k @ (z - h @ x), (np.eye(6) - k @ h) @ p
    return x, p


def test_tracks_constant_velocity_and_predicts_ahead() -> None:
    kf = ConstantVelocityKalman()
    start, velocity = np.array([1.0, 2.0, 0.9]), np.array([0.8, -0.3, 0.0])
    x, p = kf.initiate(start[None])
    rng = np.random.default_rng(7)
    dt = 0.05
    for step in range(1, 61):
        x, p = kf.predict(x, p, dt)
        z = start + velocity * step * dt + rng.normal(0.0, 0.02, 3)
        x, p = kf.update(x, p, z[None])
    np.testing.assert_allclose(x[0, 3:], velocity, atol=0.1)
    ahead, p_ahead = kf.predict(x, p, 1.0)
    np.testing.assert_allclose(ahead[0, :3], start + velocity * 4.0, atol=0.12)
    # uncertainty grows while predicting and shrinks with a measurement
    assert kf.position_std_m(p_ahead)[0] > kf.position_std_m(p)[0]


def test_matches_the_full_matrix_filter() -> None:
    kf = ConstantVelocityKalman(accel_std_mps2=2.5, measurement_std_m=0.1)
    rng = np.random.default_rng(3)
    zs = np.cumsum(rng.normal(0.0, 0.05, (25, 3)), axis=0) + np.array([2.0, 1.0, 1.0])
    x, p = kf.initiate(zs[0][None])
    x_ref, p_ref = x[0].copy(), full_covariance(p)[0]
    for z in zs[1:]:
        x, p = kf.predict(x, p, 0.05)
        x, p = kf.update(x, p, z[None])
    x_ref, p_ref = _textbook(kf, x_ref, p_ref, zs[1:], 0.05)
    np.testing.assert_allclose(x[0], x_ref, atol=1e-9)
    np.testing.assert_allclose(full_covariance(p)[0], p_ref, atol=1e-9)


def test_batches_are_independent() -> None:
    kf = ConstantVelocityKalman()
    x, p = kf.initiate(np.array([[0.0, 0.0, 1.0], [3.0, 3.0, 1.0]]))
    x, p = kf.predict(x, p, 0.1)
    x2, _ = kf.update(x, p, np.array([[0.5, 0.0, 1.0], [3.0, 3.0, 1.0]]))
    assert x2[0, 0] > 0.2  # pulled towards its measurement
    np.testing.assert_allclose(x2[1], [3.0, 3.0, 1.0, 0.0, 0.0, 0.0], atol=1e-12)
