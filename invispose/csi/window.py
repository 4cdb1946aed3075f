"""Model windows: CSI packets to per-link amplitude and phases on the canonical grid.

Per link, a window holds amplitude, sanitized phase and relative phase (against link 0).

``window_arrays`` is the array transform (shared with the simulator, which calls it on
large batches); ``Windower`` is one router's ring buffer that turns a stream of
``CsiFrame``s into ``CsiWindow``s.

Links are ordered tx-major: link ``l = tx * n_rx + rx``. Relative phase is zero on
link 0, so a one-link router has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.csi.dynamic import window_dynamic
from invispose.csi.grid import (
    N_CANONICAL,
    _derotated_canonical,
    _positions,
    canonical_frequencies_hz,
    kept_mask,
)
from invispose.csi.sanitize import (
    center_relative_phasors,
    normalize_window_amplitude,
    relative_phasor,
    sanitize_phase,
)
from invispose.csi.timegrid import nearest_indices, time_grid
from invispose.schemas import ComplexArray, CsiFrame, CsiWindow, FloatArray

logger = logging.getLogger(__name__)

DEFAULT_CARRIER_HZ = 2.437e9  # 2.4 GHz channel 6, when no frame names its channel
MAX_LAYOUTS = 4  # antenna/subcarrier layouts a Windower keeps buffers for


def window_arrays(
    csi: npt.ArrayLike,
    subcarriers: npt.ArrayLike,
    bandwidth_mhz: int,
    n_out: int = N_CANONICAL,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Amplitude, sanitized phase and relative phase per link on the canonical grid.

    ``csi`` is complex (..., T, n_tx, n_rx, n_sub). Returns (amplitude, phase, rel_phase),
    each float32 (..., L, T, n_out) with L = n_tx * n_rx in tx-major order. Amplitude is
    normalised per window over links, packets and subcarriers; phase has its per-packet,
    per-link line removed. The bulk phase slope is taken out at the hardware's own
    subcarrier spacing before resampling, so steep timing slopes cannot alias on the
    coarser grid. Relative phase is each link's phase against link 0, minus its circular
    mean over the window per link and subcarrier (``center_relative_phasors``); packets
    whose CSI is all zero (the simulator's missing packets) are left out of that mean and
    come out zero.
    """
    features = window_features(csi, subcarriers, bandwidth_mhz, n_out)
    return features.amplitude, features.phase, features.rel_phase


def packet_arrays(
    links: npt.ArrayLike,
    subcarriers: npt.ArrayLike,
    bandwidth_mhz: int,
    n_out: int = N_CANONICAL,
    keep: npt.NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, FloatArray, ComplexArray, ComplexArray]:
    """Per-packet amplitude, phase, relative phasor and coherent canonical CSI.

    links (..., L, n_sub) -> 4 x (..., L, n_out). The per-packet core of
    ``window_arrays`` and ``window_features``; ``keep`` (n_sub,) fixes the kept
    subcarriers (default: decided from this batch, see ``grid.kept_mask``). One timing
    slope per packet is taken out of all links alike (the links stay phase-coherent, as
    ``dynamic.window_dynamic`` needs); amplitude is raw (normalised per window); the
    relative phase is a unit phasor (``relative_phasor``), centred and turned into an
    angle per window.
    """
    canon, _, _ = _derotated_canonical(
        links, subcarriers, bandwidth_mhz, n_out, keep, common_slope=True
    )  # (..., L, S) complex64
    amplitude = np.abs(canon).astype(np.float32)  # (..., L, S) raw; normalised per window
    phase = sanitize_phase(canon, _positions(n_out))  # (..., L, S)
    rel = relative_phasor(canon)  # (..., L, S) complex, against link 0
    return amplitude, phase, rel, canon


def kept_frequencies_hz(
    subcarriers: npt.ArrayLike, bandwidth_mhz: int, keep: npt.NDArray[np.bool_],
    n_out: int = N_CANONICAL,
) -> FloatArray:
    """Carrier offsets (n_out,) in Hz of the canonical points for the kept subcarriers."""
    sub = np.asarray(subcarriers, dtype=np.int64)  # (n_sub,)
    return canonical_frequencies_hz(sub[keep], n_out)


@dataclass(slots=True)
class WindowFeatures:
    """Everything the model and the classical localiser take from one router window."""

    amplitude: FloatArray  # float32 (..., L, T, S) normalised per window
    phase: FloatArray  # float32 (..., L, T, S) sanitized per packet and link
    rel_phase: FloatArray  # float32 (..., L, T, S) against link 0, window mean removed
    dynamic: ComplexArray  # complex64 (..., L, T, S) see ``dynamic.window_dynamic``
    static: ComplexArray  # complex64 (..., L, S)
    subcarrier_hz: FloatArray  # float32 (S,) offsets of the canonical points from the carrier


def window_features(
    csi: npt.ArrayLike,
    subcarriers: npt.ArrayLike,
    bandwidth_mhz: int,
    n_out: int = N_CANONICAL,
    gain_db: npt.ArrayLike | None = None,
) -> WindowFeatures:
    """All per-window features of CSI (..., T, n_tx, n_rx, n_sub); zero packets are gaps.

    The same arrays the ``Windower`` cuts from a stream of frames; ``gain_db`` (..., T)
    is the gain the hardware reported per packet, or None.
    """
    values = np.asarray(csi)  # (..., T, n_tx, n_rx, n_sub)
    if values.ndim < 4:
        raise ValueError(f"csi needs shape (..., T, n_tx, n_rx, n_sub), got {values.shape}")
    *lead, n_t, n_tx, n_rx, n_sub = values.shape
    links = values.reshape(*lead, n_t, n_tx * n_rx, n_sub)  # (..., T, L, n_sub) tx-major
    keep = kept_mask(subcarriers, bandwidth_mhz, links)  # (n_sub,)
    amplitude, phase, rel, canon = packet_arrays(
        links, subcarriers, bandwidth_mhz, n_out, keep
    )  # (..., T, L, S) each
    valid = np.any(values != 0, axis=(-3, -2, -1))  # (..., T) packets that arrived
    return _assemble(amplitude, phase, rel, canon, valid, gain_db,
                     kept_frequencies_hz(subcarriers, bandwidth_mhz, keep, n_out), n_tx)


def _assemble(
    amplitude: FloatArray, phase: FloatArray, rel: ComplexArray, canon: ComplexArray,
    valid: npt.NDArray[np.bool_], gain_db: npt.ArrayLike | None, subcarrier_hz: FloatArray,
    n_tx: int,
) -> WindowFeatures:
    """Per-packet arrays (..., T, L, S) of one window -> its features (see WindowFeatures).

    Links are tx-major over ``n_tx`` transmit streams.
    """
    mask = valid[..., None, None]  # (..., T, 1, 1)
    amplitude = np.where(mask, amplitude, np.float32(0.0))
    phase = np.where(mask, phase, np.float32(0.0))
    split = window_dynamic(canon, valid, gain_db=gain_db, n_tx=n_tx)
    return WindowFeatures(
        amplitude=normalize_window_amplitude(np.swapaxes(amplitude, -3, -2)),  # (..., L, T, S)
        phase=np.ascontiguousarray(np.swapaxes(phase, -3, -2)),
        rel_phase=center_relative_phasors(np.swapaxes(rel, -3, -2), valid),
        dynamic=split.dynamic,
        static=split.static,
        subcarrier_hz=subcarrier_hz,
    )


def link_positions(
    tx_pos_m: npt.ArrayLike, rx_pos_m: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Per-link transmit and receive positions, tx-major like ``window_arrays``.

    ``tx_pos_m`` (n_tx, 3), ``rx_pos_m`` (n_rx, 3); returns (tx (L, 3), rx (L, 3)) float32.
    """
    tx = np.asarray(tx_pos_m, dtype=np.float32).reshape(-1, 3)  # (n_tx, 3)
    rx = np.asarray(rx_pos_m, dtype=np.float32).reshape(-1, 3)  # (n_rx, 3)
    link_tx = np.repeat(tx, rx.shape[0], axis=0)  # (L, 3): tx0,tx0,..,tx1,..
    link_rx = np.tile(rx, (tx.shape[0], 1))  # (L, 3): rx0,rx1,..,rx0,..
    return link_tx, link_rx


def carrier_from_channel(channel: int | None) -> float | None:
    """Centre frequency in Hz of a 2.4 GHz or 5 GHz channel number, None if unknown."""
    if channel is None or channel <= 0:
        return None
    if channel == 14:
        return 2.484e9
    if channel < 14:
        return (2407 + 5 * channel) * 1e6
    if channel <= 177:
        return (5000 + 5 * channel) * 1e6
    return None


@dataclass(slots=True)
class _Ring:
    """Preallocated packets of one layout: CSI, times, and each packet's processed arrays.

    A packet is processed (canonical grid, raw amplitude, sanitized and uncentred
    relative phase) the first time a window needs it and kept: consecutive windows share
    most packets; normalising and centring are per window. The kept subcarriers
    (``grid.kept_mask``) are decided from the newest packets, again after 2, 4, 8 ...
    packets and then once per window's worth of new packets, so a source whose occupied
    band changes (Nexmon hearing 20 and 80 MHz frames) follows it.
    """

    csi: ComplexArray  # complex64 (capacity, n_tx, n_rx, n_sub)
    device_s: npt.NDArray[np.float64]  # (capacity,) NaN where empty
    amplitude: FloatArray  # float32 (capacity, L, S) valid where ``done``
    phase: FloatArray  # float32 (capacity, L, S)
    rel_phasor: ComplexArray  # complex64 (capacity, L, S) unit phasors against link 0
    canon: ComplexArray  # complex64 (capacity, L, S) coherent canonical CSI
    gain_db: npt.NDArray[np.float32]  # (capacity,) reported receiver gain, NaN if none
    done: npt.NDArray[np.bool_]  # (capacity,) slot processed with the current ``keep``
    subcarriers: npt.NDArray[np.int16]  # (n_sub,)
    bandwidth_mhz: int
    keep: npt.NDArray[np.bool_] | None = None  # (n_sub,) kept subcarriers, once decided
    subcarrier_hz: FloatArray | None = None  # (S,) canonical offsets for ``keep``
    keep_at: int = 0  # ``pushed`` when the kept set was decided
    pushed: int = 0  # packets pushed since the ring was (re)started
    head: int = 0  # next slot to write
    count: int = 0  # filled slots

    @classmethod
    def empty(cls, frame: CsiFrame, capacity: int, n_out: int) -> _Ring:
        n_tx, n_rx, n_sub = frame.shape
        return cls(
            csi=np.zeros((capacity, n_tx, n_rx, n_sub), dtype=np.complex64),
            device_s=np.full(capacity, np.nan),
            amplitude=np.zeros((capacity, n_tx * n_rx, n_out), dtype=np.float32),
            phase=np.zeros((capacity, n_tx * n_rx, n_out), dtype=np.float32),
            rel_phasor=np.zeros((capacity, n_tx * n_rx, n_out), dtype=np.complex64),
            canon=np.zeros((capacity, n_tx * n_rx, n_out), dtype=np.complex64),
            gain_db=np.full(capacity, np.nan, dtype=np.float32),
            done=np.zeros(capacity, dtype=bool),
            subcarriers=np.asarray(frame.subcarriers, dtype=np.int16).copy(),
            bandwidth_mhz=frame.bandwidth_mhz,
        )

    def push(self, frame: CsiFrame) -> None:
        self.csi[self.head] = frame.csi
        self.device_s[self.head] = frame.device_time_s
        self.gain_db[self.head] = np.nan if frame.agc_db is None else frame.agc_db
        self.done[self.head] = False
        self.pushed += 1
        self.head = (self.head + 1) % self.csi.shape[0]
        self.count = min(self.count + 1, self.csi.shape[0])

    def newest(self) -> int:
        return int((self.head - 1) % self.csi.shape[0])

    def clear(self) -> None:
        self.device_s.fill(np.nan)
        self.done.fill(False)
        self.keep = None
        self.keep_at = self.pushed = self.head = self.count = 0

    def process(self, slots: npt.NDArray[np.intp], window_samples: int) -> None:
        """Make sure ``slots`` (n,) hold processed amplitude, phase and relative phase."""
        since = self.pushed - self.keep_at
        if self.keep is None or since >= max(1, min(self.keep_at, window_samples)):
            # a changed decision invalidates what was processed with the old one
            n_recent = min(self.count, 2 * window_samples)
            recent = (self.head - 1 - np.arange(n_recent)) % self.csi.shape[0]  # (n,)
            rows = self.csi[recent].reshape(-1, self.csi.shape[-1])  # (n * L, n_sub)
            keep = kept_mask(self.subcarriers, self.bandwidth_mhz, rows)
            if self.keep is None or not np.array_equal(keep, self.keep):
                self.done.fill(False)
                self.subcarrier_hz = kept_frequencies_hz(
                    self.subcarriers, self.bandwidth_mhz, keep, self.amplitude.shape[-1]
                )
            self.keep, self.keep_at = keep, self.pushed
        todo = slots[~self.done[slots]]  # (m,)
        if todo.size == 0:
            return
        n_tx, n_rx, n_sub = self.csi.shape[1:]
        links = self.csi[todo].reshape(todo.size, n_tx * n_rx, n_sub)  # (m, L, n_sub)
        amplitude, phase, rel, canon = packet_arrays(
            links, self.subcarriers, self.bandwidth_mhz, self.amplitude.shape[-1], self.keep
        )  # (m, L, S) each
        self.amplitude[todo] = amplitude
        self.phase[todo] = phase
        self.rel_phasor[todo] = rel
        self.canon[todo] = canon
        self.done[todo] = True


def link_phases(chain_phase_rad: FloatArray | None, n_tx: int, n_rx: int) -> FloatArray | None:
    """Per-link phases (n_tx · n_rx,) tx-major of a window using the first n_tx, n_rx chains.

    ``chain_phase_rad`` (A, R): a router's measured chain phases, or None.
    """
    if chain_phase_rad is None or chain_phase_rad.ndim != 2:
        return None
    if chain_phase_rad.shape[0] < n_tx or chain_phase_rad.shape[1] < n_rx:
        return None
    out: FloatArray = np.ascontiguousarray(chain_phase_rad[:n_tx, :n_rx]).reshape(-1)
    return out


class Windower:
    """One router's ring buffer of CsiFrames, cut into CsiWindows on demand.

    Times: the uniform grid runs on the device clock (packet spacing as the hardware
    measured it, free of host scheduling jitter) and ends at the newest packet's device
    time; ``CsiWindow.t_end_s`` is that packet's arrival (host wall) time, so latency
    is measured from when its bytes arrived.

    Layout changes: frames are buffered per layout (n_tx, n_rx, subcarriers,
    bandwidth). A window uses the newest frame's layout and only the packets of that
    layout; grid points that only packets of another layout could fill are invalid.
    So an Intel 5300 with 2 transmit antennas switching Nrx 3 -> 2 gives 4-link windows
    (first two receive positions) while it reports 2 receive antennas, and 6-link
    windows again, with their history intact, when it switches back; no zero-padded
    fake links reach the model.
    Frames with more antennas than configured positions are dropped and counted.

    A device clock that jumps back by more than a window (reboot, counter reset)
    clears that layout's buffer.
    """

    def __init__(
        self,
        *,
        router_id: str,
        space_id: str,
        tx_pos_m: npt.ArrayLike,
        rx_pos_m: npt.ArrayLike,
        room_size_m: npt.ArrayLike,
        rate_hz: float = 100.0,
        window_samples: int = 64,
        n_subcarriers: int = N_CANONICAL,
        carrier_hz: float | None = None,
        capacity: int = 512,
        max_gap_s: float | None = None,
        chain_phase_rad: npt.ArrayLike | None = None,
    ) -> None:
        """``carrier_hz`` None: from the newest frame's channel, else 2.437 GHz.

        ``capacity`` packets are kept per layout (at least ``window_samples``); it bounds
        memory and must cover the window's span at the fastest burst rate expected.
        ``max_gap_s`` (default 1.5/rate_hz) is how far a grid point reaches for a packet.
        ``chain_phase_rad`` (n_tx, n_rx): measured chain phases, handed on with each window.
        """
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        if window_samples < 1 or n_subcarriers < 2:
            raise ValueError("window_samples must be >= 1 and n_subcarriers >= 2")
        self.router_id = router_id
        self.space_id = space_id
        self.tx_pos_m = np.asarray(tx_pos_m, dtype=np.float32).reshape(-1, 3)  # (n_tx, 3)
        self.rx_pos_m = np.asarray(rx_pos_m, dtype=np.float32).reshape(-1, 3)  # (n_rx, 3)
        self.room_size_m = np.asarray(room_size_m, dtype=np.float32).reshape(3)  # (3,)
        self.chain_phase_rad = (None if chain_phase_rad is None
                                else np.asarray(chain_phase_rad, dtype=np.float32))
        self.rate_hz = float(rate_hz)
        self.window_samples = int(window_samples)
        self.n_subcarriers = int(n_subcarriers)
        self.carrier_hz = carrier_hz
        self.capacity = max(int(capacity), self.window_samples)
        self.max_gap_s = 1.5 / self.rate_hz if max_gap_s is None else float(max_gap_s)
        self.window_span_s = (self.window_samples - 1) / self.rate_hz
        self.frames_pushed = 0
        self.frames_dropped = 0  # more antennas than configured positions
        self.buffer_resets = 0  # device clock jumped back
        self.windows_made = 0
        self._rings: dict[tuple[object, ...], _Ring] = {}
        self._current: tuple[object, ...] | None = None
        self._newest_device_s = float("-inf")
        self._newest_arrival_s = float("-inf")
        self._newest_channel: int | None = None

    def push(self, frame: CsiFrame) -> None:
        """Buffer one frame (bounded: the oldest packet of its layout is overwritten)."""
        n_tx, n_rx, _ = frame.shape
        if n_tx > len(self.tx_pos_m) or n_rx > len(self.rx_pos_m):
            if self.frames_dropped == 0:
                logger.warning(
                    "router %s: frame has %dx%d antennas, positions configured for %dx%d",
                    self.router_id,
                    n_tx,
                    n_rx,
                    len(self.tx_pos_m),
                    len(self.rx_pos_m),
                )
            self.frames_dropped += 1
            return
        key = (frame.shape, frame.bandwidth_mhz, np.asarray(frame.subcarriers).tobytes())
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) >= MAX_LAYOUTS:
                oldest = next(k for k in self._rings if k != self._current)
                del self._rings[oldest]
            ring = self._rings[key] = _Ring.empty(frame, self.capacity, self.n_subcarriers)
        elif ring.count and frame.device_time_s < (
            ring.device_s[ring.newest()] - self.window_span_s - self.max_gap_s
        ):
            ring.clear()
            self.buffer_resets += 1
        ring.push(frame)
        # the newest-pushed layout leads; dict order doubles as recency for eviction
        self._rings[key] = self._rings.pop(key)
        self._current = key
        self._newest_device_s = frame.device_time_s
        self._newest_arrival_s = frame.arrival_time_s
        if frame.channel is not None:
            self._newest_channel = frame.channel
        self.frames_pushed += 1

    def make_window(self) -> CsiWindow | None:
        """The window ending at the newest packet, or None before the first packet."""
        if self._current is None:
            return None
        ring = self._rings[self._current]
        grid_s = time_grid(self._newest_device_s, self.rate_hz, self.window_samples)  # (T,)
        index, valid = nearest_indices(ring.device_s, grid_s, self.max_gap_s)  # (T,), (T,)
        ring.process(np.unique(index[valid]), self.window_samples)
        # (T, L, S) gathered per grid point; grid points without a packet are masked
        gain = ring.gain_db[index]  # (T,)
        reported = bool(np.all(np.isfinite(gain[valid]))) and bool(valid.any())
        assert ring.subcarrier_hz is not None  # set by process()
        n_tx, n_rx = ring.csi.shape[1], ring.csi.shape[2]
        features = _assemble(
            ring.amplitude[index], ring.phase[index], ring.rel_phasor[index],
            np.where(valid[:, None, None], ring.canon[index], np.complex64(0.0)), valid,
            np.where(valid, gain, 0.0) if reported else None, ring.subcarrier_hz, n_tx,
        )
        tx, rx = link_positions(self.tx_pos_m[:n_tx], self.rx_pos_m[:n_rx])  # (L, 3) each
        carrier_hz = self.carrier_hz or carrier_from_channel(self._newest_channel)
        window = CsiWindow(
            router_id=self.router_id,
            space_id=self.space_id,
            t_end_s=self._newest_arrival_s,
            amplitude=features.amplitude,
            phase=features.phase,
            rel_phase=features.rel_phase,
            dynamic=features.dynamic,
            static=features.static,
            subcarrier_hz=features.subcarrier_hz,
            valid=valid,
            tx_pos_m=tx,
            rx_pos_m=rx,
            rate_hz=self.rate_hz,
            carrier_hz=carrier_hz or DEFAULT_CARRIER_HZ,
            room_size_m=self.room_size_m,
            seq=self.windows_made,
            link_phase=link_phases(self.chain_phase_rad, n_tx, n_rx),
        )
        self.windows_made += 1
        return window
