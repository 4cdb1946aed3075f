"""Wire models: everything that crosses a process, queue or network boundary.

Hot-path records that carry arrays (``CsiFrame``, ``CsiWindow``, ``Detection``) are
slotted dataclasses: they are built tens of thousands of times a second and travel
between Ray actors as pickled numpy. Records served to users (``Keypoint``, ``Person``,
``PoseFrame``, ``Event``) are pydantic models with exactly the seed API's fields;
``position_m`` adds the 3-D room position next to the seed's normalised x/y.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
N_KEYPOINTS = len(COCO_KEYPOINTS)

#: activity labels shared by the simulator's ground truth, the model and the tracker
ACTIVITIES: tuple[str, ...] = ("walking", "standing", "sitting", "lying", "fallen", "waving")
#: person slots the model predicts and the simulator fills at most
MAX_PERSONS = 4
#: routers of one space window at most (simulated spaces, floor maps, evaluation)
MAX_ROUTERS = 4

ComplexArray = npt.NDArray[np.complex64]
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int16]
BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class CsiFrame:
    """One received packet's channel estimate, as any reader or the simulator emits it."""

    router_id: str
    seq: int  # sequence number as the device reports it (or a running count)
    device_time_s: float  # device clock (µs counters unwrapped and scaled to seconds)
    arrival_time_s: float  # host wall clock (time.time()) when the bytes arrived
    csi: ComplexArray  # complex64 (n_tx, n_rx, n_sub)
    subcarriers: IntArray  # int16 (n_sub,) subcarrier index relative to DC, ascending
    rssi_dbm: float | None = None
    noise_dbm: float | None = None
    channel: int | None = None
    bandwidth_mhz: int = 20
    format: str = ""  # reader that produced it: "esp32", "nexmon", "intel5300", "sim"
    chipset: str | None = None  # e.g. "bcm43455c0", "iwl5300", "esp32"
    source_mac: str | None = None
    agc_db: float | None = None  # receiver gain when the hardware reports it

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_tx, n_rx, n_sub)."""
        n_tx, n_rx, n_sub = self.csi.shape
        return int(n_tx), int(n_rx), int(n_sub)


@dataclass(slots=True)
class CsiWindow:
    """The model's input: one router's recent CSI on the canonical grid.

    L links (tx antenna × rx antenna), T time steps on a uniform grid, S canonical
    subcarriers. Amplitude is normalised against AGC; phase is sanitized per link;
    relative phase keeps what differs between antennas (where a moving body is seen from).
    """

    router_id: str
    space_id: str
    t_end_s: float  # arrival wall time of the newest packet in the window
    amplitude: FloatArray  # float32 (L, T, S)
    phase: FloatArray  # float32 (L, T, S), radians after sanitization
    # float32 (L, T, S) radians: phase against the router's first link (common offsets and
    # timing slope cancel, antenna geometry stays), minus its window mean per link and
    # subcarrier (what is left is how people moved it); zero for a one-link router
    rel_phase: FloatArray
    # complex64 (L, T, S): what moves, after one cleaning fit per packet shared by the
    # router's antennas, minus the complex window mean, divided by the static RMS
    # (``invispose.csi.dynamic``); the links stay phase-coherent up to fixed chain offsets
    dynamic: ComplexArray
    static: ComplexArray  # complex64 (L, S) the window mean, on the same scale
    subcarrier_hz: FloatArray  # float32 (S,) canonical points' offsets from the carrier
    valid: BoolArray  # bool (T,) False where the time grid had no packet (gap)
    tx_pos_m: FloatArray  # float32 (L, 3) transmit antenna position, room metres
    rx_pos_m: FloatArray  # float32 (L, 3) receive antenna position, room metres
    rate_hz: float  # time-grid rate
    carrier_hz: float  # centre frequency of the band
    room_size_m: FloatArray = field(
        default_factory=lambda: np.zeros(3, dtype=np.float32)
    )  # float32 (3,) width (x), depth (y), height (z)
    seq: int = 0  # running window count of this router
    # float32 (L,) radians: the router's measured chain phases for these links (the
    # ``chain_phase_rad`` of its configuration), or None when it has none
    link_phase: FloatArray | None = None

    @property
    def n_links(self) -> int:
        """Number of tx×rx links L."""
        return int(self.amplitude.shape[0])


@dataclass(slots=True)
class Detection:
    """The model's output for one window: up to K person slots."""

    router_id: str
    space_id: str
    t_end_s: float
    presence: FloatArray  # float32 (K,) probability that slot k holds a person
    keypoints_m: FloatArray  # float32 (K, 17, 3) room coordinates, metres
    keypoint_conf: FloatArray  # float32 (K, 17) per-keypoint confidence 0–1
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class WindowBatch:
    """A batch of model inputs with ground truth: simulator output, shards, training.

    N space windows (the links of every router of one space over the same time span), L
    links (the routers' links one after another, padded to the batch's largest count, see
    ``link_mask`` and ``link_router``), T time steps, S canonical subcarriers, P =
    MAX_PERSONS person slots. ``valid`` marks the steps where every router had a packet
    (a router's own gaps are also zeros in its links' arrays).
    """

    amplitude: FloatArray  # float32 (N, L, T, S)
    phase: FloatArray  # float32 (N, L, T, S)
    rel_phase: FloatArray  # float32 (N, L, T, S), as CsiWindow.rel_phase
    dynamic: ComplexArray  # complex64 (N, L, T, S), as CsiWindow.dynamic
    static: ComplexArray  # complex64 (N, L, S), as CsiWindow.static
    subcarrier_hz: FloatArray  # float32 (N, L, S) carrier offsets of each link's points
    carrier_hz: FloatArray  # float32 (N, L) each link's carrier (0 for padding)
    link_router: npt.NDArray[np.int8]  # int8 (N, L) router of each link in its space, -1 pad
    valid: BoolArray  # bool (N, T) time steps that held a packet
    link_mask: BoolArray  # bool (N, L) real links (False = padding)
    tx_pos_m: FloatArray  # float32 (N, L, 3)
    rx_pos_m: FloatArray  # float32 (N, L, 3)
    room_size_m: FloatArray  # float32 (N, 3)
    keypoints_m: FloatArray  # float32 (N, P, 17, 3) ground truth at the window's end
    person_mask: BoolArray  # bool (N, P) slot holds a person
    activity: npt.NDArray[np.int8]  # int8 (N, P) index into ACTIVITIES, -1 for empty slots
    falling: BoolArray  # bool (N, P) the person falls during the window
    n_routers: npt.NDArray[np.int8]  # int8 (N,) routers in the window's space
    # float32 (N, MAX_ROUTERS, M, M) each router's back-projection on the room grid
    # (``invispose.localise.maps``), zero for absent routers or when not computed
    floor_maps: FloatArray
    # float32 (N, L) measured chain phase of each link (``CsiWindow.link_phase``), NaN
    # where its router has none (and for padding); None when built: all NaN
    link_phase: FloatArray | None = None
    hardware: list[str] = field(default_factory=list)  # (N,) hardware profile names

    def __post_init__(self) -> None:
        if self.link_phase is None:
            self.link_phase = np.full(self.carrier_hz.shape, np.nan, np.float32)

    def __len__(self) -> int:
        return int(self.amplitude.shape[0])


class Keypoint(BaseModel):
    """Individual keypoint in pose estimation (seed fields plus position_m)."""

    model_config = ConfigDict(extra="forbid")

    id: int = Field(..., ge=0, le=16, description="Keypoint ID (0-16 for COCO format)")
    x: float = Field(..., description="X coordinate (0-1 normalized) in the space's view")
    y: float = Field(..., description="Y coordinate (0-1 normalized) in the space's view")
    confidence: float = Field(..., ge=0.0, le=1.0, description="Detection confidence (0-1)")
    name: str = Field(..., description="Keypoint name (e.g., 'nose', 'left_shoulder')")
    position_m: tuple[float, float, float] | None = Field(
        None, description="3-D position in room coordinates, metres (x, y, z up)"
    )


class Person(BaseModel):
    """Detected person with pose information (seed fields)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(..., description="Unique person ID")
    keypoints: list[Keypoint] = Field(..., description="17 keypoints in COCO format")
    confidence: float = Field(..., ge=0.0, le=1.0, description="Overall detection confidence")
    bounding_box: dict[str, float] = Field(
        ..., description="Person bounding box in the view: x, y, width, height (0-1)"
    )
    activity: str | None = Field(None, description="Detected activity")
    zone_id: str | None = Field(None, description="Current zone ID")


class PoseFrame(BaseModel):
    """Single frame of pose estimation data (seed fields)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: dt.datetime = Field(..., description="Frame timestamp")
    frame_id: int = Field(..., description="Sequential frame ID")
    persons: list[Person] = Field(..., description="Detected persons")
    processing_time_ms: float = Field(..., description="Processing time in milliseconds")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Additional metadata")


class Event(BaseModel):
    """A domain event (seed event names, e.g. ``person.fall_detected``)."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = Field(None, description="Store-assigned, monotonically increasing id")
    type: str = Field(..., description="Event name from the seed catalogue")
    timestamp: dt.datetime = Field(..., description="When the event happened (UTC)")
    space_id: str | None = Field(None, description="Space the event belongs to")
    data: dict[str, Any] = Field(default_factory=dict, description="Event payload")
