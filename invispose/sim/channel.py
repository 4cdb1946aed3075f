"""The multipath channel per link and subcarrier: line of sight, walls, furniture, bodies.

H(f) = sum_p a_p exp(-j 2 pi f tau_p) over

* the line of sight, attenuated when a body stands in its first Fresnel zone;
* specular wall, floor and ceiling reflections up to second order (image sources,
  amplitude Γ1·Γ2·λ/(4π d));
* furniture as fixed point scatterers (bistatic radar equation, sqrt(σ)·λ/((4π)^1.5 d1 d2));
* body parts as prolate-spheroid scatterers whose radar cross-section follows the angle
  between the part's axis and the bistatic bisector (physical-optics specular term plus
  a small diffuse floor), moving with the skeleton: their delay (d1 + d2)/c changes
  with time, which is the Doppler shift. The torso is several such points on its surface
  (``body.TORSO_POINTS``), so its return fades as the body moves, turns and breathes.

Body paths are the expensive part (windows × links × time × scatterers × subcarriers).
``body_channel`` factorises them: the carrier phase exp(-j2π f_c τ(t)) is exact at every
time step, while the small subcarrier-offset term exp(-j2π Δf_s τ) uses each scatterer's
mean delay over a chunk of ``chunk`` time steps; the sum over scatterers is then one
batched matrix product. With ``chunk=1`` it is exact. The error grows with bandwidth ×
delay change within a chunk; tests bound it against the exact form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from invispose.sim.body import N_TORSO
from invispose.sim.hardware import SPEED_OF_LIGHT_MPS
from invispose.sim.room import image_gains, image_sources

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complex64]

BODY_REFLECTIVITY = 0.9  # |Γ| of skin and tissue at 2-6 GHz
# Scale of the spheroids' RCS so a standing adult seen from the side totals ~0.5 m² (with
# |Γ|², averaged over aspect): about -3 dBsm, mid-range of the 0.1-2 m² that human RCS
# measurements at 2-6 GHz report (-3..+3 dBsm is their upper end).
BODY_RCS_GAIN = 0.6
DIFFUSE_FRACTION = 0.5  # diffuse RCS floor, as a fraction of the part's silhouette area
SHADOW_FLOOR = 0.25  # LOS amplitude left behind a body (about -12 dB)
BODY_HALF_WIDTH_M = 0.18
# a torso's wall bounces leave from one of its points but carry the whole torso's RCS
TORSO_BOUNCE_GAIN = float(np.sqrt(N_TORSO))
_FOUR_PI_15 = (4.0 * np.pi) ** 1.5


def _norm0(v: F32) -> F32:
    """Length of coordinate-major vectors (3, ...)."""
    out: F32 = np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return out


def phasor(turns: npt.NDArray[np.floating]) -> C64:
    """exp(-j 2π turns) as complex64.

    float64 turns are reduced to [0, 1) first; float32 turns (under ~10^3, so already
    resolved to ~10^-4 rad) go straight to float32 cos/sin.
    """
    if turns.dtype == np.float32:
        angle = turns * np.float32(-2.0 * np.pi)
    else:
        angle = (turns - np.floor(turns)).astype(np.float32) * np.float32(-2.0 * np.pi)
    out = np.empty(angle.shape, dtype=np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def path_sum(amplitude: npt.ArrayLike, delay_s: npt.ArrayLike, freqs_hz: npt.ArrayLike) -> C64:
    """sum_p a_p exp(-j2π f τ_p): amplitudes and delays (..., P) at freqs (S,) -> (..., S)."""
    a = np.asarray(amplitude)
    tau = np.asarray(delay_s, dtype=np.float64)
    f = np.asarray(freqs_hz, dtype=np.float64)
    turns = tau[..., None] * f  # (..., P, S) in float64: f·τ reaches 10^3 turns
    out: C64 = np.einsum("...p,...ps->...s", a.astype(np.complex64), phasor(turns))
    return out


def static_paths(
    tx_m: npt.ArrayLike,
    rx_m: npt.ArrayLike,
    room_size_m: npt.ArrayLike,
    gamma: npt.ArrayLike,
    furniture_m: npt.ArrayLike,
    furniture_rcs_m2: npt.ArrayLike,
    furniture_phase: npt.ArrayLike,
    wavelength_m: float,
) -> tuple[C64, F64]:
    """Amplitudes and delays of the fixed paths of links (..., L): (..., L, 25 + F) each.

    ``tx_m``, ``rx_m`` (..., L, 3); ``room_size_m`` (..., 3); ``gamma`` (..., 6);
    furniture (..., F, 3), (..., F), (..., F). Path 0 is the line of sight.
    """
    tx = np.asarray(tx_m, dtype=np.float64)
    rx = np.asarray(rx_m, dtype=np.float64)
    size = np.asarray(room_size_m, dtype=np.float64)[..., None, :]  # (..., 1, 3)
    images = image_sources(tx, size)  # (..., L, 25, 3)
    d_spec = np.linalg.norm(images - rx[..., None, :], axis=-1)  # (..., L, 25)
    g = image_gains(np.asarray(gamma, dtype=np.float64))[..., None, :]  # (..., 1, 25)
    a_spec = g * wavelength_m / (4.0 * np.pi * np.maximum(d_spec, 0.05))

    furn = np.asarray(furniture_m, dtype=np.float64)[..., None, :, :]  # (..., 1, F, 3)
    d1 = np.linalg.norm(furn - tx[..., None, :], axis=-1)  # (..., L, F)
    d2 = np.linalg.norm(furn - rx[..., None, :], axis=-1)
    rcs = np.asarray(furniture_rcs_m2, dtype=np.float64)[..., None, :]  # (..., 1, F)
    phase = np.asarray(furniture_phase, dtype=np.float64)[..., None, :]
    a_furn = np.sqrt(rcs) * wavelength_m / (_FOUR_PI_15 * np.maximum(d1 * d2, 0.05))
    amp = np.concatenate((a_spec.astype(np.complex128), a_furn * np.exp(1j * phase)), axis=-1)
    delay = np.concatenate((d_spec, d1 + d2), axis=-1) / SPEED_OF_LIGHT_MPS
    return amp.astype(np.complex64), delay


def spheroid_rcs(cos_theta: F32, radius_m: F32, half_length_m: F32) -> F32:
    """Specular RCS of a prolate spheroid seen at angle θ from its axis, plus a diffuse floor."""
    c2 = np.clip(cos_theta * cos_theta, 0.0, 1.0)
    r2 = radius_m * radius_m
    h2 = half_length_m * half_length_m
    denom = r2 * (1.0 - c2) + h2 * c2
    specular = np.pi * r2 * r2 * h2 / np.maximum(denom * denom, 1e-12)
    out: F32 = BODY_RCS_GAIN * (specular + DIFFUSE_FRACTION * np.pi * radius_m * half_length_m)
    return out


@dataclass(slots=True)
class BodyPaths:
    """Body-part paths of n windows: amplitude and per-element path lengths over time."""

    amp: F32  # (n, T, Q) range loss and RCS, at the array centres
    tx_len_m: F32  # (n, A, T, Q) transmit element to scatterer
    rx_len_m: F32  # (n, R, T, Q) scatterer to receive element


def body_paths(
    tx_m: F32, rx_m: F32, centre_m: F32, axis: F32, radius_m: F32, half_m: F32, wavelength_m: float
) -> BodyPaths:
    """Paths via body parts for antenna elements ``tx_m`` (n, A, 3) and ``rx_m`` (n, R, 3).

    Part centres and unit axes are coordinate-major (3, n, T, Q); radius and
    half-length (n, T, Q). Path lengths are exact per element; amplitude (range loss and
    RCS) is taken at the array centres, since a few-centimetre array changes it by far
    less than a percent at room distances.
    """
    tx_c = tx_m.mean(axis=1).T[:, :, None, None]  # (3, n, 1, 1)
    rx_c = rx_m.mean(axis=1).T[:, :, None, None]
    v1 = tx_c - centre_m  # (3, n, T, Q) scatterer -> tx
    v2 = rx_c - centre_m  # scatterer -> rx
    r1, r2 = _norm0(v1), _norm0(v2)  # (n, T, Q) to the array centres
    e1 = _element_lengths(r1, v1, tx_m - tx_m.mean(axis=1, keepdims=True))  # (n, A, T, Q)
    e2 = _element_lengths(r2, v2, rx_m - rx_m.mean(axis=1, keepdims=True))  # (n, R, T, Q)
    d1 = np.maximum(r1, 0.05)
    d2 = np.maximum(r2, 0.05)
    v1 /= d1
    v2 /= d2
    v1 += v2  # bisector: the normal a specular reflection needs
    bis_len = np.maximum(_norm0(v1), 1e-6)
    v1 *= axis
    cos_theta = v1.sum(axis=0) / bis_len
    rcs = spheroid_rcs(cos_theta, radius_m, half_m)  # (n, T, Q)
    scale = np.float32(BODY_REFLECTIVITY * wavelength_m / _FOUR_PI_15)
    amp = (scale * np.sqrt(rcs) / (d1 * d2)).astype(np.float32)
    return BodyPaths(amp, e1, e2)  # (n, T, Q), (n, A, T, Q), (n, R, T, Q)


def _element_lengths(dist_m: F32, to_centre: F32, offsets_m: F32) -> F32:
    """Distances (n, E, T, Q) from scatterers to array elements.

    ``dist_m`` (n, T, Q) and ``to_centre`` (3, n, T, Q): distance and vector from each
    scatterer to the array centre; ``offsets_m`` (n, E, 3): elements from that centre.
    |v + o|² = |v|² + 2 v·o + |o|² avoids a (3, n, E, T, Q) difference; a single
    element sits at the centre.
    """
    n_e = offsets_m.shape[1]
    if n_e == 1 and not offsets_m.any():
        out1: F32 = dist_m[:, None]  # (n, 1, T, Q)
        return out1
    o = offsets_m.astype(np.float32)
    sq = dist_m * dist_m  # (n, T, Q)
    acc = np.empty((dist_m.shape[0], n_e, *dist_m.shape[1:]), dtype=np.float32)
    for e in range(n_e):  # (n, T, Q) contiguous ops per element
        dot = to_centre[0] * o[:, e, 0, None, None]
        dot += to_centre[1] * o[:, e, 1, None, None]
        dot += to_centre[2] * o[:, e, 2, None, None]
        dot *= np.float32(2.0)
        dot += sq
        dot += (o[:, e] * o[:, e]).sum(axis=-1)[:, None, None]
        np.sqrt(np.maximum(dot, 0.0, out=dot), out=acc[:, e])
    return acc


def wall_bounces(
    paths: BodyPaths,
    tx_m: F32,
    rx_m: F32,
    centre_m: F32,
    parts: npt.NDArray[np.intp],
    room_size_m: npt.ArrayLike,
    gamma: npt.ArrayLike,
) -> BodyPaths:
    """Add the paths that meet a wall once on the way from the body to the receiver
    (tx → part → wall → rx) for the parts at indices ``parts`` of the Q axis (the torsos).

    The wall leg comes from the receiver's mirror image across each of the six surfaces
    (amplitude × |Γ| of that surface, range loss to the image). Their extra delay (metres,
    not centimetres) is what makes a moving body change the channel differently across
    a 20 MHz band. By reciprocity the tx → wall → part legs are alike and left out for
    speed. Each part stands for a whole torso (``TORSO_BOUNCE_GAIN`` times its own
    amplitude). Returns ``paths`` with 6 · len(parts) more paths.
    """
    if parts.size == 0:
        return paths
    size = np.asarray(room_size_m, dtype=np.float64)  # (n, 3)
    g = np.abs(np.asarray(gamma, dtype=np.float32)) * np.float32(TORSO_BOUNCE_GAIN)  # (n, 6)
    c = centre_m[:, :, :, parts]  # (3, n, T, B)
    amp, e1 = paths.amp[:, :, parts], paths.tx_len_m[..., parts]
    d2 = np.maximum(_norm0(rx_m.mean(axis=1).T[:, :, None, None] - c), 0.05)  # (n, T, B)
    amps, txs, rxs = [paths.amp], [paths.tx_len_m], [paths.rx_len_m]
    for s in range(6):
        axis, high = divmod(s, 2)
        img = rx_m.astype(np.float64).copy()  # (n, R, 3) mirrored across surface s
        img[..., axis] = (2 * size[:, None, axis] if high else 0.0) - img[..., axis]
        img_c = img.mean(axis=1)  # (n, 3) the mirrored array's centre
        to_img = img_c.astype(np.float32).T[:, :, None, None] - c  # (3, n, T, B)
        dist = _norm0(to_img)  # (n, T, B)
        image_len = _element_lengths(dist, to_img, (img - img_c[:, None]).astype(np.float32))
        image_d = np.maximum(dist, np.float32(0.05))  # (n, T, B)
        # the receive leg's range loss becomes the mirrored leg's, times |Γ| of the wall
        amps.append((amp * d2 / image_d * g[:, s, None, None]).astype(np.float32))
        txs.append(e1)
        rxs.append(image_len)
    return BodyPaths(
        np.concatenate(amps, axis=-1).astype(np.float32),
        np.concatenate(txs, axis=-1).astype(np.float32),
        np.concatenate(rxs, axis=-1).astype(np.float32),
    )


def body_channel(
    paths: BodyPaths, wavelength_m: float, offsets_hz: npt.ArrayLike, chunk: int = 16
) -> C64:
    """Sum of body paths at subcarrier offsets (S,): complex64 (n, L, T, S), L = A·R.

    The carrier phase exp(-j2π (e1 + e2)/λ) is exact per element pair and time step
    (a product of per-element phasors). The offset phase exp(-j2π Δf d/c) uses the
    array-centre path length averaged over ``chunk`` time steps: across a 6 cm array it
    changes by under 0.05 rad even at the edge of an 80 MHz band.
    """
    n, n_a, n_t, n_q = paths.tx_len_m.shape
    n_r = paths.rx_len_m.shape[1]
    offsets = np.asarray(offsets_hz, dtype=np.float64)
    if n_q == 0:
        return np.zeros((n, n_a * n_r, n_t, offsets.size), dtype=np.complex64)
    inv_lambda = np.float32(1.0 / wavelength_m)
    if n_a * n_r <= n_a + n_r:  # few links: one phasor per link is cheapest
        length_m = paths.tx_len_m[:, :, None] + paths.rx_len_m[:, None]  # (n, A, R, T, Q)
        carrier = phasor(length_m.reshape(n, n_a * n_r, n_t, n_q) * inv_lambda)
        carrier *= paths.amp[:, None]
    else:  # many links: per-element phasors, multiplied per pair
        p1 = phasor(paths.tx_len_m * inv_lambda)  # (n, A, T, Q)
        p1 *= paths.amp[:, None]
        p2 = phasor(paths.rx_len_m * inv_lambda)  # (n, R, T, Q)
        carrier = (p1[:, :, None] * p2[:, None]).reshape(n, n_a * n_r, n_t, n_q)  # (n, L, T, Q)
    if n_a == n_r == 1:  # one link: its path length is the array centres' already
        length = (paths.tx_len_m + paths.rx_len_m).reshape(n, n_t, n_q)  # (n, T, Q)
    else:
        length = paths.tx_len_m.mean(axis=1) + paths.rx_len_m.mean(axis=1)  # (n, T, Q)
    chunk = max(1, min(chunk, n_t))
    pad = (-n_t) % chunk
    if pad:
        carrier = np.concatenate((carrier, np.zeros((n, n_a * n_r, pad, n_q), np.complex64)), 2)
        length = np.concatenate((length, np.repeat(length[:, -1:], pad, axis=1)), 1)
    k = (n_t + pad) // chunk
    mean_len = length.reshape(n, k, chunk, n_q).mean(axis=2)  # (n, K, Q)
    per_metre = (offsets / SPEED_OF_LIGHT_MPS).astype(np.float32)  # (S,) turns per metre
    sub = phasor(mean_len[..., None] * per_metre)  # (n, K, Q, S)
    n_l = n_a * n_r
    # small (chunk, Q) @ (Q, S) products per link: BLAS stays single-threaded at this
    # size, which matters on a shared machine (threaded small products spin and stall)
    h = np.matmul(carrier.reshape(n, n_l, k, chunk, n_q), sub[:, None])  # (n, L, K, c, S)
    out: C64 = h.reshape(n, n_l, k * chunk, offsets.size)[:, :, :n_t]
    return out


def los_shadowing(
    tx_m: F32, rx_m: F32, axis_points_m: F32, wavelength_m: float
) -> F32:
    """Line-of-sight amplitude factor (n, T) from bodies near the direct path.

    ``tx_m``, ``rx_m`` (n, 3): the array centres; ``axis_points_m`` coordinate-major
    (3, n, T, P, K): K points along each person's body axis (feet to head). The
    clearance of each body from the line-of-sight segment, minus its half-width, in
    units of the first Fresnel zone radius there, sets a soft knife-edge loss down to
    ``SHADOW_FLOOR``.
    """
    seg = (rx_m - tx_m).T  # (3, n)
    length = np.maximum(_norm0(seg), 1e-3)  # (n,)
    unit = (seg / length)[:, :, None, None, None]  # (3, n, 1, 1, 1)
    rel = axis_points_m - tx_m.T[:, :, None, None, None]  # (3, n, T, P, K)
    lim = length[:, None, None, None]
    along = np.clip((rel * unit).sum(axis=0), 0.0, lim)  # (n, T, P, K)
    dist = _norm0(rel - along * unit)  # (n, T, P, K)
    d1 = np.maximum(along, 0.05)
    d2 = np.maximum(lim - along, 0.05)
    fresnel = np.sqrt(wavelength_m * d1 * d2 / lim)
    nu = ((dist - BODY_HALF_WIDTH_M) / fresnel).min(axis=-1)  # (n, T, P) closest point
    loss = 1.0 / (1.0 + np.exp(np.clip(2.5 * nu, -30.0, 30.0)))  # 1 inside, 0 clear
    out: F32 = np.prod(1.0 - (1.0 - SHADOW_FLOOR) * loss, axis=-1).astype(np.float32)
    return out
