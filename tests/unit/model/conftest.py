"""A tiny synthetic stand-in for the simulator: CSI whose bumps encode where people stand.

Each person's position along the room's x axis shows as an amplitude bump over the
subcarriers, its y position as a phase bump; the pose is a fixed standing skeleton at
that position. A model that reads the bumps beats the mean pose by a wide margin.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from invispose.schemas import MAX_PERSONS, N_KEYPOINTS, WindowBatch

# A standing skeleton, metres relative to the hip centre (x right, y depth, z up).
SKELETON_M = np.array(
    [
        [0.0, 0.0, 0.65], [0.03, 0.0, 0.68], [-0.03, 0.0, 0.68], [0.07, 0.0, 0.66],
        [-0.07, 0.0, 0.66], [0.18, 0.0, 0.45], [-0.18, 0.0, 0.45], [0.22, 0.0, 0.18],
        [-0.22, 0.0, 0.18], [0.24, 0.0, -0.05], [-0.24, 0.0, -0.05], [0.1, 0.0, 0.0],
        [-0.1, 0.0, 0.0], [0.1, 0.0, -0.45], [-0.1, 0.0, -0.45], [0.1, 0.0, -0.88],
        [-0.1, 0.0, -0.88],
    ],
    np.float32,
)
assert SKELETON_M.shape == (N_KEYPOINTS, 3)

MakeBatch = Callable[..., WindowBatch]


def synthetic_batch(
    seed: int,
    n_windows: int,
    *,
    n_links: int | tuple[int, int] = 3,
    window_samples: int = 16,
    n_subcarriers: int = 8,
    max_count: int = 2,
) -> WindowBatch:
    """A WindowBatch whose CSI encodes each person's floor position (see module docstring)."""
    rng = np.random.default_rng(seed)
    lo, hi = (n_links, n_links) if isinstance(n_links, int) else n_links
    links = rng.integers(lo, hi + 1, n_windows)  # (N,)
    n_l, n_t, n_s, p = int(links.max()), window_samples, n_subcarriers, MAX_PERSONS
    room = rng.uniform((4.0, 3.0, 2.4), (7.0, 6.0, 3.0), (n_windows, 3)).astype(np.float32)
    counts = rng.integers(0, max_count + 1, n_windows)  # (N,)
    person_mask = np.zeros((n_windows, p), bool)
    for i, c in enumerate(counts):
        person_mask[i, rng.choice(p, c, replace=False)] = True  # any slots, in any order
    pos_norm = rng.uniform(0.15, 0.85, (n_windows, p, 2)).astype(np.float32)  # (N, P, 2)
    centre = np.concatenate(
        [pos_norm * room[:, None, :2], np.full((n_windows, p, 1), 0.95, np.float32)], axis=2
    )  # (N, P, 3) hip centre
    keypoints = centre[:, :, None] + SKELETON_M  # (N, P, J, 3)
    keypoints[~person_mask] = 0.0
    grid = (np.arange(n_s) + 0.5) / n_s  # (S,)
    bumps_x = np.exp(-((grid[None, None] - pos_norm[..., :1]) ** 2) / 0.01)  # (N, P, S)
    bumps_y = np.exp(-((grid[None, None] - pos_norm[..., 1:]) ** 2) / 0.01)  # (N, P, S)
    bumps_x *= person_mask[..., None]
    bumps_y *= person_mask[..., None]
    gain = rng.uniform(0.5, 2.0, (n_windows, n_l, 1, 1))  # per-link AGC-like scale
    noise = 0.05 * rng.standard_normal((n_windows, n_l, n_t, n_s))
    amplitude = gain * (1.0 + bumps_x.sum(1)[:, None, None, :] + noise)  # (N, L, T, S)
    phase = bumps_y.sum(1)[:, None, None, :] + 0.05 * rng.standard_normal(amplitude.shape)
    link_mask = np.arange(n_l)[None] < links[:, None]  # (N, L)
    rel_phase = 0.05 * rng.standard_normal(amplitude.shape) * link_mask[:, :, None, None]
    amplitude *= link_mask[:, :, None, None]
    phase *= link_mask[:, :, None, None]
    tx = rng.uniform(0, 1, (n_windows, n_l, 3)) * room[:, None] * link_mask[..., None]
    rx = rng.uniform(0, 1, (n_windows, n_l, 3)) * room[:, None] * link_mask[..., None]
    activity = np.where(person_mask, rng.integers(0, 2, (n_windows, p)), -1).astype(np.int8)
    return WindowBatch(
        amplitude=amplitude.astype(np.float32),
        phase=phase.astype(np.float32),
        rel_phase=rel_phase.astype(np.float32),
        dynamic=(phase * link_mask[:, :, None, None]).astype(np.complex64),
        static=np.ones((n_windows, n_l, n_s), np.complex64) * link_mask[..., None],
        subcarrier_hz=np.broadcast_to(
            np.linspace(-8.75e6, 8.75e6, n_s, dtype=np.float32), (n_windows, n_l, n_s)
        ).copy(),
        carrier_hz=np.where(link_mask, np.float32(5.18e9), np.float32(0.0)),
        link_router=np.where(link_mask, 0, -1).astype(np.int8),
        valid=np.ones((n_windows, n_t), bool),
        link_mask=link_mask,
        tx_pos_m=tx.astype(np.float32),
        rx_pos_m=rx.astype(np.float32),
        room_size_m=room,
        keypoints_m=keypoints.astype(np.float32),
        person_mask=person_mask,
        activity=activity,
        falling=person_mask & (rng.random((n_windows, p)) < 0.1),
        n_routers=np.ones(n_windows, np.int8),
        floor_maps=floor_maps(pos_norm, person_mask, rng),
        hardware=["synthetic"] * n_windows,
    )


def floor_maps(
    pos_norm: np.ndarray, person_mask: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Router 0's map: a peak where each person stands on a noisy floor; (N, 4, 24, 24)."""
    n = len(pos_norm)
    cells = (np.arange(24) + 0.5) / 24  # (M,)
    dx = cells[None, None, :, None] - pos_norm[..., 0, None, None]  # (N, P, M, 1)
    dy = cells[None, None, None, :] - pos_norm[..., 1, None, None]  # (N, P, 1, M)
    bumps = 10.0 * np.exp(-(dx**2 + dy**2) / 0.004) * person_mask[..., None, None]
    maps = np.zeros((n, 4, 24, 24), np.float32)
    maps[:, 0] = 1.0 + bumps.sum(axis=1) + rng.uniform(0.0, 0.5, (n, 24, 24))
    return maps


class SyntheticSource:
    """A training BatchSource over the synthetic generator: batch of step s = seed (base, s)."""

    def __init__(self, seed: int, batch_size: int, **kwargs: object) -> None:
        self.seed, self.batch_size, self.kwargs = seed, batch_size, kwargs

    def batch(self, step: int) -> WindowBatch:
        return synthetic_batch(self.seed * 100_000 + step, self.batch_size, **self.kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: the tests share a small machine, and results must not vary."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def make_batch() -> MakeBatch:
    """The synthetic generator."""
    return synthetic_batch


@pytest.fixture()
def make_source() -> Callable[..., SyntheticSource]:
    """Factory of synthetic training sources."""
    return SyntheticSource
