"""Tracked persons: per-track bookkeeping plus the arrays of all tracks, row by row.

The numeric state of every track of a space (Kalman state and covariance, smoothed
skeleton, keypoint confidences) lives in one :class:`TrackBank` so that each step works on
all tracks with a fixed number of numpy calls; row ``i`` belongs to ``bank.tracks[i]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from invispose.schemas import N_KEYPOINTS
from invispose.tracking.activity import ActivityState

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Track:
    """A person hypothesis; it gets a person id once it has been seen often enough."""

    key: int  # internal, unique per tracker; person ids are only given on confirmation
    presence: float  # smoothed presence score 0–1
    first_seen_s: float  # tracker clock
    last_seen_s: float  # tracker clock
    hits: int = 1  # observations in a row while tentative, then in total
    person_id: str | None = None
    n_views: int = 1  # routers that saw the person in its latest observation
    activity: ActivityState = field(default_factory=ActivityState)

    @property
    def confirmed(self) -> bool:
        """Whether the track is reported (has a person id)."""
        return self.person_id is not None


@dataclass(slots=True)
class TrackBank:
    """Arrays of every track, one row per entry of ``tracks``."""

    x: F64 = field(default_factory=lambda: np.zeros((0, 6)))  # (N, 6) centre and velocity
    p: F64 = field(
        default_factory=lambda: np.zeros((0, 3, 3))
    )  # (N, 3, 3) per-axis covariance [var_p, cov_pv, var_v] (see kalman.py)
    offsets_m: F64 = field(
        default_factory=lambda: np.zeros((0, N_KEYPOINTS, 3))
    )  # (N, 17, 3) smoothed keypoints relative to the centre
    conf: F64 = field(default_factory=lambda: np.zeros((0, N_KEYPOINTS)))  # (N, 17)
    tracks: list[Track] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tracks)

    def keypoints_m(self) -> F64:
        """Smoothed skeletons (N, 17, 3) around the filtered centres."""
        return np.asarray(self.x[:, None, :3] + self.offsets_m, dtype=np.float64)

    def select(self, rows: list[int]) -> None:
        """Keep only these rows, in this order."""
        if rows == list(range(len(self.tracks))):
            return
        index = np.asarray(rows, dtype=np.int64)
        self.x, self.p = self.x[index], self.p[index]
        self.offsets_m, self.conf = self.offsets_m[index], self.conf[index]
        self.tracks = [self.tracks[i] for i in rows]

    def append(self, x: F64, p: F64, offsets_m: F64, conf: F64, tracks: list[Track]) -> None:
        """Add tracks with their arrays (n, 6), (n, 3, 3), (n, 17, 3), (n, 17)."""
        if not tracks:
            return
        self.x = np.concatenate([self.x, x])
        self.p = np.concatenate([self.p, p])
        self.offsets_m = np.concatenate([self.offsets_m, offsets_m])
        self.conf = np.concatenate([self.conf, conf])
        self.tracks = self.tracks + tracks

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready state of every track."""
        return [
            {
                "key": tr.key,
                "person_id": tr.person_id,
                "x": self.x[i].tolist(),
                "p": self.p[i].tolist(),
                "offsets_m": self.offsets_m[i].tolist(),
                "conf": self.conf[i].tolist(),
                "presence": tr.presence,
                "first_seen_s": tr.first_seen_s,
                "last_seen_s": tr.last_seen_s,
                "hits": tr.hits,
                "n_views": tr.n_views,
                "activity": tr.activity.to_dict(),
            }
            for i, tr in enumerate(self.tracks)
        ]

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> TrackBank:
        """A bank from ``to_list`` output."""
        bank = cls()
        if not rows:
            return bank
        x = np.asarray([r["x"] for r in rows], dtype=np.float64)
        p = np.asarray([r["p"] for r in rows], dtype=np.float64)
        offsets = np.asarray([r["offsets_m"] for r in rows], dtype=np.float64)
        conf = np.asarray([r["conf"] for r in rows], dtype=np.float64)
        n = len(rows)
        if (
            x.shape != (n, 6)
            or p.shape != (n, 3, 3)
            or offsets.shape != (n, N_KEYPOINTS, 3)
            or conf.shape != (n, N_KEYPOINTS)
        ):
            raise ValueError("track arrays of the wrong shape")
        tracks = [
            Track(
                key=int(r["key"]),
                presence=float(r["presence"]),
                first_seen_s=float(r["first_seen_s"]),
                last_seen_s=float(r["last_seen_s"]),
                hits=int(r["hits"]),
                person_id=r.get("person_id"),
                n_views=int(r.get("n_views", 1)),
                activity=ActivityState.from_dict(r["activity"]),
            )
            for r in rows
        ]
        bank.append(x, p, offsets, conf, tracks)
        return bank
