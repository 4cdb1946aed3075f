"""A streaming scene: people in a room, seen by simulated routers, packet by packet.

``Scene.frames(router_id, t0_s, t1_s)`` returns the ``CsiFrame``s a router reports for
packets due in [t0, t1) (scene seconds) at its rate, with the full receiver model
(common phase, timing slope, AGC, noise, quantisation, jitter and burst loss) at every
subcarrier its hardware reports. ``ground_truth(t)`` gives each person's 3-D and
front-view keypoints, box, activity, and falls.

Everything is a pure function of (seed, router id, time): packets are simulated in
blocks of ``BLOCK_PACKETS`` whose random draws come from their own seed, so streaming
in small steps, one large call, or a scene rebuilt in another process with only one of
the routers all give the same frames. The people depend on the seed and the room only.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from invispose.errors import SimulationError
from invispose.schemas import CsiFrame
from invispose.sim.body import TORSO_PART, body_parts, keypoints, keypoints_major
from invispose.sim.channel import (
    body_channel,
    body_paths,
    los_shadowing,
    path_sum,
    static_paths,
    wall_bounces,
)
from invispose.sim.hardware import (
    SPEED_OF_LIGHT_MPS,
    SUBCARRIER_SPACING_HZ,
    HardwareProfile,
    get_profile,
    link_snr_db,
)
from invispose.sim.impairments import DeviceState, impair, packet_times
from invispose.sim.room import Room
from invispose.sim.scene_config import SceneConfig
from invispose.sim.scripts import PersonScript, random_person
from invispose.sim.view import box_front, project_front

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
C64 = npt.NDArray[np.complex64]

BLOCK_PACKETS = 16
UNOCCUPIED_NOISE = 0.02  # |CSI| of bins without signal on chips that report them, re target
LINK_LATENCY_S = 0.002  # device to host: arrival = wall time of the packet + this
SCENE_CHUNK = 4  # packets sharing one subcarrier-offset phase (< 0.05 rad at 80 MHz edges)


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """A simulated router: hardware and the positions of its antennas (room metres)."""

    router_id: str
    hardware: str
    tx_positions_m: tuple[tuple[float, float, float], ...]
    rx_positions_m: tuple[tuple[float, float, float], ...]
    rate_hz: float = 100.0
    snr_db: float | None = None


@dataclass(slots=True)
class PersonTruth:
    """Ground truth of one person at one time."""

    person_id: str
    keypoints_m: F32  # (17, 3) room coordinates
    keypoints_uv: F32  # (17, 2) front view, 0-1
    box: dict[str, float]  # front view x, y, width, height (0-1)
    activity: str  # schemas.ACTIVITIES label
    falling: bool  # going down right now
    fall_times_s: list[float]  # falls so far (scene seconds)

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "id": self.person_id,
            "keypoints_m": np.round(self.keypoints_m, 4).tolist(),
            "keypoints_uv": np.round(self.keypoints_uv, 5).tolist(),
            "box": {k: round(v, 5) for k, v in self.box.items()},
            "activity": self.activity,
            "falling": self.falling,
            "fall_times_s": [round(t, 3) for t in self.fall_times_s],
        }


class _Radio:
    """One router's fixed state: geometry, device, the static channel, its random stream."""

    def __init__(self, spec: RouterSpec, room: Room, seed: int) -> None:
        base = get_profile(spec.hardware)
        tx = np.asarray(spec.tx_positions_m, dtype=np.float32).reshape(-1, 3)
        rx = np.asarray(spec.rx_positions_m, dtype=np.float32).reshape(-1, 3)
        if len(tx) > base.n_tx or len(rx) > base.n_rx:
            raise SimulationError(
                f"router {spec.router_id}: {spec.hardware} has at most {base.n_tx}x{base.n_rx} "
                "antennas"
            )
        self.spec = spec
        self.profile: HardwareProfile = replace(base, n_tx=len(tx), n_rx=len(rx))
        self.tx, self.rx = tx, rx  # (A, 3), (R, 3)
        self.key = zlib.crc32(spec.router_id.encode("utf-8"))
        rng = np.random.default_rng([seed, self.key, 0])
        p = self.profile
        self.columns = np.flatnonzero(np.isin(p.frame_subcarriers, p.occupied))  # (S,)
        self.subcarriers = p.frame_subcarriers[self.columns]  # (S,) occupied indices
        self.offsets_hz = self.subcarriers.astype(np.float64) * SUBCARRIER_SPACING_HZ
        self.device = DeviceState.random(rng, p, 1, self.subcarriers)
        distance_m = float(np.linalg.norm(tx.mean(axis=0) - rx.mean(axis=0)))
        self.snr_db = float(spec.snr_db if spec.snr_db is not None
                            else link_snr_db(rng, p, np.asarray([distance_m]))[0])
        self.loss = float(rng.uniform(*p.loss))
        self.clock_offset_s = float(rng.uniform(100.0, 5000.0))  # device booted a while ago
        self.drift_phase = float(rng.uniform(0.0, 2 * np.pi))
        self.sync_delay_s = distance_m / SPEED_OF_LIGHT_MPS  # packet detection: first path
        link_tx = np.repeat(tx, len(rx), axis=0)[None]  # (1, L, 3)
        link_rx = np.tile(rx, (len(tx), 1))[None]
        amp, delay = static_paths(
            link_tx, link_rx, room.size_m[None], room.gamma[None], room.furniture_m[None],
            room.furniture_rcs_m2[None], room.furniture_phase[None], p.wavelength_m,
        )  # (1, L, P)
        freqs = p.carrier_hz + self.offsets_hz
        self.h_los = path_sum(amp[..., :1], delay[..., :1], freqs)  # (1, L, S)
        self.h_rest = path_sum(amp[..., 1:], delay[..., 1:], freqs)  # (1, L, S)
        self.cache: dict[int, tuple[F64, npt.NDArray[np.bool_], C64, F32, F32]] = {}


class Scene:
    """People in a room and the routers watching them (see module docstring)."""

    def __init__(
        self,
        room: Room,
        routers: list[RouterSpec],
        people: list[PersonScript],
        *,
        seed: int = 0,
        epoch_s: float | None = None,
    ) -> None:
        if not routers:
            raise SimulationError("a scene needs at least one router")
        self.room = room
        self.people = people
        self.seed = int(seed)
        self.epoch_s = time.time() if epoch_s is None else float(epoch_s)
        self.time_s = 0.0
        self._radios = {spec.router_id: _Radio(spec, room, self.seed) for spec in routers}

    # --- construction ----------------------------------------------------------------

    @classmethod
    def from_config(cls, config: SceneConfig, *, epoch_s: float | None = None) -> Scene:
        """A scene from a validated scene file."""
        rng = np.random.default_rng([config.seed, 1])
        rc = config.room
        room = Room.random(rng, rc.size_m, rc.walls, rc.floor, rc.ceiling, rc.furniture)
        routers = [
            RouterSpec(r.id, r.hardware, tuple(r.tx_positions_m), tuple(r.rx_positions_m),
                       r.rate_hz, r.snr_db)
            for r in config.routers
        ]
        people = []
        for i, pc in enumerate(config.people):
            pid = pc.id or f"p{i}"
            script = random_person(pid, room.size_m, config.seed * 1000 + i, pc.fall_probability)
            if not pc.random:
                script.random_seed = None
            if pc.height_m is not None:
                script.height_m = pc.height_m
            if pc.start_m is not None or pc.script:
                start = script.segments[0].motion.start_xy[0] if pc.start_m is None else pc.start_m
                script.segments.clear()
                script.start(start, math.radians(pc.heading_deg))
            for step in pc.script:
                script.add(step.activity, duration_s=step.duration_s, to_m=step.to_m,
                           speed_mps=step.speed_mps, support_z_m=step.support_z_m)
            people.append(script)
        return cls(room, routers, people, seed=config.seed, epoch_s=epoch_s)

    @classmethod
    def simple(
        cls,
        room_size_m: npt.ArrayLike,
        routers: list[RouterSpec],
        n_people: int,
        *,
        seed: int = 0,
        epoch_s: float | None = None,
    ) -> Scene:
        """A drywall room with random furniture and ``n_people`` random people."""
        rng = np.random.default_rng([seed, 1])
        room = Room.random(rng, room_size_m)
        people = [random_person(f"p{i}", room.size_m, seed * 1000 + i) for i in range(n_people)]
        return cls(room, routers, people, seed=seed, epoch_s=epoch_s)

    @property
    def router_ids(self) -> list[str]:
        """Ids of the routers, in construction order."""
        return list(self._radios)

    def profile(self, router_id: str) -> HardwareProfile:
        """The hardware profile of a router (antenna counts as configured)."""
        return self._radio(router_id).profile

    def chain_phases(self, router_id: str) -> F32:
        """The router's true chain phases (n_tx, n_rx), radians: what calibration measures."""
        out: F32 = self._radio(router_id).device.chain_phase[0].copy()
        return out

    def _radio(self, router_id: str) -> _Radio:
        try:
            return self._radios[router_id]
        except KeyError:
            raise SimulationError(f"no router {router_id!r} in this scene") from None

    # --- streaming -------------------------------------------------------------------

    def step(self, dt_s: float) -> dict[str, list[CsiFrame]]:
        """Advance the scene clock by ``dt_s``; the frames every router reported meanwhile."""
        t0, self.time_s = self.time_s, self.time_s + float(dt_s)
        return {rid: self.frames(rid, t0, self.time_s) for rid in self._radios}

    def frames(self, router_id: str, t0_s: float, t1_s: float) -> list[CsiFrame]:
        """Frames of packets due in [t0_s, t1_s) (scene seconds), in order."""
        radio = self._radio(router_id)
        rate = radio.spec.rate_hz
        k0, k1 = math.ceil(t0_s * rate - 1e-9), math.ceil(t1_s * rate - 1e-9)
        frames: list[CsiFrame] = []
        for block in range(k0 // BLOCK_PACKETS, (k1 - 1) // BLOCK_PACKETS + 1 if k1 > k0 else 0):
            times, arrived, csi, rssi, gain = self._block(radio, block)
            for j in range(BLOCK_PACKETS):
                k = block * BLOCK_PACKETS + j
                if k0 <= k < k1 and arrived[j]:
                    frames.append(self._frame(radio, k, float(times[j]), csi[j], float(rssi[j]),
                                              float(gain[j])))
        return frames

    def _frame(self, radio: _Radio, k: int, t_s: float, csi: C64, rssi: float,
               gain_db: float) -> CsiFrame:
        p = radio.profile
        return CsiFrame(
            router_id=radio.spec.router_id,
            seq=k % 65536,
            device_time_s=t_s + radio.clock_offset_s,
            arrival_time_s=self.epoch_s + t_s + LINK_LATENCY_S,
            csi=csi,
            subcarriers=p.frame_subcarriers,
            rssi_dbm=round(rssi, 1),
            noise_dbm=round(rssi - radio.snr_db, 1),
            channel=p.channel,
            bandwidth_mhz=p.bandwidth_mhz,
            format="sim",
            chipset=p.chipset,
            agc_db=gain_db,
        )

    def _block(
        self, radio: _Radio, block: int
    ) -> tuple[F64, npt.NDArray[np.bool_], C64, F32, F32]:
        """Times, arrival, CSI (B, n_tx, n_rx, n_sub), RSSI and AGC gain of one block."""
        cached = radio.cache.get(block)
        if cached is not None:
            return cached
        p = radio.profile
        rng = np.random.default_rng([self.seed, radio.key, 1, block])
        rate = radio.spec.rate_hz
        times, arrived = packet_times(rng, 1, BLOCK_PACKETS, rate, p.jitter_s, radio.loss)
        times = times[0] + (block + 1) * BLOCK_PACKETS / rate - 1.0 / rate  # (B,)
        h = self.channel(radio.spec.router_id, times)  # (1, L, B, S)
        shaped = np.swapaxes(h, 1, 2).reshape(1, BLOCK_PACKETS, p.n_tx, p.n_rx, -1)
        drift = p.agc_drift_db * np.sin(2 * np.pi * times[:1] / 23.0 + radio.drift_phase)
        report, _ = impair(rng, shaped, p, radio.device, radio.subcarriers, [radio.snr_db],
                           drift_state_db=drift.astype(np.float32),
                           sync_delay_s=radio.sync_delay_s, packet_times_s=times)
        csi = np.zeros((BLOCK_PACKETS, p.n_tx, p.n_rx, len(p.frame_subcarriers)), np.complex64)
        csi[..., radio.columns] = report.csi[0]
        if not p.zero_unoccupied:  # Broadcom chips report noise where nothing was sent
            empty = np.setdiff1d(np.arange(len(p.frame_subcarriers)), radio.columns)
            scale = UNOCCUPIED_NOISE * p.target_rms
            noise = rng.normal(0.0, scale, (BLOCK_PACKETS, p.n_tx, p.n_rx, len(empty), 2))
            csi[..., empty] = np.round(noise).astype(np.float32).view(np.complex64)[..., 0]
        out = (times, arrived[0], csi, report.rssi_dbm[0], report.gain_db[0])
        if len(radio.cache) > 8:
            radio.cache.pop(next(iter(radio.cache)))
        radio.cache[block] = out
        return out

    def channel(self, router_id: str, times_s: npt.ArrayLike) -> C64:
        """Clean channel (1, L, T, S) of a router at scene times (T,), occupied subcarriers."""
        radio = self._radio(router_id)
        p = radio.profile
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        n_t = len(t)
        h_static = radio.h_los[:, :, None] + radio.h_rest[:, :, None]  # (1, L, 1, S)
        if not self.people:
            return np.ascontiguousarray(
                np.broadcast_to(h_static, (1, p.n_links, n_t, len(radio.subcarriers)))
            )
        kps, heights = [], []
        for person in self.people:
            pose, height = person.pose(t)
            kps.append(keypoints_major(pose, height[:, None]))  # (17, 3, 1, T)
            heights.append(np.full((1, n_t), height[0], np.float32))
        kp = np.concatenate(kps, axis=2)  # (17, 3, P, T)
        n_p = kp.shape[2]
        centre, unit, radius, half, points = body_parts(kp, np.concatenate(heights))
        b = centre.shape[0]
        # (B, 3, P, T) -> (3, 1, T, P*B); (B, P, T) -> (1, T, P*B)
        centre = centre.transpose(1, 3, 2, 0).reshape(3, 1, n_t, n_p * b)
        unit = unit.transpose(1, 3, 2, 0).reshape(3, 1, n_t, n_p * b)
        radius = radius.transpose(2, 1, 0).reshape(1, n_t, n_p * b)
        half = half.transpose(2, 1, 0).reshape(1, n_t, n_p * b)
        centre = np.ascontiguousarray(centre)
        paths = body_paths(radio.tx[None], radio.rx[None], centre,
                           np.ascontiguousarray(unit), radius, half, p.wavelength_m)
        paths = wall_bounces(paths, radio.tx[None], radio.rx[None], centre,
                             np.arange(n_p) * b + TORSO_PART, self.room.size_m[None],
                             self.room.gamma[None])
        h = body_channel(paths, p.wavelength_m, radio.offsets_hz, SCENE_CHUNK)  # (1, L, T, S)
        pts = points.transpose(1, 3, 2, 0)[:, None]  # (3, 1, T, P, K)
        shadow = los_shadowing(radio.tx.mean(0)[None], radio.rx.mean(0)[None], pts,
                               p.wavelength_m)  # (1, T)
        out: C64 = h + shadow[:, None, :, None] * radio.h_los[:, :, None] + radio.h_rest[:, :, None]
        return out

    # --- ground truth ----------------------------------------------------------------

    def ground_truth(self, t_s: float) -> list[PersonTruth]:
        """Every person at scene time ``t_s``."""
        truths = []
        for person in self.people:
            pose, height = person.pose(np.asarray([t_s]))
            kp = keypoints(pose, height[:, None])[0, 0]  # (17, 3)
            u, v = project_front(kp, self.room.size_m)
            truths.append(
                PersonTruth(
                    person_id=person.person_id,
                    keypoints_m=kp,
                    keypoints_uv=np.stack((u, v), axis=-1),
                    box=box_front(kp, self.room.size_m),
                    activity=person.activity(t_s),
                    falling=person.falling(t_s),
                    fall_times_s=person.fall_times(t_s),
                )
            )
        return truths
