"""Tracking: fuse routers' detections, keep person ids, classify activity, watch zones."""

from invispose.tracking.activity import ActivityParams
from invispose.tracking.kalman import ConstantVelocityKalman
from invispose.tracking.tracker import Tracker, TrackerUpdate

__all__ = ["ActivityParams", "ConstantVelocityKalman", "Tracker", "TrackerUpdate"]
