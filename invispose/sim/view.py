"""The front view: room points to normalised image coordinates (ARCHITECTURE.md §3).

A virtual pinhole camera on the front wall's centre line (x = W/2, z = H/2) looks along
+y with a 1280×720 image and a 60° horizontal field of view. It sits just far enough
behind the front wall (y < 0) that the whole room is in the picture, so any point
inside the room maps into [0, 1] × [0, 1]: u grows to the right (+x), v downwards (-z).
The runtime uses the same function for the seed's normalised ``Keypoint.x/y``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

IMAGE_WIDTH_PX = 1280
IMAGE_HEIGHT_PX = 720
HORIZONTAL_FOV_DEG = 60.0
_FX = 0.5 / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2.0)  # u per unit of x/depth
_FY = _FX * IMAGE_WIDTH_PX / IMAGE_HEIGHT_PX  # v per unit of z/depth
_MARGIN = 1.02


def camera_setback_m(room_size_m: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """How far behind the front wall the camera sits for rooms (..., 3)."""
    size = np.asarray(room_size_m, dtype=np.float64)
    out: npt.NDArray[np.float64] = _MARGIN * np.maximum(_FX * size[..., 0], _FY * size[..., 2])
    return out


def project_front(
    points_m: npt.ArrayLike, room_size_m: npt.ArrayLike
) -> tuple[F32, F32]:
    """Normalised front-view coordinates (u, v) of room points (..., 3), each float32 (...).

    ``room_size_m`` (3,) or broadcastable to the points' leading dims plus (3,).
    """
    p = np.asarray(points_m, dtype=np.float64)
    size = np.asarray(room_size_m, dtype=np.float64)
    depth = np.maximum(p[..., 1] + camera_setback_m(size), 1e-3)
    u = 0.5 + _FX * (p[..., 0] - 0.5 * size[..., 0]) / depth
    v = 0.5 - _FY * (p[..., 2] - 0.5 * size[..., 2]) / depth
    return u.astype(np.float32), v.astype(np.float32)


def box_front(
    keypoints_m: npt.ArrayLike, room_size_m: npt.ArrayLike, pad: float = 0.04
) -> dict[str, float]:
    """Bounding box {x, y, width, height} (0-1) of one person's keypoints (17, 3) in view.

    The keypoints' extent grows by ``pad`` of its size on each side (heads and feet
    reach past their keypoints) and is clipped to the image.
    """
    u, v = project_front(keypoints_m, room_size_m)
    u0, u1, v0, v1 = float(u.min()), float(u.max()), float(v.min()), float(v.max())
    du, dv = (u1 - u0) * pad, (v1 - v0) * pad + 0.01
    x0, x1 = max(0.0, u0 - du), min(1.0, u1 + du)
    y0, y1 = max(0.0, v0 - dv), min(1.0, v1 + dv)
    return {"x": x0, "y": y0, "width": max(0.0, x1 - x0), "height": max(0.0, y1 - y0)}
