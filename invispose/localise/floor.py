"""Where movers are on a space's floor: per-router back-projection, fused, and its peaks.

``FloorLocaliser.locate`` takes the router views of one space for one hop (any number of
routers, mixed hardware) and returns the fused floor map and up to K peaks. Routers are
fused incoherently: each router's map is divided by its own median (its floor level, so a
router with a strong echo does not drown the others) and the maps are summed. With
``refine`` the chain phases of every multi-antenna router are re-estimated from the mover
at the first fused peak, and the maps are computed again (self-calibration).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.localise.backprojection import (
    RouterView,
    heatmap,
    refine_from_mover,
    router_calibration,
)
from invispose.schemas import FloatArray

CELL_M = 0.1
TORSO_HEIGHT_M = 1.0  # where a standing or walking person reflects most
EDGE_M = 0.2  # cells start this far from the walls
SUPPRESS_M = 0.7  # a second person's peak is at least this far from the first


@dataclass(slots=True)
class FloorGrid:
    """Cell centres of a room's floor at one height."""

    cells_m: FloatArray  # float32 (G, 3) x-major: cell (i, j) at i * ny + j
    shape: tuple[int, int]  # (nx, ny)
    cell_m: float


def floor_grid(
    room_size_m: npt.ArrayLike, cell_m: float = CELL_M, height_m: float = TORSO_HEIGHT_M
) -> FloorGrid:
    """Cells of ``cell_m`` covering the floor (EDGE_M from the walls) at ``height_m``."""
    size = np.asarray(room_size_m, dtype=np.float64).reshape(3)
    axes = [
        np.arange(EDGE_M, max(size[a] - EDGE_M, EDGE_M) + 1e-9, cell_m) for a in (0, 1)
    ]  # (nx,), (ny,)
    x, y = np.meshgrid(axes[0], axes[1], indexing="ij")  # (nx, ny)
    cells = np.stack([x, y, np.full_like(x, height_m)], axis=-1).reshape(-1, 3)
    return FloorGrid(cells.astype(np.float32), (len(axes[0]), len(axes[1])), float(cell_m))


@dataclass(slots=True)
class Peak:
    """A local maximum of the fused map."""

    xy_m: FloatArray  # float32 (2,) floor position
    contrast: float  # fused map value there over the map's median


@dataclass(slots=True)
class FloorResult:
    """The fused map of one space window and its peaks, strongest first."""

    grid: FloorGrid
    fused: FloatArray  # float32 (G,) sum over routers of map / median
    router_maps: list[FloatArray]  # per router (G,), each divided by its median
    peaks: list[Peak]


def normalised(m: FloatArray) -> FloatArray:
    """A map divided by its median (its floor level); all zero if that is not positive."""
    floor = float(np.median(m))
    out: FloatArray = (m / floor if floor > 0 else np.zeros_like(m)).astype(np.float32)
    return out


class FloorLocaliser:
    """Back-projection of a space's routers onto its floor (no learning, no weights)."""

    def __init__(
        self,
        *,
        cell_m: float = CELL_M,
        height_m: float = TORSO_HEIGHT_M,
        refine: bool = False,
        max_peaks: int = 4,
        suppress_m: float = SUPPRESS_M,
    ) -> None:
        self.cell_m, self.height_m, self.refine = cell_m, height_m, refine
        self.max_peaks, self.suppress_m = max_peaks, suppress_m

    def locate(self, views: Sequence[RouterView], room_size_m: npt.ArrayLike) -> FloorResult:
        """Fused map and peaks for one space window (``views``: its routers)."""
        if not views:
            raise ValueError("a space window needs at least one router")
        grid = floor_grid(room_size_m, self.cell_m, self.height_m)
        # a one-link router's map holds no position (one ellipse at ~17 m delay resolution,
        # and the cleaning fit takes most of its echo): only multi-antenna routers place
        # people; without one, the map still tells whether something moves
        placing = [v for v in views if v.dynamic.shape[0] > 1]
        if not placing:
            result = self._locate(grid, list(views), room_size_m)
            centre = np.asarray(room_size_m, np.float32).reshape(3)[:2] / 2
            for peak in result.peaks:
                peak.xy_m = centre.astype(np.float32)
            result.peaks = result.peaks[:1]
            return result
        return self._locate(grid, placing, room_size_m)

    def _locate(
        self, grid: FloorGrid, views: list[RouterView], room_size_m: npt.ArrayLike
    ) -> FloorResult:
        cals = [router_calibration(v, room_size_m) for v in views]
        maps = [normalised(heatmap(v, grid.cells_m, c)) for v, c in zip(views, cals, strict=True)]
        fused = np.sum(maps, axis=0)  # (G,)
        if self.refine and any(v.dynamic.shape[0] > 1 for v in views):
            at = grid.cells_m[int(np.argmax(fused))][None]  # (1, 3)
            for i, view in enumerate(views):
                if view.dynamic.shape[0] > 1:
                    cals[i] = refine_from_mover(view, at, cals[i])
                    maps[i] = normalised(heatmap(view, grid.cells_m, cals[i]))
            fused = np.sum(maps, axis=0)
        fused_norm = (fused / max(float(np.median(fused)), 1e-30)).astype(np.float32)
        return FloorResult(grid, fused.astype(np.float32), maps, self._peaks(grid, fused_norm))

    def _peaks(self, grid: FloorGrid, fused: FloatArray) -> list[Peak]:
        """Up to ``max_peaks`` maxima, each at least ``suppress_m`` from the stronger ones."""
        values = fused.copy()  # (G,)
        xy = grid.cells_m[:, :2]  # (G, 2)
        peaks: list[Peak] = []
        for _ in range(self.max_peaks):
            best = int(np.argmax(values))
            if not np.isfinite(values[best]) or values[best] <= 0:
                break
            peaks.append(Peak(xy[best].copy(), float(fused[best])))
            near = np.linalg.norm(xy - xy[best], axis=1) < self.suppress_m
            values[near] = -np.inf
        return peaks
