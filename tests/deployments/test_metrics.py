"""/metrics rendering: the seed's API metrics with route templates, and the pipeline's."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deployments.api import metrics


def samples() -> dict[str, list]:
    text = generate_latest(metrics.REGISTRY).decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_requests_are_labelled_by_route_template_and_errors_by_kind() -> None:
    metrics.observe_request("GET", "/api/v1/pose/persons/{person_id}", 404, 0.003)
    metrics.observe_request("GET", "/api/v1/pose/current", 200, 0.02)
    got = samples()
    labels = [s.labels for s in got["api_requests_total"]]
    assert {"method": "GET", "endpoint": "/api/v1/pose/persons/{person_id}",
            "status": "404"} in labels
    errors = [s.labels for s in got["api_errors_total"] if s.value > 0]
    assert {"endpoint": "/api/v1/pose/persons/{person_id}", "error_type": "not_found"} in errors
    assert any(s.labels.get("endpoint") == "/api/v1/pose/current"
               for s in got["api_request_duration_seconds_bucket"])


def test_pipeline_metrics_come_from_the_scraped_snapshot() -> None:
    metrics.PIPELINE.snapshot = {
        "up": {"supervisor": True, "estimator": False},
        "routers": [{"id": "r1", "space_id": "lab", "state": "connected", "packets": 500,
                     "windows": 20, "drops": 1, "bad_records": 2, "spoofed_datagrams": 0}],
        "spaces": [{"space_id": "lab", "persons": ["person_1", "person_2"],
                    "zones": {"sofa": {"occupancy_count": 1}}, "hops": 40}],
        "estimator": {"batches": 10, "windows": 30, "recent_batch_sizes": [3, 3, 4],
                      "recent_batch_ms": [10.0, 12.0, 30.0]},
        "gateway": {"frames_in": 40, "ws_frames_dropped": 0},
        "auth": {"refused_401": 5},
    }
    got = samples()

    def value(name: str, **labels: str) -> float:
        (match,) = [s for s in got[name] if all(s.labels.get(k) == v for k, v in labels.items())]
        return float(match.value)

    assert value("invispose_router_packets_total", router="r1", space="lab") == 500
    assert value("invispose_router_connected", router="r1") == 1
    assert value("invispose_tracks_active", space="lab") == 2
    assert value("invispose_zone_persons", space="lab", zone="sofa") == 1
    assert value("invispose_component_up", component="estimator") == 0
    assert value("invispose_inference_latency_seconds", quantile="0.5") == 0.012
    assert value("invispose_auth_refused_total", status="401") == 5
    text = generate_latest(metrics.REGISTRY).decode()
    assert "person_1" not in text  # never a person id in a label
