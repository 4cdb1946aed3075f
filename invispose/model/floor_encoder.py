"""The floor maps as the model sees them: map tokens and peak priors for the person slots.

``MapEncoder`` turns a space window's per-router back-projection maps (B, R, M, M) into
M·M tokens that carry where on the floor each cell is (so attention can read a place), and
``map_peaks`` finds the K strongest separated peaks of the fused map: each person slot
starts from one (DETR with anchors), so the untrained model already answers what the
classical localiser answers and learning refines it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: peaks closer than this many cells to a stronger one are the same person
PEAK_SUPPRESS_CELLS = 2


def compress(maps: Tensor) -> Tensor:
    """Median-normalised maps (a few to hundreds) to a tame range: log(1 + x)."""
    return torch.log1p(maps.clamp(min=0.0))


WeightsKey = tuple[tuple[int, int], ...]


def weights_key(*modules: nn.Module) -> WeightsKey | None:
    """What identifies the modules' parameter values now (storage and in-place version of
    each), or None where a result must not be reused: gradients recorded, or autocast on.

    What depends on weights alone (the cells' embedded positions, their key/value bases)
    is then computed once per set of weights at inference instead of on every forward.
    """
    params = [p for m in modules for p in m.parameters()]
    if torch.is_grad_enabled() or not params or torch.is_autocast_enabled(params[0].device.type):
        return None
    return tuple((p.data_ptr(), p._version) for p in params)


class Reused:
    """One value computed from weights alone, kept while its key (``weights_key`` and what
    else it depends on) stays the same; a None key computes afresh and keeps nothing."""

    def __init__(self) -> None:
        self._key: object = None
        self._value: Tensor | None = None

    def get(self, key: object, compute: Callable[[], Tensor]) -> Tensor:
        if key is None or key != self._key or self._value is None:
            value = compute()
            self._key, self._value = (key, value) if key is not None else (None, None)
            return value
        return self._value


class MapCells(NamedTuple):
    """A space window's map cells before the encoder's output layer: the tokens are
    ``out(features) + position``, kept apart so attention can project them at C wide."""

    features: Tensor  # (B, M·M, C) convolution features per cell, x-major like the grid
    position: Tensor  # (M·M, D) where each cell is, embedded
    out: nn.Linear  # C -> D
    key: tuple[object, ...] | None  # identifies position and out for reuse, None: do not


class MapEncoder(nn.Module):
    """Per-router maps (B, R, M, M) + their sum -> tokens (B, M·M, D) with cell positions."""

    def __init__(self, n_routers: int, d_model: int, width: int = 32) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(n_routers + 1, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU(),
        )
        self.position = nn.Sequential(nn.Linear(2, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.out = nn.Linear(width, d_model)
        self._positions = Reused()  # (M·M, D) at inference

    def cells(self, maps: Tensor) -> MapCells:
        """The cells' parts; ``forward`` is their tokens."""
        m = maps.shape[-1]
        x = compress(maps)  # (B, R, M, M)
        x = torch.cat([x, x.sum(dim=1, keepdim=True)], dim=1)  # (B, R+1, M, M)
        h = self.convs(x)  # (B, C, M, M)
        weights = weights_key(self.position, self.out)
        key = None if weights is None else (m, str(maps.device), weights)
        position = self._positions.get(
            key, lambda: self.position(cell_fractions(m, maps.device)))  # (M·M, D)
        return MapCells(
            features=h.flatten(2).transpose(1, 2),  # (B, M·M, C)
            position=position,
            out=self.out,
            key=key,
        )

    def forward(self, maps: Tensor) -> Tensor:
        """Tokens (B, M·M, D); a cell's token knows its (x, y) as a fraction of the room."""
        c = self.cells(maps)
        out: Tensor = c.out(c.features) + c.position[None]
        return out  # (B, M·M, D)


def cell_fractions(m: int, device: torch.device) -> Tensor:
    """Cell centres (M·M, 2) as fractions of the room, x-major (the maps' layout)."""
    u = (torch.arange(m, device=device, dtype=torch.float32) + 0.5) / m  # (M,)
    x, y = torch.meshgrid(u, u, indexing="ij")  # (M, M)
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def map_peaks(maps: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k strongest separated peaks of the fused map: (B, k, 2) room fractions and (B, k)
    log strength. Found without gradients (they are inputs, like the maps themselves)."""
    with torch.no_grad():
        fused = compress(maps).sum(dim=1)  # (B, M, M)
        b, m, _ = fused.shape
        values = fused.clone()
        cells = cell_fractions(m, maps.device)  # (M·M, 2)
        xy, strength = [], []
        radius = 2 * PEAK_SUPPRESS_CELLS + 1
        for _ in range(k):
            flat = values.reshape(b, -1)  # (B, M·M)
            best = flat.argmax(dim=1)  # (B,)
            top = flat.gather(1, best[:, None])[:, 0]  # (B,)
            strength.append(top.clamp(min=0.0))
            # a flat map (no multi-antenna router) anchors at the room centre
            xy.append(torch.where((top > 0)[:, None], cells[best], torch.full_like(cells[best],
                                                                                   0.5)))
            hit = torch.zeros_like(flat)
            hit.scatter_(1, best[:, None], 1.0)
            near = F.max_pool2d(hit.reshape(b, 1, m, m), radius, 1, PEAK_SUPPRESS_CELLS) > 0
            values = values.masked_fill(near[:, 0], float("-inf"))
        return torch.stack(xy, dim=1), torch.stack(strength, dim=1)  # (B, k, 2), (B, k)
