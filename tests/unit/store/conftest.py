"""Store fixtures: a fresh database per test and a builder of realistic PoseFrames."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest

from invispose.schemas import COCO_KEYPOINTS, Keypoint, Person, PoseFrame
from invispose.store import Store

T0 = dt.datetime(2025, 6, 7, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """T0 plus a number of seconds (microsecond exact for multiples of 1e-6)."""
    return T0 + dt.timedelta(microseconds=round(seconds * 1_000_000))


def make_person(
    rng: np.random.Generator,
    person_id: str,
    *,
    hip_m: tuple[float, float, float] = (1.0, 2.0, 0.9),
    confidence: float | None = None,
    activity: str | None = "walking",
    zone_id: str | None = "living",
) -> Person:
    """A person whose keypoint values are float32-representable (as the model emits)."""
    xy = rng.random((17, 2), dtype=np.float32)  # (17, 2) normalised view coordinates
    conf = rng.random(17, dtype=np.float32)  # (17,)
    offsets = rng.normal(0.0, 0.3, (17, 3)).astype(np.float32)  # (17, 3) metres
    offsets[11] = (-0.1, 0.0, 0.0)  # hips symmetric about the hip centre
    offsets[12] = (0.1, 0.0, 0.0)
    pos = (np.asarray(hip_m, np.float32) + offsets).astype(np.float32)  # (17, 3)
    keypoints = [
        Keypoint(
            id=i,
            x=float(xy[i, 0]),
            y=float(xy[i, 1]),
            confidence=float(conf[i]),
            name=COCO_KEYPOINTS[i],
            position_m=(float(pos[i, 0]), float(pos[i, 1]), float(pos[i, 2])),
        )
        for i in range(17)
    ]
    return Person(
        id=person_id,
        keypoints=keypoints,
        confidence=float(rng.random()) if confidence is None else confidence,
        bounding_box={"x": 0.1, "y": 0.2, "width": 0.3, "height": 0.55},
        activity=activity,
        zone_id=zone_id,
    )


class FrameFactory(Protocol):
    def __call__(
        self, t_s: float, person_ids: tuple[str, ...] = ..., **person_kw: Any
    ) -> PoseFrame: ...


@pytest.fixture()
def make_frame(rng: np.random.Generator) -> FrameFactory:
    """Build a frame at T0 + t_s holding the given persons; frame ids count up."""
    counter = iter(range(1, 10**9))

    def build(t_s: float, person_ids: tuple[str, ...] = ("p1",), **person_kw: Any) -> PoseFrame:
        return PoseFrame(
            timestamp=at(t_s),
            frame_id=next(counter),
            persons=[make_person(rng, pid, **person_kw) for pid in person_ids],
            processing_time_ms=float(rng.uniform(1.0, 30.0)),
            metadata={"latency_ms": {"ingest": 0.4, "inference": 7.25}, "router_ids": ["r1"]},
        )

    return build


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh writable store in a nested folder that does not exist yet."""
    s = Store(tmp_path / "var" / "db" / "invispose.db", history_days=7.0)
    yield s
    s.close()
