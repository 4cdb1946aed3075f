"""Back-projection of a router's dynamic channel onto floor cells, with chain calibration.

For a cell p and link l the body's path is d_l(p) = |p − tx_l| + |rx_l − p|; its echo on
subcarrier k is ∝ exp(−j2π (f_c + f_k) d_l(p) / c). The power of the window's dynamic
component matched to that steering, summed over packets, peaks where the mover is:

    P(p) = Σ_t |Σ_{l,k} D_{l,k}(t) · exp(+j2π (f_c + f_k) d_l(p) / c)|² / ‖a'(p)‖²

Three things make that work on real receivers (``LOCALISATION.md``):

* **Chain calibration.** Each tx/rx chain pair adds a fixed unknown phase θ_l, and the
  cleaning fit leaves every window in a timing frame of its own (a slope over subcarriers
  common to all links: CSI is referenced to where packet detection locked). Both are
  estimated from the static part against the line of sight and first reflections the
  geometry predicts (``calibrate_from_static``; with measured phases, ``invispose
  calibrate``, only the slope is fitted per window), then refined from the mover
  itself (``refine_from_mover``): at the first estimate of its position the links must
  agree up to θ_l, so the principal eigenvector of their matched outputs gives θ_l.
* **What the cleaning fit removed** (per packet: each transmit stream's static pattern
  times a constant, and a linear phase) is projected out of the steering vectors, and
  each cell is normalised by what is left of its steering norm ‖a'(p)‖²; otherwise cells
  whose echo looks like the static pattern are under-weighted.
* **A delay-domain gather** keeps it cheap: the subcarrier sum is a function of d alone,
  computed once per link on a fine delay grid and looked up per cell, and the window is
  reduced to its strongest temporal components first.

Arrays: L links, T packets, S subcarriers, G cells, R kept components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from invispose.csi.grid import SPEED_OF_LIGHT_MPS
from invispose.schemas import ComplexArray, FloatArray

DELAY_STEP_M = 0.05  # delay-domain grid; 0.05 m is < 0.01 rad across 20 MHz, 0.04 at 80 MHz
MAX_COMPONENTS = 8  # temporal components of a window kept (a mover is low-rank; noise is not)
MIN_STEERING_NORM = 0.05  # cells whose steering the cleaning fit removes almost fully are out
#: packets (newest) a map integrates: a walker crosses 0.6 m in a 0.64 s window and the
#: position wanted is the newest one. On the val split (two Intel routers, walkers) 48 of
#: 64 gave 0.62 m median at the window's end against 0.70 m for all 64; fewer lose too much
#: integration for people who stand still
RECENT_PACKETS = 48


@dataclass(slots=True)
class RouterView:
    """One router's window as the localiser needs it (all arrays of the same router)."""

    dynamic: ComplexArray  # complex64 (L, T, S) ``CsiWindow.dynamic``
    static: ComplexArray  # complex64 (L, S)
    tx_pos_m: FloatArray  # float32 (L, 3)
    rx_pos_m: FloatArray  # float32 (L, 3)
    carrier_hz: float
    subcarrier_hz: FloatArray  # float32 (S,) offsets from the carrier
    # float32 (L,) radians: the chain phases a known-position calibration measured for
    # these links (``invispose.localise.calibration``), or None: estimate from the static
    link_phase: FloatArray | None = None


def path_lengths_m(view: RouterView, cells_m: FloatArray) -> FloatArray:
    """Bistatic path lengths (L, G) from each link's tx via cell (G, 3) to its rx."""
    tx = view.tx_pos_m.astype(np.float64)[:, None, :]  # (L, 1, 3)
    rx = view.rx_pos_m.astype(np.float64)[:, None, :]
    p = cells_m.astype(np.float64)[None]  # (1, G, 3)
    out: FloatArray = (
        np.linalg.norm(p - tx, axis=-1) + np.linalg.norm(rx - p, axis=-1)
    ).astype(np.float32)
    return out


def _cis(turns: npt.NDArray[np.float64]) -> ComplexArray:
    """exp(+j 2π turns) as complex64 (turns reduced in float64 first)."""
    angle = ((turns - np.floor(turns)) * (2.0 * np.pi)).astype(np.float32)
    out = np.empty(angle.shape, dtype=np.complex64)
    out.real, out.imag = np.cos(angle), np.sin(angle)
    return out


def line_of_sight(view: RouterView) -> ComplexArray:
    """Unit-amplitude direct path per link and subcarrier (L, S) the geometry predicts."""
    d = np.linalg.norm(view.rx_pos_m.astype(np.float64) - view.tx_pos_m, axis=-1)  # (L,)
    f = view.carrier_hz + view.subcarrier_hz.astype(np.float64)  # (S,)
    return _cis(-d[:, None] * f[None, :] / SPEED_OF_LIGHT_MPS)  # (L, S)


@dataclass(slots=True)
class Calibration:
    """Per-link phase and a common slope over subcarriers to take out of a window."""

    link_phase: FloatArray  # float32 (L,) radians
    slope: float  # radians per Hz of subcarrier offset, common to all links

    def apply(self, view: RouterView, x: ComplexArray) -> ComplexArray:
        """x (..., L, [T,] S) times exp(−j(θ_l + slope · f_k))."""
        link = np.exp(-1j * self.link_phase).astype(np.complex64)  # (L,)
        sub = np.exp(-1j * self.slope * view.subcarrier_hz.astype(np.float64))  # (S,)
        shape = (-1,) + (1,) * (x.ndim - 1)  # links lead: (L, S) or (L, T, S)
        out: ComplexArray = (x * link.reshape(shape) * sub.astype(np.complex64)).astype(
            np.complex64
        )
        return out


def image_path_lengths_m(view: RouterView, room_size_m: npt.ArrayLike | None) -> FloatArray:
    """Lengths (L, P) of the direct path and, given the room, its six first-order reflections.

    Walls, floor and ceiling are the room's box (x = 0 / width, y = 0 / depth, z = 0 /
    height); each reflection is the path from the transmitter's mirror image.
    """
    tx = view.tx_pos_m.astype(np.float64)  # (L, 3)
    rx = view.rx_pos_m.astype(np.float64)
    paths = [np.linalg.norm(rx - tx, axis=-1)]  # (L,) line of sight
    if room_size_m is not None:
        size = np.asarray(room_size_m, dtype=np.float64).reshape(3)
        for axis in range(3):
            for wall in (0.0, size[axis]):
                image = tx.copy()
                image[:, axis] = 2.0 * wall - tx[:, axis]
                paths.append(np.linalg.norm(rx - image, axis=-1))
    out: FloatArray = np.stack(paths, axis=1).astype(np.float32)  # (L, P)
    return out


def calibrate_from_static(
    view: RouterView, room_size_m: npt.ArrayLike | None = None, iterations: int = 6,
    link_phase: FloatArray | None = None,
) -> Calibration:
    """Chain phases and the window's timing slope from the static part.

    The static part is modelled as e^{jθ_l} e^{j slope f_k} Σ_p c_p e^{−j2π(f_c+f_k) d_lp/c}
    over the direct path and (given the room) the first-order wall, floor and ceiling
    reflections, with one complex amplitude c_p per path shared by the router's links
    (its antennas are centimetres apart). Alternating least squares: c given the phases,
    then the slope (neighbouring subcarriers of all links together) and θ_l per link.
    Without the room it is the line of sight alone. ``link_phase`` (L,): chain phases
    measured elsewhere, held fixed; only the slope (the window's timing frame) is fitted.
    """
    lengths = image_path_lengths_m(view, room_size_m).astype(np.float64)  # (L, P)
    f = view.subcarrier_hz.astype(np.float64)  # (S,)
    df = float(np.mean(np.diff(f))) if f.size > 1 else 0.0
    paths = _cis(
        -lengths[:, :, None] * (view.carrier_hz + f)[None, None, :] / SPEED_OF_LIGHT_MPS
    )  # (L, P, S)
    static = view.static.astype(np.complex128)  # (L, S)
    amp: npt.NDArray[np.complexfloating[Any, Any]] = np.zeros(paths.shape[1], np.complex128)
    amp[0] = 1.0  # start from the line of sight alone
    fixed = None if link_phase is None else np.asarray(link_phase, np.float64)
    theta = np.zeros(static.shape[0]) if fixed is None else fixed
    slope = 0.0
    for it in range(max(iterations, 1)):
        model = np.einsum("p,lps->ls", amp, paths)  # (L, S)
        q = static * np.conj(model)  # (L, S) what the phases must explain
        step = np.sum(q[:, 1:] * np.conj(q[:, :-1]))
        slope = float(np.angle(step)) / df if df else 0.0
        if fixed is None:
            theta = np.angle((q * np.exp(-1j * slope * f)[None]).sum(axis=1))  # (L,)
        if it == iterations - 1 or paths.shape[1] == 1:
            break
        phases = np.exp(1j * (theta[:, None, None] + slope * f[None, None, :]))  # (L, 1, S)
        design = (phases * paths).transpose(0, 2, 1).reshape(-1, paths.shape[1])  # (L·S, P)
        amp = np.linalg.lstsq(design, static.reshape(-1), rcond=None)[0]  # (P,)
        if not np.all(np.isfinite(amp)) or abs(amp[0]) == 0:
            break
    return Calibration(link_phase=theta.astype(np.float32), slope=slope)


def temporal_components(dynamic: ComplexArray, k: int = MAX_COMPONENTS) -> ComplexArray:
    """The window's k strongest components (k, L, S): Σ_t |y_t|² ≈ Σ_i |y_i|² for any linear y."""
    n_l, n_t, n_s = dynamic.shape
    m = np.swapaxes(dynamic, 0, 1).reshape(n_t, n_l * n_s)  # (T, L·S)
    if not np.any(m):
        return np.zeros((1, n_l, n_s), np.complex64)
    # m = U Σ Vᴴ, so Σ Vᴴ = Uᴴ m, and U is the eigenbasis of the small (T, T) Gram matrix:
    # the same components as an SVD (up to each one's phase, which no power sees) at a
    # sixth of its cost
    m64 = m.astype(np.complex128)
    _, u = np.linalg.eigh(m64 @ m64.conj().T)  # ascending eigenvalues, u (T, T)
    r = min(k, n_t)
    lead = u[:, ::-1][:, :r]  # (T, r) strongest first
    out: ComplexArray = (lead.conj().T @ m64).reshape(r, n_l, n_s).astype(np.complex64)
    return out


def matched_links(view: RouterView, rows: ComplexArray, lengths_m: FloatArray) -> ComplexArray:
    """Σ_k rows_{i,l,k} · exp(+j2π (f_c + f_k) d_l(p)/c) for rows (R, L, S): (R, L, G).

    The subcarrier sum is taken on a delay grid once per link, then looked up per cell.
    """
    n_r, n_l, n_s = rows.shape
    d_max = float(lengths_m.max()) + 2 * DELAY_STEP_M
    delays = np.arange(0.0, d_max, DELAY_STEP_M)  # (nd,)
    f = view.subcarrier_hz.astype(np.float64)  # (S,)
    kernel = _cis(f[:, None] * delays[None, :] / SPEED_OF_LIGHT_MPS)  # (S, nd)
    z = rows.reshape(n_r * n_l, n_s) @ kernel  # (R·L, nd)
    z = z.reshape(n_r, n_l, -1)  # (R, L, nd)
    pos = lengths_m / DELAY_STEP_M  # (L, G) fractional bins
    lo = np.minimum(np.floor(pos).astype(np.intp), z.shape[-1] - 2)  # (L, G)
    w = (pos - lo).astype(np.float32)  # (L, G)
    link = np.arange(n_l)[:, None]  # (L, 1)
    near = z[:, link, lo] * (1 - w) + z[:, link, lo + 1] * w  # (R, L, G)
    carrier = _cis(lengths_m.astype(np.float64) * view.carrier_hz / SPEED_OF_LIGHT_MPS)  # (L, G)
    out: ComplexArray = near * carrier[None]  # (R, L, G)
    return out


def matched(view: RouterView, rows: ComplexArray, lengths_m: FloatArray) -> ComplexArray:
    """``matched_links`` summed over the links: (R, G)."""
    out: ComplexArray = matched_links(view, rows, lengths_m).sum(axis=1)
    return out


def transmit_streams(tx_pos_m: FloatArray) -> int:
    """Transmit streams of a router's tx-major links (L, 3): runs of one tx position.

    1 unless the links split into equal runs, each of its own position.
    """
    n_l = len(tx_pos_m)
    if n_l < 2:
        return 1
    starts = np.flatnonzero(np.any(np.diff(tx_pos_m, axis=0) != 0, axis=1)) + 1  # run starts
    n_tx = len(starts) + 1
    if n_l % n_tx or not np.array_equal(starts, np.arange(1, n_tx) * (n_l // n_tx)):
        return 1
    if len(np.unique(tx_pos_m, axis=0)) != n_tx:  # a position that comes back: not tx-major
        return 1
    return n_tx


def removed_basis(
    static: ComplexArray, subcarrier_hz: FloatArray, n_tx: int = 1
) -> ComplexArray:
    """Orthonormal basis (B, L, S) of what the per-packet cleaning fit removes.

    The fit takes a complex factor per transmit stream (its links' static pattern; links
    tx-major) and one timing slope shared by all links: B = n_tx + 1 vectors.
    """
    x = subcarrier_hz.astype(np.float64)
    x = (x - x.mean()) / max(float(np.ptp(x)), 1.0)  # (S,)
    streams = static.reshape(n_tx, -1, static.shape[-1])  # (A, n_rx, S)
    own = np.eye(n_tx)[:, :, None, None] * streams[None]  # (A, A, n_rx, S) stream a alone
    vectors = np.concatenate(
        [own.reshape(n_tx, -1), (static * x[None, :]).reshape(1, -1)], axis=0
    ).T  # (L·S, A + 1)
    q, _ = np.linalg.qr(vectors)  # (L·S, A + 1)
    out: ComplexArray = q.T.reshape(-1, *static.shape).astype(np.complex64)
    return out


def _clean_rows(view: RouterView, calibration: Calibration) -> tuple[ComplexArray, ComplexArray]:
    """The newest packets' strongest components (R, L, S), calibrated, without what the
    cleaning fit removed, and the orthonormal basis of that (B, L, S)."""
    recent = view.dynamic[:, -RECENT_PACKETS:]  # (L, T', S) the newest packets
    rows = temporal_components(calibration.apply(view, recent))  # (R, L, S)
    basis = removed_basis(calibration.apply(view, view.static), view.subcarrier_hz,
                          transmit_streams(view.tx_pos_m))
    # what the fit removed is not evidence either way: the data lose it too
    coeff = np.einsum("bls,rls->rb", basis.conj(), rows)  # (R, B)
    return rows - np.einsum("rb,bls->rls", coeff, basis), basis


def heatmap(view: RouterView, cells_m: FloatArray, calibration: Calibration) -> FloatArray:
    """Back-projected power per cell (G,) of one router's window, float32."""
    lengths = path_lengths_m(view, cells_m)  # (L, G)
    rows, basis = _clean_rows(view, calibration)
    power = np.sum(np.abs(matched(view, rows, lengths)) ** 2, axis=0)  # (G,)
    n_elements = float(view.static.size)
    left = n_elements - np.sum(np.abs(matched(view, basis, lengths)) ** 2, axis=0)  # (G,)
    norm = np.maximum(left, MIN_STEERING_NORM * n_elements)
    out: FloatArray = (power / norm).astype(np.float32)
    return out


def link_covariance(
    view: RouterView, cell_m: FloatArray, calibration: Calibration | None = None
) -> ComplexArray:
    """Links' covariance (L, L) of the window's echo matched at one cell (1, 3), trace 1.

    At the mover's cell the links' matched outputs share one signal up to each link's
    chain phase, so the principal eigenvector of this matrix holds the phases (relative
    to the calibration applied, none by default). All zero when nothing moves.
    """
    n_l = view.static.shape[0]
    cal = calibration or Calibration(np.zeros(n_l, np.float32), 0.0)
    rows, _ = _clean_rows(view, cal)
    per_link = matched_links(view, rows, path_lengths_m(view, cell_m))[:, :, 0]  # (R, L)
    cov = per_link.T @ per_link.conj()  # (L, L)
    trace = float(np.trace(cov).real)
    out: ComplexArray = (cov / trace if trace > 0 else np.zeros_like(cov)).astype(np.complex128)
    return out


def principal_phases(cov: ComplexArray) -> FloatArray | None:
    """Phases (L,) of the principal eigenvector of a links' covariance, link 0 at zero."""
    if not np.all(np.isfinite(cov)) or not np.any(cov):
        return None
    _, vecs = np.linalg.eigh(cov)
    lead = vecs[:, -1]  # (L,)
    if abs(lead[0]) == 0:
        return None
    out: FloatArray = np.angle(lead * np.conj(lead[0])).astype(np.float32)
    return out


def refine_from_mover(
    view: RouterView, cells_m: FloatArray, calibration: Calibration
) -> Calibration:
    """Chain phases re-estimated from the dynamic part at the cell ``cells_m`` (1, 3)."""
    delta = principal_phases(link_covariance(view, cells_m, calibration))
    if delta is None:
        return calibration
    return Calibration(link_phase=calibration.link_phase + delta, slope=calibration.slope)


def router_calibration(view: RouterView, room_size_m: npt.ArrayLike | None) -> Calibration:
    """The view's measured chain phases where it has them, else the static estimate.

    The window's timing slope always comes from its static part (with the measured
    phases held): every window has its own frame.
    """
    if view.link_phase is not None and len(view.link_phase) == view.static.shape[0]:
        return calibrate_from_static(view, room_size_m, link_phase=view.link_phase)
    return calibrate_from_static(view, room_size_m)
