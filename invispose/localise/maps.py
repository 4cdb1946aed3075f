"""Per-router floor maps on a fixed grid over the room: the model's view of back-projection.

As DLoc does per access point, each router's window is back-projected onto the same
``MAP_CELLS`` × ``MAP_CELLS`` grid spanning the room (cell centres at (i + ½)/n of width
and depth, torso height), divided by its median. A space window gives (MAX_ROUTERS, n, n)
with zeros for absent routers and for one-link routers (their maps hold no position, see
``floor.FloorLocaliser``); the model takes them as an image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from invispose.localise.backprojection import RouterView, heatmap, router_calibration
from invispose.localise.floor import TORSO_HEIGHT_M, normalised
from invispose.schemas import MAX_ROUTERS, FloatArray

MAP_CELLS = 24  # 0.13-0.42 m cells for 3-10 m rooms; 4 ms per router window on one core


def room_cells(room_size_m: npt.ArrayLike, n: int = MAP_CELLS) -> FloatArray:
    """Cell centres (n·n, 3) of the room grid, x-major, at torso height."""
    size = np.asarray(room_size_m, dtype=np.float32).reshape(3)
    u = (np.arange(n, dtype=np.float32) + 0.5) / n  # (n,)
    x, y = np.meshgrid(u * size[0], u * size[1], indexing="ij")  # (n, n)
    out: FloatArray = np.stack([x, y, np.full_like(x, TORSO_HEIGHT_M)], axis=-1).reshape(-1, 3)
    return out


def floor_maps(
    views: Sequence[RouterView], room_size_m: npt.ArrayLike, n: int = MAP_CELLS,
    max_routers: int = MAX_ROUTERS,
) -> FloatArray:
    """Median-normalised maps (max_routers, n, n) float32 of a space window's routers."""
    cells = room_cells(room_size_m, n)
    out = np.zeros((max_routers, n, n), np.float32)
    for r, view in enumerate(views[:max_routers]):
        if view.dynamic.shape[0] < 2:
            continue
        power = heatmap(view, cells, router_calibration(view, room_size_m))  # (n·n,)
        out[r] = normalised(power).reshape(n, n)
    return out
