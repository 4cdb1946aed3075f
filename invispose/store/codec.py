"""Compact storage form of a PoseFrame: one float32 keypoint blob plus small JSON.

A frame row keeps the keypoints of all its persons in one binary blob and the
person-level fields (id, confidence, bounding box, activity, zone) as compact JSON.

Blob layout (little endian)::

    header   uint16 (4,)     format version, P persons, K keypoints in total, flags
    values   float32 (K, 6)  x, y, confidence, position_m x, y, z
    counts   uint8 (P,)      keypoints per person
    ids      uint8 (K,)      keypoint ids        (absent with FLAG_CANONICAL_IDS)
    present  uint8 (K,)      1 = position_m set  (absent with FLAG_ALL_POSITIONS)

Keypoint values are kept as float32: values that came from float32 arrays (the model's
and tracker's outputs) round-trip bit-exactly; float64 values come back rounded to the
nearest float32 (relative error ≤ 6e-8). Every other served field (timestamp to the
microsecond, frame id, processing time, person confidence, bounding box, activity,
zone, keypoint ids and names, metadata) round-trips exactly; metadata goes through
JSON, so tuples come back as lists.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from invispose.errors import InvisPoseError
from invispose.schemas import COCO_KEYPOINTS, Keypoint, Person, PoseFrame
from invispose.store.checks import INT64_MAX, check_text

FORMAT_VERSION = 1
FLAG_CANONICAL_IDS = 1  # every person holds keypoints 0..n-1 in order
FLAG_ALL_POSITIONS = 2  # every keypoint has position_m
N_VALUES = 6  # x, y, confidence, position x, y, z
HEADER_BYTES = 8
LEFT_HIP, RIGHT_HIP = COCO_KEYPOINTS.index("left_hip"), COCO_KEYPOINTS.index("right_hip")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_MAX_UNIX_S = 1e13  # far beyond year 9999, well inside int64 microseconds
_HIPS = (LEFT_HIP, RIGHT_HIP)
_NAN3 = (math.nan, math.nan, math.nan)


@dataclass(slots=True)
class PersonRow:
    """Per-person index row derived from one frame."""

    person_id: str
    confidence: float
    activity: str | None
    zone_id: str | None
    hip_m: tuple[float, float, float] | None  # hip centre in room metres, None if unknown


@dataclass(slots=True)
class EncodedFrame:
    """A PoseFrame in its storage form, ready to insert."""

    t_us: int  # timestamp, integer microseconds since the Unix epoch (UTC)
    frame_id: int
    processing_time_ms: float
    keypoints: bytes  # blob described in the module docstring
    persons: str  # JSON list of [id, confidence, bounding_box, activity, zone_id, names]
    metadata: str | None  # JSON object, None when empty
    person_rows: list[PersonRow]


def to_us(value: dt.datetime | float | int, what: str = "time") -> int:
    """Convert a datetime (naive = UTC) or Unix seconds to integer microseconds."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return (value - EPOCH) // _ONE_US
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvisPoseError(f"{what} must be a datetime or Unix seconds, got {value!r}")
    if not math.isfinite(value) or abs(value) > _MAX_UNIX_S:
        raise InvisPoseError(f"{what} must be finite Unix seconds, got {value!r}")
    return round(value * 1_000_000)


def from_us(t_us: int) -> dt.datetime:
    """Integer microseconds since the epoch to an aware UTC datetime (exact)."""
    return EPOCH + dt.timedelta(microseconds=t_us)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, what: str) -> str:
    """JSON-encode a value (numpy scalars and arrays allowed) or raise a clear error."""
    try:
        return json.dumps(value, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvisPoseError(f"{what} cannot be stored as JSON: {exc}") from exc


def _hip_centre(
    ids: list[int], positions: list[tuple[float, float, float] | None]
) -> tuple[float, float, float] | None:
    """Hip centre from the hips' position_m, else the mean of all known positions."""
    hips = [p for i, p in zip(ids, positions, strict=True) if p is not None and i in _HIPS]
    known = hips or [p for p in positions if p is not None]
    if not known:
        return None
    n = len(known)
    return (
        sum(p[0] for p in known) / n,
        sum(p[1] for p in known) / n,
        sum(p[2] for p in known) / n,
    )


def encode_frame(frame: PoseFrame) -> EncodedFrame:
    """Encode a PoseFrame for storage; raise InvisPoseError on malformed content."""
    if not isinstance(frame, PoseFrame):
        raise InvisPoseError(f"expected a PoseFrame, got {type(frame).__name__}")
    try:
        return _encode(frame)
    except InvisPoseError:
        raise
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise InvisPoseError(f"pose frame {getattr(frame, 'frame_id', '?')}: {exc}") from exc


def _encode(frame: PoseFrame) -> EncodedFrame:
    if not isinstance(frame.timestamp, dt.datetime):
        raise InvisPoseError(f"pose frame timestamp must be a datetime, got {frame.timestamp!r}")
    fid = frame.frame_id
    if not isinstance(fid, int) or isinstance(fid, bool) or not -INT64_MAX <= fid <= INT64_MAX:
        raise InvisPoseError(f"pose frame frame_id must be a 64-bit integer, got {fid!r}")
    processing_time_ms = float(frame.processing_time_ms)
    if not math.isfinite(processing_time_ms):
        raise InvisPoseError(f"pose frame {fid} processing_time_ms is {processing_time_ms!r}")
    persons = list(frame.persons)
    counts: list[int] = []
    ids: list[int] = []
    present: list[bool] = []
    values: list[tuple[float, float, float, float, float, float]] = []
    person_json: list[list[Any]] = []
    rows: list[PersonRow] = []
    seen: set[str] = set()
    for person in persons:
        if not isinstance(person, Person):
            raise InvisPoseError(f"frame persons must be Person, got {type(person).__name__}")
        check_text(person.id, "person id")
        if person.id in seen:
            raise InvisPoseError(f"frame {frame.frame_id} lists person {person.id!r} twice")
        seen.add(person.id)
        check_text(person.activity, "person activity", optional=True)
        check_text(person.zone_id, "person zone_id", optional=True)
        kps = list(person.keypoints)
        if len(kps) > 255:
            raise InvisPoseError(f"person {person.id!r} has {len(kps)} keypoints (max 255)")
        if not all(isinstance(kp, Keypoint) for kp in kps):
            raise InvisPoseError(f"person {person.id!r} has a keypoint that is not a Keypoint")
        kp_ids = [kp.id for kp in kps]
        if kp_ids and (min(kp_ids) < 0 or max(kp_ids) >= len(COCO_KEYPOINTS)):
            raise InvisPoseError(f"person {person.id!r} has a keypoint id outside 0..16")
        positions = [kp.position_m for kp in kps]
        values.extend([(kp.x, kp.y, kp.confidence, *(kp.position_m or _NAN3)) for kp in kps])
        ids.extend(kp_ids)
        present.extend([pos is not None for pos in positions])
        names: dict[str, str] = {}
        kp_names = [kp.name for kp in kps]
        if kp_names != [COCO_KEYPOINTS[i] for i in kp_ids]:
            for i, (kp_id, name) in enumerate(zip(kp_ids, kp_names, strict=True)):
                if name != COCO_KEYPOINTS[kp_id]:
                    check_text(name, "keypoint name")
                    names[str(i)] = name
        counts.append(len(kps))
        confidence = float(person.confidence)
        if not 0.0 <= confidence <= 1.0:  # also refuses NaN, which SQLite would store as NULL
            raise InvisPoseError(f"person {person.id!r} confidence {confidence!r} is not in 0..1")
        bbox = {str(k): float(v) for k, v in person.bounding_box.items()}
        person_json.append(
            [person.id, confidence, bbox, person.activity, person.zone_id, names or None]
        )
        rows.append(
            PersonRow(
                person.id, confidence, person.activity, person.zone_id,
                _hip_centre(kp_ids, positions),
            )
        )  # fmt: skip
    if len(persons) > 65535 or len(values) > 65535:
        raise InvisPoseError(f"pose frame {frame.frame_id} is too large to store")
    canonical = True
    start = 0
    for n in counts:
        canonical = canonical and ids[start : start + n] == list(range(n))
        start += n
    flags = (FLAG_CANONICAL_IDS if canonical else 0) | (FLAG_ALL_POSITIONS if all(present) else 0)
    vals = np.asarray(values, dtype="<f4").reshape(len(values), N_VALUES)  # (K, 6) float32
    parts = [
        np.array([FORMAT_VERSION, len(persons), len(values), flags], dtype="<u2").tobytes(),
        vals.tobytes(),
        np.asarray(counts, dtype=np.uint8).tobytes(),
    ]
    if not canonical:
        parts.append(np.asarray(ids, dtype=np.uint8).tobytes())
    if not all(present):
        parts.append(np.asarray(present, dtype=np.uint8).tobytes())
    metadata = dumps(dict(frame.metadata), "pose frame metadata") if frame.metadata else None
    return EncodedFrame(
        t_us=to_us(frame.timestamp),
        frame_id=frame.frame_id,
        processing_time_ms=processing_time_ms,
        keypoints=b"".join(parts),
        persons=dumps(person_json, "pose frame persons"),
        metadata=metadata,
        person_rows=rows,
    )


def decode_frame_dict(
    t_us: int,
    frame_id: int,
    processing_time_ms: float,
    keypoints: bytes,
    persons: str,
    metadata: str | None,
    *,
    only_person: str | None = None,
) -> dict[str, Any]:
    """Rebuild a stored frame as plain data, equal to ``PoseFrame.model_dump()``.

    ``only_person`` keeps just that person.
    """
    version, n_persons, n_kp, flags = np.frombuffer(keypoints, dtype="<u2", count=4).tolist()
    if version != FORMAT_VERSION:
        raise InvisPoseError(f"pose frame {frame_id} has keypoint format {version}, not 1")
    offset = HEADER_BYTES
    vals = np.frombuffer(keypoints, dtype="<f4", count=n_kp * N_VALUES, offset=offset)
    rows = vals.reshape(n_kp, N_VALUES).tolist()  # (K, 6) Python floats
    offset += n_kp * N_VALUES * 4
    counts = np.frombuffer(keypoints, dtype=np.uint8, count=n_persons, offset=offset).tolist()
    offset += n_persons
    ids: list[int] | None = None
    if not flags & FLAG_CANONICAL_IDS:
        ids = np.frombuffer(keypoints, dtype=np.uint8, count=n_kp, offset=offset).tolist()
        offset += n_kp
    present: list[int] | None = None
    if not flags & FLAG_ALL_POSITIONS:
        present = np.frombuffer(keypoints, dtype=np.uint8, count=n_kp, offset=offset).tolist()
    out: list[dict[str, Any]] = []
    start = 0
    for count, (pid, conf, bbox, activity, zone_id, names) in zip(
        counts, json.loads(persons), strict=True
    ):
        stop = start + count
        if only_person is not None and pid != only_person:
            start = stop
            continue
        if ids is None and present is None and not names:  # the common case
            kps = [
                {"id": i, "x": r[0], "y": r[1], "confidence": r[2], "name": COCO_KEYPOINTS[i],
                 "position_m": (r[3], r[4], r[5])}
                for i, r in enumerate(rows[start:stop])
            ]  # fmt: skip
        else:
            kps = []
            for i, k in enumerate(range(start, stop)):
                x, y, c, px, py, pz = rows[k]
                kp_id = i if ids is None else ids[k]
                name = COCO_KEYPOINTS[kp_id]
                if names:
                    name = names.get(str(i), name)
                kps.append(
                    {"id": kp_id, "x": x, "y": y, "confidence": c,
                     "name": name,
                     "position_m": (px, py, pz) if present is None or present[k] else None}
                )  # fmt: skip
        start = stop
        out.append(
            {"id": pid, "keypoints": kps, "confidence": conf, "bounding_box": bbox,
             "activity": activity, "zone_id": zone_id}
        )  # fmt: skip
    return {
        "timestamp": from_us(t_us),
        "frame_id": frame_id,
        "persons": out,
        "processing_time_ms": processing_time_ms,
        "metadata": json.loads(metadata) if metadata else {},
    }


def decode_frame(
    t_us: int,
    frame_id: int,
    processing_time_ms: float,
    keypoints: bytes,
    persons: str,
    metadata: str | None,
    *,
    only_person: str | None = None,
) -> PoseFrame:
    """Rebuild the PoseFrame a row holds; ``only_person`` keeps just that person."""
    data = decode_frame_dict(
        t_us, frame_id, processing_time_ms, keypoints, persons, metadata, only_person=only_person
    )
    try:
        return PoseFrame.model_validate(data)
    except ValidationError as exc:
        raise InvisPoseError(f"stored pose frame {frame_id} is invalid: {exc}") from exc
