"""Model inputs: simulator batches and runtime windows as the tensors PoseNet takes.

Shapes use B rows (space windows or router windows), L links (padded to the batch's
largest), T time steps, S subcarriers, R routers (maps), M map cells per side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from invispose.csi.grid import SPEED_OF_LIGHT_MPS
from invispose.errors import ModelError
from invispose.localise.maps import MAP_CELLS
from invispose.localise.maps import floor_maps as space_maps
from invispose.localise.views import views_from_windows
from invispose.schemas import MAX_ROUTERS, CsiWindow, WindowBatch

#: the smallest room edge the model accepts; guards the division by room size
MIN_ROOM_EDGE_M = 0.5


@dataclass(slots=True)
class ModelInputs:
    """A batch of windows as tensors; padded links are False in ``link_mask``."""

    amplitude: Tensor  # (B, L, T, S) float32
    phase: Tensor  # (B, L, T, S) float32, sanitized radians
    rel_phase: Tensor  # (B, L, T, S) float32, radians against link 0, window mean removed
    valid: Tensor  # (B, T) bool, time steps that held a packet
    link_mask: Tensor  # (B, L) bool, real links
    tx_pos_m: Tensor  # (B, L, 3) float32
    rx_pos_m: Tensor  # (B, L, 3) float32
    room_size_m: Tensor  # (B, 3) float32
    dynamic: Tensor  # (B, L, T, S, 2) float32 real and imaginary parts
    carrier_hz: Tensor  # (B, L) float32
    antenna_offsets_wl: Tensor  # (B, L, 6) tx and rx element offsets from their array centre
    floor_maps: Tensor  # (B, R, M, M) float32

    def to(self, device: torch.device | str) -> ModelInputs:
        """The same inputs on another device."""
        return ModelInputs(*(getattr(self, name).to(device) for name in self.__slots__))


def inputs_from_batch(batch: WindowBatch, device: torch.device | str = "cpu") -> ModelInputs:
    """Tensors of a simulator or shard batch (already padded, with its link mask)."""
    return ModelInputs(
        amplitude=torch.from_numpy(np.ascontiguousarray(batch.amplitude, np.float32)),
        phase=torch.from_numpy(np.ascontiguousarray(batch.phase, np.float32)),
        rel_phase=torch.from_numpy(np.ascontiguousarray(batch.rel_phase, np.float32)),
        valid=torch.from_numpy(np.asarray(batch.valid, bool)),
        link_mask=torch.from_numpy(np.asarray(batch.link_mask, bool)),
        tx_pos_m=torch.from_numpy(np.ascontiguousarray(batch.tx_pos_m, np.float32)),
        rx_pos_m=torch.from_numpy(np.ascontiguousarray(batch.rx_pos_m, np.float32)),
        room_size_m=torch.from_numpy(np.ascontiguousarray(batch.room_size_m, np.float32)),
        dynamic=torch.from_numpy(complex_channels(batch.dynamic)),
        carrier_hz=torch.from_numpy(np.ascontiguousarray(batch.carrier_hz, np.float32)),
        antenna_offsets_wl=torch.from_numpy(
            antenna_offsets_wl(batch.tx_pos_m, batch.rx_pos_m, batch.link_router, batch.carrier_hz)
        ),
        floor_maps=torch.from_numpy(np.ascontiguousarray(batch.floor_maps, np.float32)),
    ).to(device)


def complex_channels(z: np.ndarray) -> np.ndarray:
    """Complex (...,) as float32 (..., 2): real and imaginary parts."""
    out = np.empty((*z.shape, 2), np.float32)
    out[..., 0], out[..., 1] = z.real, z.imag
    return out


def antenna_offsets_wl(
    tx_pos_m: np.ndarray, rx_pos_m: np.ndarray, link_router: np.ndarray, carrier_hz: np.ndarray
) -> np.ndarray:
    """Each link's tx and rx element offset from its router's array centres, in wavelengths.

    tx/rx (B, L, 3), link_router (B, L) (-1 padding), carrier (B, L) -> float32 (B, L, 6).
    Angles of arrival live in these (half a wavelength apart on most arrays); in room
    metres they would be ~0.005 of the room, invisible next to the positions.
    """
    out = np.zeros((*link_router.shape, 6), np.float32)
    wavelength = np.where(carrier_hz > 0, SPEED_OF_LIGHT_MPS / np.maximum(carrier_hz, 1.0), 0.0)
    for r in np.unique(link_router[link_router >= 0]).tolist():
        mine = link_router == r  # (B, L)
        count = np.maximum(mine.sum(axis=1, keepdims=True), 1)[..., None]  # (B, 1, 1)
        for half, pos in ((slice(0, 3), tx_pos_m), (slice(3, 6), rx_pos_m)):
            centre = (pos * mine[..., None]).sum(axis=1, keepdims=True) / count  # (B, 1, 3)
            offset = (pos - centre) / np.maximum(wavelength, 1e-6)[..., None]  # (B, L, 3)
            out[..., half] = np.where(mine[..., None], offset, out[..., half])
    return out


def inputs_from_windows(
    windows: Sequence[CsiWindow], device: torch.device | str = "cpu"
) -> ModelInputs:
    """Stack runtime windows into one batch (a row per window), padding links."""
    return inputs_from_hops([[w] for w in windows], device, floor_maps=False)


def inputs_from_hops(
    hops: Sequence[Sequence[CsiWindow]],
    device: torch.device | str = "cpu",
    floor_maps: bool = True,
) -> ModelInputs:
    """A row per space hop: its routers' links one after another, padded to the largest.

    ``floor_maps``: back-project each router onto the room grid (``localise.maps``), as
    the space-input model needs; else the maps are zero.
    """
    if not hops or any(not hop for hop in hops):
        raise ModelError("no windows to batch")
    windows = [w for hop in hops for w in hop]
    if any(w.amplitude.ndim != 3 for w in windows):
        raise ModelError("window amplitude must be (L, T, S)")
    n_time, n_sub = windows[0].amplitude.shape[1:]
    n_links = max(sum(w.n_links for w in hop) for hop in hops)
    n = len(hops)
    amplitude = np.zeros((n, n_links, n_time, n_sub), np.float32)  # (B, L, T, S)
    phase = np.zeros_like(amplitude)  # (B, L, T, S)
    rel_phase = np.zeros_like(amplitude)  # (B, L, T, S)
    dynamic = np.zeros(amplitude.shape, np.complex64)  # (B, L, T, S)
    valid = np.ones((n, n_time), bool)  # (B, T) steps where every router had a packet
    link_mask = np.zeros((n, n_links), bool)  # (B, L)
    router = np.full((n, n_links), -1, np.int64)  # (B, L)
    carrier = np.zeros((n, n_links), np.float32)  # (B, L)
    tx = np.zeros((n, n_links, 3), np.float32)  # (B, L, 3)
    rx = np.zeros_like(tx)  # (B, L, 3)
    room = np.zeros((n, 3), np.float32)  # (B, 3)
    maps = np.zeros((n, MAX_ROUTERS, MAP_CELLS, MAP_CELLS), np.float32)  # (B, R, M, M)
    for i, hop in enumerate(hops):
        start = 0
        for r, w in enumerate(hop):
            links = w.n_links
            shape_ok = w.amplitude.shape[1:] == (n_time, n_sub) and (
                w.phase.shape == w.rel_phase.shape == w.amplitude.shape == w.dynamic.shape
            )
            if links < 1 or not shape_ok:
                raise ModelError(
                    f"window of router {w.router_id!r} has shape {w.amplitude.shape}, "
                    f"expected (L>=1, {n_time}, {n_sub}) like the rest of the batch"
                )
            if not np.all(np.asarray(w.room_size_m) >= MIN_ROOM_EDGE_M):
                raise ModelError(
                    f"window of router {w.router_id!r} carries room size {w.room_size_m}; "
                    f"every edge must be at least {MIN_ROOM_EDGE_M} m"
                )
            part = slice(start, start + links)
            amplitude[i, part] = w.amplitude
            phase[i, part] = w.phase
            rel_phase[i, part] = w.rel_phase
            dynamic[i, part] = w.dynamic
            valid[i] &= w.valid
            link_mask[i, part] = True
            router[i, part] = r
            carrier[i, part] = w.carrier_hz
            tx[i, part] = w.tx_pos_m
            rx[i, part] = w.rx_pos_m
            start += links
        room[i] = hop[0].room_size_m
        if floor_maps:
            maps[i] = space_maps(views_from_windows(hop), room[i])
    offsets = antenna_offsets_wl(tx, rx, router, carrier)
    arrays = (amplitude, phase, rel_phase, valid, link_mask, tx, rx, room,
              complex_channels(dynamic), carrier, offsets, maps)
    batch = ModelInputs(*(torch.from_numpy(a) for a in arrays))
    return batch.to(device)
