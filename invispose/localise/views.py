"""RouterViews from what the runtime and the simulator hand over: windows and batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from invispose.localise.backprojection import RouterView
from invispose.schemas import CsiWindow, FloatArray, WindowBatch


def views_from_windows(windows: Sequence[CsiWindow]) -> list[RouterView]:
    """One view per router window of a space."""
    return [
        RouterView(
            dynamic=w.dynamic,
            static=w.static,
            tx_pos_m=w.tx_pos_m,
            rx_pos_m=w.rx_pos_m,
            carrier_hz=float(w.carrier_hz),
            subcarrier_hz=w.subcarrier_hz,
            link_phase=w.link_phase,
        )
        for w in windows
    ]


def _measured(
    link_phase: FloatArray | None, index: int, links: npt.NDArray[np.intp]
) -> FloatArray | None:
    """A router's measured chain phases in a batch, or None where it has none (NaN)."""
    if link_phase is None:
        return None
    phases = link_phase[index, links]  # (L_r,)
    return phases if bool(np.all(np.isfinite(phases))) else None


def views_from_batch(batch: WindowBatch, index: int) -> list[RouterView]:
    """The router views of space window ``index`` of a batch (``link_router`` order)."""
    routers = batch.link_router[index]  # (L,)
    views = []
    for r in range(int(batch.n_routers[index])):
        links = np.flatnonzero(routers == r)  # (L_r,)
        if not links.size:
            continue
        views.append(
            RouterView(
                dynamic=batch.dynamic[index, links],
                static=batch.static[index, links],
                tx_pos_m=batch.tx_pos_m[index, links],
                rx_pos_m=batch.rx_pos_m[index, links],
                carrier_hz=float(batch.carrier_hz[index, links[0]]),
                subcarrier_hz=batch.subcarrier_hz[index, links[0]],
                link_phase=_measured(batch.link_phase, index, links),
            )
        )
    return views
