"""Rooms and radios: box rooms with reflecting surfaces, furniture, and antenna arrays.

Room coordinates (ARCHITECTURE.md §3): metres, x along the front wall (width), y depth
away from the front wall, z up, origin at a floor corner. The six surfaces are ordered
x=0, x=W, y=0 (front wall), y=D, z=0 (floor), z=H (ceiling).

Specular paths come from image sources: in a box every image of the lattice is a valid
path, so the images up to second order are enumerated by a per-axis code (none, low
wall, high wall, low then high, high then low) with total order <= 2: 1 + 6 + 18 = 25
paths counting the line of sight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from invispose.errors import SimulationError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: amplitude reflection coefficient ranges |Γ| per material at 2-6 GHz (normal incidence)
MATERIALS: dict[str, tuple[float, float]] = {
    "drywall": (0.22, 0.34),
    "plaster": (0.30, 0.40),
    "brick": (0.40, 0.52),
    "wood": (0.18, 0.30),
    "carpet": (0.15, 0.25),
    "tile": (0.35, 0.45),
    "concrete": (0.50, 0.62),
    "glass": (0.35, 0.48),
    "metal_backed": (0.75, 0.90),
    "stone": (0.45, 0.58),
    "marble": (0.42, 0.55),
}
SURFACES = ("x0", "x1", "y0", "y1", "z0", "z1")

# per-axis image codes: (order, sign of the coordinate, multiple of 2*size added)
_AXIS_CODES = ((0, 1.0, 0.0), (1, -1.0, 0.0), (1, -1.0, 1.0), (2, 1.0, 1.0), (2, 1.0, -1.0))


def _image_table() -> tuple[npt.NDArray[np.int64], F64, F64, npt.NDArray[np.int64]]:
    """All images of order <= 2 as (codes (P,3), sign (P,3), shift (P,3), surfaces (P,6)).

    ``surfaces[p, s]`` counts how often image p reflects off surface s.
    """
    codes, signs, shifts, hits = [], [], [], []
    for cx in range(5):
        for cy in range(5):
            for cz in range(5):
                combo = (cx, cy, cz)
                if sum(_AXIS_CODES[c][0] for c in combo) > 2:
                    continue
                count = [0] * 6
                for axis, c in enumerate(combo):
                    low, high = 2 * axis, 2 * axis + 1
                    if c in (1, 3, 4):
                        count[low] += 1
                    if c in (2, 3, 4):
                        count[high] += 1
                codes.append(combo)
                signs.append([_AXIS_CODES[c][1] for c in combo])
                shifts.append([_AXIS_CODES[c][2] for c in combo])
                hits.append(count)
    order = np.argsort([sum(_AXIS_CODES[c][0] for c in combo) for combo in codes], kind="stable")
    return (
        np.asarray(codes)[order],
        np.asarray(signs, dtype=np.float64)[order],
        np.asarray(shifts, dtype=np.float64)[order],
        np.asarray(hits, dtype=np.int64)[order],
    )


IMAGE_CODES, IMAGE_SIGN, IMAGE_SHIFT, IMAGE_HITS = _image_table()  # (25, 3) ... (25, 6)
N_SPECULAR = len(IMAGE_CODES)  # line of sight first, then 6 first-order, 18 second-order


def image_sources(points_m: npt.ArrayLike, room_size_m: npt.ArrayLike) -> F64:
    """Image positions of points (..., 3) in rooms (..., 3): float64 (..., 25, 3)."""
    p = np.asarray(points_m, dtype=np.float64)[..., None, :]  # (..., 1, 3)
    size = np.asarray(room_size_m, dtype=np.float64)[..., None, :]  # (..., 1, 3)
    images: F64 = IMAGE_SIGN * p + IMAGE_SHIFT * 2.0 * size  # (..., 25, 3)
    return images


def image_gains(gamma: npt.ArrayLike) -> F64:
    """Reflection gain of each image given surface coefficients (..., 6): (..., 25)."""
    g = np.asarray(gamma, dtype=np.float64)[..., None, :]  # (..., 1, 6)
    gains: F64 = np.prod(np.where(IMAGE_HITS > 0, g**IMAGE_HITS, 1.0), axis=-1)  # (..., 25)
    return gains


@dataclass(slots=True)
class Room:
    """A box room: size, surface materials and reflection coefficients, furniture."""

    size_m: F64  # (3,) width x, depth y, height z
    materials: tuple[str, ...]  # (6,) material per surface, in SURFACES order
    gamma: F64  # (6,) signed amplitude reflection coefficient per surface
    furniture_m: F64 = field(default_factory=lambda: np.zeros((0, 3)))  # (F, 3) scatterers
    furniture_rcs_m2: F64 = field(default_factory=lambda: np.zeros(0))  # (F,)
    furniture_phase: F64 = field(default_factory=lambda: np.zeros(0))  # (F,) reflection phase

    def __post_init__(self) -> None:
        size = np.asarray(self.size_m, dtype=np.float64)
        if size.shape != (3,) or np.any(size <= 0.5):
            raise SimulationError(f"room size must be three lengths > 0.5 m, got {self.size_m}")
        self.size_m = size

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        size_m: npt.ArrayLike,
        wall: str = "drywall",
        floor: str = "wood",
        ceiling: str = "plaster",
        n_furniture: int | None = None,
    ) -> Room:
        """A room of the given size with seeded reflection values and furniture."""
        for name in (wall, floor, ceiling):
            if name not in MATERIALS:
                known = ", ".join(sorted(MATERIALS))
                raise SimulationError(f"unknown material {name!r} (known: {known})")
        size = np.asarray(size_m, dtype=np.float64)
        materials = (wall, wall, wall, wall, floor, ceiling)
        gamma = -np.asarray([rng.uniform(*MATERIALS[m]) for m in materials])
        count = int(rng.integers(5, 13)) if n_furniture is None else n_furniture
        furniture, rcs, phase = random_furniture(rng, size, count)
        return cls(size, materials, gamma, furniture, rcs, phase)


def random_furniture(
    rng: np.random.Generator, size_m: npt.ArrayLike, count: int
) -> tuple[F64, F64, F64]:
    """``count`` furniture scatterers near the walls: positions, RCS and reflection phase."""
    size = np.asarray(size_m, dtype=np.float64)
    pos = rng.uniform(0.0, 1.0, (count, 3)) * size  # (F, 3)
    # furniture stands along the walls: pull one horizontal coordinate towards a wall
    axis = rng.integers(0, 2, count)
    near_high = rng.random(count) < 0.5
    offset = rng.uniform(0.25, 0.7, count)
    along = np.where(near_high, size[axis] - offset, offset)
    pos[np.arange(count), axis] = along
    pos[:, 2] = rng.uniform(0.3, 1.2, count)
    rcs = np.exp(rng.uniform(np.log(0.3), np.log(8.0), count))  # m²: chair .. TV, cabinet
    phase = rng.uniform(0.0, 2.0 * np.pi, count)
    return pos, rcs, phase
