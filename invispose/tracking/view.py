"""Projection of room points into a space's normalised 0–1 view (the seed's keypoint x/y).

The front view is the simulator's virtual camera (:func:`invispose.sim.view.project_front`),
so served coordinates and the simulator's ground truth share one definition.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from invispose.sim.view import project_front

F64 = npt.NDArray[np.float64]


def project_floor(points_m: npt.ArrayLike, room_size_m: npt.ArrayLike) -> tuple[F64, F64]:
    """Top-down view of the floor plan: ``u = x / width``, ``v = y / depth``."""
    pts = np.asarray(points_m, dtype=np.float64)  # (..., 3)
    size = np.asarray(room_size_m, dtype=np.float64)
    return pts[..., 0] / size[0], pts[..., 1] / size[1]


def project(view: str, points_m: npt.ArrayLike, room_size_m: npt.ArrayLike) -> tuple[F64, F64]:
    """Project points (..., 3) through a space's view ("front" or "floor") to 0–1 (u, v)."""
    if view == "floor":
        return project_floor(points_m, room_size_m)
    if view == "front":
        u, v = project_front(points_m, room_size_m)
        return u.astype(np.float64), v.astype(np.float64)
    raise ValueError(f"unknown view {view!r}")
