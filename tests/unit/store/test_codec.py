"""The storage codec keeps every value the API serves."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invispose.errors import InvisPoseError
from invispose.schemas import Keypoint, Person, PoseFrame
from invispose.store.codec import decode_frame, decode_frame_dict, encode_frame, from_us, to_us

from .conftest import T0, FrameFactory, make_person


def roundtrip(frame: PoseFrame) -> PoseFrame:
    enc = encode_frame(frame)
    return decode_frame(
        enc.t_us, enc.frame_id, enc.processing_time_ms, enc.keypoints, enc.persons, enc.metadata
    )


def test_frame_round_trip_is_exact(make_frame: FrameFactory) -> None:
    frame = make_frame(1.234567, ("a", "b", "c"))
    back = roundtrip(frame)
    assert back == frame
    assert back.model_dump_json() == frame.model_dump_json()
    assert back.timestamp.tzinfo is not None


def test_keypoints_are_stored_as_float32(make_frame: FrameFactory) -> None:
    frame = make_frame(0.0)
    frame.persons[0].keypoints[0] = Keypoint(
        id=0, x=0.1, y=1 / 3, confidence=0.7, name="nose", position_m=(1.1, 2.2, 3.3)
    )
    kp = roundtrip(frame).persons[0].keypoints[0]
    assert kp.x == float(np.float32(0.1)) and kp.y == float(np.float32(1 / 3))
    assert kp.confidence == float(np.float32(0.7))
    assert kp.position_m == tuple(float(v) for v in np.array([1.1, 2.2, 3.3], np.float32).tolist())
    # 17 keypoints × 6 float32 values plus a small header: about 400 bytes a person
    assert len(encode_frame(frame).keypoints) < 17 * 6 * 4 + 16


def test_partial_and_unusual_keypoints_round_trip(rng: np.random.Generator) -> None:
    full = make_person(rng, "p")
    kps = [full.keypoints[i] for i in (11, 12, 0, 5)]
    kps[0] = kps[0].model_copy(update={"position_m": None})
    kps[2] = kps[2].model_copy(update={"name": "head"})
    odd = full.model_copy(update={"keypoints": kps, "activity": None, "zone_id": None})
    empty = full.model_copy(update={"id": "q", "keypoints": []})
    frame = PoseFrame(
        timestamp=T0, frame_id=7, persons=[odd, empty, make_person(rng, "r")], processing_time_ms=2
    )
    back = roundtrip(frame)
    assert back == frame
    enc = encode_frame(frame)
    plain = decode_frame_dict(
        enc.t_us, enc.frame_id, enc.processing_time_ms, enc.keypoints, enc.persons, enc.metadata
    )
    assert plain == frame.model_dump()
    assert back.persons[0].keypoints[0].position_m is None
    assert back.persons[0].keypoints[2].name == "head"


def test_empty_frame_and_metadata_round_trip() -> None:
    frame = PoseFrame(timestamp=T0, frame_id=0, persons=[], processing_time_ms=0.5)
    assert roundtrip(frame) == frame
    with_np = frame.model_copy(update={"metadata": {"n": np.int64(3), "v": np.float32(0.5)}})
    assert roundtrip(with_np).metadata == {"n": 3, "v": 0.5}


def test_times_are_utc_microseconds() -> None:
    naive = dt.datetime(2025, 1, 2, 3, 4, 5, 678901)
    assert from_us(to_us(naive)) == naive.replace(tzinfo=dt.UTC)
    plus2 = dt.datetime(2025, 1, 2, 5, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert from_us(to_us(plus2)) == plus2
    assert to_us(1.5) == 1_500_000
    for bad in ("2025-01-01", True, float("nan"), None):
        with pytest.raises(InvisPoseError):
            to_us(bad)  # type: ignore[arg-type]


def test_hip_centre_comes_from_the_hips(rng: np.random.Generator) -> None:
    person = make_person(rng, "p", hip_m=(1.5, 2.5, 0.75))
    frame = PoseFrame(timestamp=T0, frame_id=1, persons=[person], processing_time_ms=1)
    (row,) = encode_frame(frame).person_rows
    assert row.hip_m == pytest.approx((1.5, 2.5, 0.75), abs=1e-6)
    # without hips: the mean of the positions that are known
    kps = [kp.model_copy(update={"position_m": None}) for kp in person.keypoints]
    kps[0] = kps[0].model_copy(update={"position_m": (1.0, 1.0, 1.0)})
    kps[1] = kps[1].model_copy(update={"position_m": (3.0, 1.0, 2.0)})
    frame.persons[0] = person.model_copy(update={"keypoints": kps})
    assert encode_frame(frame).person_rows[0].hip_m == (2.0, 1.0, 1.5)
    frame.persons[0] = person.model_copy(update={"keypoints": []})
    assert encode_frame(frame).person_rows[0].hip_m is None


def test_bad_frames_raise_clear_errors(make_frame: FrameFactory, rng: np.random.Generator) -> None:
    with pytest.raises(InvisPoseError, match="expected a PoseFrame"):
        encode_frame({"frame_id": 1})  # type: ignore[arg-type]
    twice = make_frame(0.0, ("a", "a"))
    with pytest.raises(InvisPoseError, match="twice"):
        encode_frame(twice)
    with pytest.raises(InvisPoseError, match="JSON"):
        encode_frame(make_frame(0.0).model_copy(update={"metadata": {"x": object()}}))
    with pytest.raises(InvisPoseError, match="processing_time_ms"):
        encode_frame(make_frame(0.0).model_copy(update={"processing_time_ms": float("nan")}))
    frame = make_frame(0.0)
    frame.persons[0] = frame.persons[0].model_copy(update={"confidence": float("nan")})
    with pytest.raises(InvisPoseError, match="confidence"):
        encode_frame(frame)
    garbage = PoseFrame.model_construct(
        timestamp=T0,
        frame_id=1,
        persons=["not a person"],  # type: ignore[list-item]
        processing_time_ms=1.0,
        metadata={},
    )
    with pytest.raises(InvisPoseError, match="Person"):
        encode_frame(garbage)
    bad_kp = Person.model_construct(
        id="p",
        keypoints=[{"id": 0}],  # type: ignore[list-item]
        confidence=0.5,
        bounding_box={},
        activity=None,
        zone_id=None,
    )
    with pytest.raises(InvisPoseError, match="Keypoint"):
        encode_frame(garbage.model_copy(update={"persons": [bad_kp]}))
    bad_time = PoseFrame.model_construct(
        timestamp="yesterday",  # type: ignore[arg-type]
        frame_id=1,
        persons=[],
        processing_time_ms=1.0,
        metadata={},
    )
    with pytest.raises(InvisPoseError, match="timestamp"):
        encode_frame(bad_time)


f32 = st.floats(width=32, allow_nan=False)
unit32 = st.floats(0.0, 1.0, width=32)
keypoint = st.builds(
    Keypoint,
    id=st.integers(0, 16),
    x=f32,
    y=f32,
    confidence=unit32,
    name=st.sampled_from(["nose", "left_hip", "custom", ""]),
    position_m=st.none() | st.tuples(f32, f32, f32),
)
person = st.builds(
    Person,
    id=st.text(min_size=1, max_size=8),
    keypoints=st.lists(keypoint, max_size=20),
    confidence=st.floats(0.0, 1.0),
    bounding_box=st.dictionaries(st.sampled_from(["x", "y", "width"]), st.floats(-2.0, 2.0)),
    activity=st.none() | st.sampled_from(["walking", "fallen"]),
    zone_id=st.none() | st.text(max_size=5),
)
frame = st.builds(
    PoseFrame,
    timestamp=st.datetimes(timezones=st.just(dt.UTC)),
    frame_id=st.integers(-(2**63) + 1, 2**63 - 1),
    persons=st.lists(person, max_size=4, unique_by=lambda p: p.id),
    processing_time_ms=st.floats(0.0, 1e6),
    metadata=st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4)),
)


@settings(max_examples=60, deadline=None)
@given(frame)
def test_any_valid_frame_round_trips(frame: PoseFrame) -> None:
    assert roundtrip(frame) == frame
