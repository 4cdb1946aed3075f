"""Building the seed's PoseFrame from track arrays without per-field validation.

A frame of four persons holds 68 keypoints; validating each through pydantic costs more
than the whole tracking step. The values are produced here from arrays whose ranges are
enforced by clipping, so the models are filled directly, exactly as ``model_construct``
does (``tests/unit/tracking`` checks that every frame validates).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from invispose.schemas import COCO_KEYPOINTS, Keypoint, Person, PoseFrame

F64 = npt.NDArray[np.float64]
M = TypeVar("M", bound=BaseModel)

_KEYPOINT_FIELDS = frozenset(Keypoint.model_fields)
_PERSON_FIELDS = frozenset(Person.model_fields)
_FRAME_FIELDS = frozenset(PoseFrame.model_fields)
_new = BaseModel.__new__
_set = object.__setattr__
#: box growth per side, as a fraction of the keypoints' extent (sim.view.box_front)
BOX_PAD = 0.04
_BOX_PAD_V = np.array([0.0, 0.01])
#: keypoints below this confidence do not stretch the bounding box
BOX_MIN_CONF = 0.1


def _construct(cls: type[M], values: dict[str, Any], fields: frozenset[str]) -> M:
    """A model filled with trusted values (the body of ``model_construct``, minus defaults)."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(fields))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def _keypoints(xs: list[float], ys: list[float], cs: list[float], ps: list[Any]) -> list[Keypoint]:
    """The 17 keypoints of a person: ``_construct`` inlined, the hottest loop of a frame."""
    out: list[Keypoint] = []
    # Every field is set, so one fields-set can be shared: pydantic only ever adds names to it.
    fields_set = set(_KEYPOINT_FIELDS)
    for k, name in enumerate(COCO_KEYPOINTS):
        kp = _new(Keypoint)
        _set(
            kp,
            "__dict__",
            {
                "id": k,
                "x": xs[k],
                "y": ys[k],
                "confidence": cs[k],
                "name": name,
                "position_m": tuple(ps[k]),
            },
        )
        _set(kp, "__pydantic_fields_set__", fields_set)
        _set(kp, "__pydantic_extra__", None)
        _set(kp, "__pydantic_private__", None)
        out.append(kp)
    return out


def bounding_boxes(u: F64, v: F64, conf: F64) -> F64:
    """Boxes (N, 4) as x, y, width, height around the confident keypoints (N, 17) in 0–1."""
    seen = conf >= BOX_MIN_CONF  # (N, 17)
    if not seen.all():
        # keypoints below the threshold do not count, unless a person has none above it
        seen |= ~seen.any(axis=1, keepdims=True)
        u_lo, v_lo = np.where(seen, u, np.inf).min(axis=1), np.where(seen, v, np.inf).min(axis=1)
        u_hi, v_hi = np.where(seen, u, -np.inf).max(axis=1), np.where(seen, v, -np.inf).max(axis=1)
    else:
        u_lo, v_lo, u_hi, v_hi = u.min(axis=1), v.min(axis=1), u.max(axis=1), v.max(axis=1)
    # the simulator's box convention (sim.view.box_front): heads and feet reach past their
    # keypoints, so the extent grows by BOX_PAD of its size per side (plus 0.01 in v)
    lo = np.stack([u_lo, v_lo], axis=1)  # (N, 2)
    hi = np.stack([u_hi, v_hi], axis=1)
    pad = (hi - lo) * BOX_PAD + _BOX_PAD_V
    lo, hi = np.maximum(lo - pad, 0.0), np.minimum(hi + pad, 1.0)
    return np.concatenate([lo, np.maximum(hi - lo, 0.0)], axis=1)


def build_persons(
    person_ids: list[str],
    keypoints_m: F64,
    keypoint_conf: F64,
    u: F64,
    v: F64,
    boxes: F64,
    confidence: F64,
    activities: list[str | None],
    zone_ids: list[str | None],
) -> list[Person]:
    """Persons of a frame from skeletons (N, 17, 3), view x/y (N, 17) and boxes (N, 4).

    Every value must already lie in its range: x, y, confidences in 0–1.
    """
    if not person_ids:
        return []
    # one rounding and one conversion to Python floats per precision
    view = np.round(np.concatenate([u, v, boxes], axis=1), 4).tolist()  # (N, 17 + 17 + 4)
    confs = np.round(np.concatenate([keypoint_conf, confidence[:, None]], axis=1), 3).tolist()
    pos = np.round(keypoints_m, 3).tolist()  # (N, 17, 3)
    persons: list[Person] = []
    for n, pid in enumerate(person_ids):
        row = view[n]
        keypoints = _keypoints(row[:17], row[17:34], confs[n], pos[n])
        bx, by, bw, bh = row[34:]
        persons.append(
            _construct(
                Person,
                {
                    "id": pid,
                    "keypoints": keypoints,
                    "confidence": confs[n][17],
                    "bounding_box": {"x": bx, "y": by, "width": bw, "height": bh},
                    "activity": activities[n],
                    "zone_id": zone_ids[n],
                },
                _PERSON_FIELDS,
            )
        )
    return persons


def build_frame(
    timestamp: dt.datetime,
    frame_id: int,
    persons: list[Person],
    processing_time_ms: float,
    metadata: dict[str, Any],
) -> PoseFrame:
    """The PoseFrame around already built persons."""
    return _construct(
        PoseFrame,
        {
            "timestamp": timestamp,
            "frame_id": frame_id,
            "persons": persons,
            "processing_time_ms": processing_time_ms,
            "metadata": metadata,
        },
        _FRAME_FIELDS,
    )
