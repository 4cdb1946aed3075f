"""invispose.alerts: performance degraded and system error from a space's hops."""

from __future__ import annotations

from invispose.alerts import MIN_SAMPLES, PerformanceWatch
from invispose.config import AlertConfig


def watch(**config: float) -> PerformanceWatch:
    return PerformanceWatch(AlertConfig(**config), "lab")


def test_a_slow_window_alerts_once_then_again_after_repeat_s_or_recovery() -> None:
    w = watch(latency_p95_ms=100.0, window_s=10.0, repeat_s=60.0)
    fast = [e for i in range(MIN_SAMPLES) for e in w.hop(float(i) * 0.1, 20.0)]
    assert fast == []
    slow = [e for i in range(MIN_SAMPLES) for e in w.hop(2.0 + i * 0.1, 500.0)]
    (alert,) = slow
    assert alert.type == "alert.performance_degraded" and alert.space_id == "lab"
    assert alert.data["metric"] == "hop_latency_p95_ms" and alert.data["value"] > 100
    assert alert.data["threshold"] == 100.0 and alert.data["component"] == "space:lab"
    later = [e for i in range(MIN_SAMPLES) for e in w.hop(70.0 + i * 0.1, 500.0)]
    assert len(later) == 1  # still slow after repeat_s: again
    recovered = [e for i in range(3 * MIN_SAMPLES) for e in w.hop(100.0 + i * 0.1, 10.0)]
    assert recovered == []
    again = [e for i in range(3 * MIN_SAMPLES) for e in w.hop(110.0 + i * 0.1, 900.0)]
    assert len(again) == 1  # a new breach after recovery alerts at once


def test_consecutive_inference_failures_raise_one_system_error_per_streak() -> None:
    w = watch(consecutive_failures=3)
    raised = [e for i in range(10) for e in w.failure(float(i), "RayActorError")]
    (alert,) = raised
    assert alert.type == "alert.system_error" and alert.data["component"] == "estimator"
    assert "3 hops in a row" in alert.data["message"]
    w.hop(20.0, 10.0)  # a success ends the streak
    assert len([e for i in range(3) for e in w.failure(30.0 + i, "TimeoutError")]) == 1


def test_a_person_still_for_inactivity_s_is_reported_once_per_still_spell() -> None:
    import numpy as np

    from invispose.alerts import InactivityWatch

    still = InactivityWatch(AlertConfig(inactivity_s=60.0, inactivity_radius_m=0.5), "lab")
    spot = np.array([2.0, 3.0])
    raised = []
    for i in range(130):  # two minutes at 1 Hz, jittering by 0.2 m
        jitter = np.array([0.2 * (-1) ** i, 0.0])
        raised += still.frame(float(i), [("person_1", spot + jitter, "sofa")])
    (alert,) = raised
    assert alert.type == "analytics.threshold_exceeded"
    assert alert.data["metric"] == "inactive_s" and alert.data["person_id"] == "person_1"
    assert alert.data["value"] >= 60.0 and alert.data["zone_id"] == "sofa"
    moved = still.frame(200.0, [("person_1", spot + 2.0, "sofa")])  # got up: a new spell
    assert moved == []
    assert len([e for i in range(61) for e in still.frame(
        201.0 + i, [("person_1", spot + 2.0, "sofa")])]) == 1
    off = InactivityWatch(AlertConfig(), "lab")  # inactivity_s unset: off
    assert [e for i in range(1000) for e in off.frame(float(i), [("p", spot, None)])] == []
