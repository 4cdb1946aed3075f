"""Layout families: the rooms and router placements each dataset split draws from.

* The training family is a finite set of ``N_TRAIN_LAYOUTS`` rooms drawn once from a
  fixed seed: widths and depths on the 0.5 m grid from 3 to 10 m, heights of 2.5, 2.7
  or 3.0 m, walls of drywall, plaster, brick or wood, routers mounted on the walls.
  ``train``, ``val``, ``same-layout`` and ``cross-hardware`` windows use these rooms.
* The held-out family (``cross-layout``) draws a fresh room per window: sizes off the
  0.5 m grid and heights off the training heights (so never a training size), walls of
  concrete, glass, stone or metal-backed panels, and placements never used in training
  (transmitter high in a ceiling corner, receiver on a table or low on a wall, arrays
  at arbitrary angles).

``LayoutArrays`` holds n layouts as stacked arrays so windows are simulated in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from invispose.schemas import MAX_ROUTERS
from invispose.sim.room import MATERIALS, random_furniture

F64 = npt.NDArray[np.float64]

N_TRAIN_LAYOUTS = 64
TRAIN_LAYOUT_SEED = 20_240_601
MAX_FURNITURE = 12
TRAIN_SIZES_M = np.arange(3.0, 10.01, 0.5)
TRAIN_HEIGHTS_M = np.asarray([2.5, 2.7, 3.0])
FAMILIES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "wall": ("drywall", "plaster", "brick", "wood"),
        "floor": ("wood", "carpet", "tile"),
        "ceiling": ("plaster", "drywall"),
    },
    "held-out": {
        "wall": ("concrete", "glass", "stone", "metal_backed"),
        "floor": ("marble", "concrete"),
        "ceiling": ("concrete",),
    },
}
MIN_LINK_DISTANCE_M = 1.5


@dataclass(slots=True)
class LayoutArrays:
    """n room layouts with one router placement each, as stacked arrays."""

    size_m: F64  # (n, 3)
    gamma: F64  # (n, 6) signed reflection coefficient per surface
    furniture_m: F64  # (n, F, 3)
    furniture_rcs_m2: F64  # (n, F) zero for unused slots
    furniture_phase: F64  # (n, F)
    tx_centre_m: F64  # (n, 3)
    rx_centre_m: F64  # (n, 3)
    tx_axis: F64  # (n, 3) unit, horizontal
    rx_axis: F64  # (n, 3)
    layout_id: npt.NDArray[np.int64]  # (n,) index in the training family, -1 held out

    def __len__(self) -> int:
        return int(self.size_m.shape[0])

    def take(self, index: npt.ArrayLike) -> LayoutArrays:
        """The layouts at ``index``."""
        idx = np.asarray(index)
        return LayoutArrays(**{name: getattr(self, name)[idx] for name in self.__slots__})


def _off_grid(rng: np.random.Generator, n: int, lo: float, hi: float, grid: F64) -> F64:
    """Uniform values in [lo, hi] at least 0.06 from every value of ``grid``."""
    values = rng.uniform(lo, hi, n)
    for _ in range(8):
        near = np.abs(values[:, None] - grid[None, :]).min(axis=1) < 0.06
        if not near.any():
            break
        values[near] = rng.uniform(lo, hi, int(near.sum()))
    near = np.abs(values[:, None] - grid[None, :]).min(axis=1) < 0.06
    values[near] += 0.13  # still on the grid after 8 draws: step off it
    return values


def _wall_point(rng: np.random.Generator, size: F64, wall: npt.NDArray[np.int64]) -> F64:
    """A point 0.1 m in front of wall ``wall`` (0..3: x0, x1, y0, y1), and the wall axis."""
    n = size.shape[0]
    point = np.empty((n, 3))
    axis_along = np.where(wall < 2, 1, 0)  # walls x0/x1 run along y
    along = rng.uniform(0.0, 1.0, n) * (size[np.arange(n), axis_along] - 0.6) + 0.3
    across = np.where(wall % 2 == 0, 0.1, size[np.arange(n), 1 - axis_along] - 0.1)
    point[np.arange(n), axis_along] = along
    point[np.arange(n), 1 - axis_along] = across
    return point


def _train_placements(rng: np.random.Generator, size: F64) -> tuple[F64, F64, F64, F64]:
    """Wall-mounted transmitter and receiver, on opposite or adjacent walls."""
    n = size.shape[0]
    tx_wall = np.asarray(rng.integers(0, 4, n), dtype=np.int64)
    opposite = rng.random(n) < 0.6
    adjacent = np.where(tx_wall < 2, rng.integers(2, 4, n), rng.integers(0, 2, n))
    rx_wall = np.asarray(np.where(opposite, tx_wall ^ 1, adjacent), dtype=np.int64)
    tx = _wall_point(rng, size, tx_wall)
    rx = _wall_point(rng, size, rx_wall)
    tx[:, 2] = rng.uniform(0.8, 2.0, n)
    rx[:, 2] = rng.uniform(0.8, 1.5, n)
    axes = np.zeros((2, n, 3))
    for k, wall in enumerate((tx_wall, rx_wall)):
        axes[k, np.arange(n), np.where(wall < 2, 1, 0)] = 1.0  # arrays run along their wall
    return tx, rx, axes[0], axes[1]


def _held_out_placements(rng: np.random.Generator, size: F64) -> tuple[F64, F64, F64, F64]:
    """Ceiling-corner transmitter; receiver on a table in the room or low on a wall."""
    n = size.shape[0]
    corner = rng.integers(0, 2, (n, 2))
    tx = np.empty((n, 3))
    tx[:, :2] = np.where(corner == 0, 0.2, size[:, :2] - 0.2)
    tx[:, 2] = size[:, 2] - 0.15
    on_table = np.asarray(rng.random(n) < 0.5)
    table = rng.uniform(0.0, 1.0, (n, 3)) * np.c_[size[:, :2] - 2.0, np.ones(n)] + 1.0
    table[:, 2] = rng.uniform(0.7, 0.9, n)
    low = _wall_point(rng, size, np.asarray(rng.integers(0, 4, n), dtype=np.int64))
    low[:, 2] = rng.uniform(0.3, 0.6, n)
    rx = np.where(on_table[:, None], table, low)
    angles = rng.uniform(0.0, np.pi, (2, n))
    axes = np.stack((np.cos(angles), np.sin(angles), np.zeros((2, n))), axis=-1)  # (2, n, 3)
    return tx, rx, axes[0], axes[1]


def _placements(rng: np.random.Generator, size: F64, family: str) -> tuple[F64, F64, F64, F64]:
    """One router placement per room of ``family``: tx, rx centres and array axes (n, 3)."""
    place = _train_placements if family == "train" else _held_out_placements
    tx, rx, tx_axis, rx_axis = place(rng, size)
    short = np.linalg.norm(tx - rx, axis=1) < MIN_LINK_DISTANCE_M
    if short.any():  # move the receiver to the far side of the room
        rx[short, :2] = size[short, :2] - tx[short, :2]
    return tx, rx, tx_axis, rx_axis


def with_placement(layouts: LayoutArrays, placement: tuple[F64, F64, F64, F64]) -> LayoutArrays:
    """The same rooms with another router's tx/rx centres and axes."""
    out = layouts.take(np.arange(len(layouts)))
    out.tx_centre_m, out.rx_centre_m, out.tx_axis, out.rx_axis = placement
    return out


@lru_cache(maxsize=1)
def _train_router_placements() -> tuple[tuple[F64, F64, F64, F64], ...]:
    """Placements of routers 1.. of each training layout (router 0 is the layout's own)."""
    sizes = train_layouts().size_m
    return tuple(
        _placements(np.random.default_rng([TRAIN_LAYOUT_SEED, r]), sizes, "train")
        for r in range(1, MAX_ROUTERS)
    )


def router_layouts(
    rng: np.random.Generator, layouts: LayoutArrays, family: str, router: int
) -> LayoutArrays:
    """The rooms of ``layouts`` as router ``router`` of their space sees them.

    Router 0 is the layout's own placement. Training layouts have fixed placements for
    routers 1-3 (the same on every machine); held-out rooms get fresh placements.
    """
    if not 0 <= router < MAX_ROUTERS:
        raise ValueError(f"router must be 0..{MAX_ROUTERS - 1}, got {router}")
    if router == 0:
        return layouts
    if family == "train":
        tx, rx, tx_axis, rx_axis = _train_router_placements()[router - 1]
        ids = layouts.layout_id
        return with_placement(layouts, (tx[ids], rx[ids], tx_axis[ids], rx_axis[ids]))
    return with_placement(layouts, _placements(rng, layouts.size_m, family))


def sample_layouts(rng: np.random.Generator, n: int, family: str) -> LayoutArrays:
    """n random layouts of ``family`` ("train" or "held-out")."""
    mats = FAMILIES[family]
    if family == "train":
        size = np.c_[
            rng.choice(TRAIN_SIZES_M, (n, 2)), rng.choice(TRAIN_HEIGHTS_M, n)
        ].astype(np.float64)
    else:
        size = np.c_[
            _off_grid(rng, n, 3.0, 10.0, TRAIN_SIZES_M),
            _off_grid(rng, n, 3.0, 10.0, TRAIN_SIZES_M),
            _off_grid(rng, n, 2.4, 3.2, TRAIN_HEIGHTS_M),
        ]
    walls = rng.choice(len(mats["wall"]), (n, 4))
    floors = rng.choice(len(mats["floor"]), n)
    ceilings = rng.choice(len(mats["ceiling"]), n)
    gamma = np.empty((n, 6))
    for i in range(n):
        names = [mats["wall"][w] for w in walls[i]]
        names += [mats["floor"][floors[i]], mats["ceiling"][ceilings[i]]]
        gamma[i] = [-rng.uniform(*MATERIALS[name]) for name in names]
    furniture = np.zeros((n, MAX_FURNITURE, 3))
    rcs = np.zeros((n, MAX_FURNITURE))
    phase = np.zeros((n, MAX_FURNITURE))
    counts = rng.integers(5, MAX_FURNITURE + 1, n)
    for i in range(n):
        c = int(counts[i])
        furniture[i, :c], rcs[i, :c], phase[i, :c] = random_furniture(rng, size[i], c)
    tx, rx, tx_axis, rx_axis = _placements(rng, size, family)
    return LayoutArrays(
        size_m=size,
        gamma=gamma,
        furniture_m=furniture,
        furniture_rcs_m2=rcs,
        furniture_phase=phase,
        tx_centre_m=tx,
        rx_centre_m=rx,
        tx_axis=tx_axis,
        rx_axis=rx_axis,
        layout_id=np.full(n, -1, dtype=np.int64),
    )


@lru_cache(maxsize=1)
def train_layouts() -> LayoutArrays:
    """The finite training family (the same on every machine and run)."""
    layouts = sample_layouts(np.random.default_rng(TRAIN_LAYOUT_SEED), N_TRAIN_LAYOUTS, "train")
    layouts.layout_id = np.arange(N_TRAIN_LAYOUTS, dtype=np.int64)
    return layouts


def layouts_for(rng: np.random.Generator, n: int, family: str) -> LayoutArrays:
    """n layouts for windows: drawn from the training set, or fresh held-out rooms."""
    if family == "train":
        return train_layouts().take(rng.integers(0, N_TRAIN_LAYOUTS, n))
    return sample_layouts(rng, n, "held-out")
