"""The bare-model benchmark reports throughput per batch size."""

from __future__ import annotations

from invispose.model.bench import bench_model
from invispose.model.network import PoseNet, PoseNetConfig


def test_bench_reports_each_batch_size() -> None:
    model = PoseNet(
        PoseNetConfig(n_heads=4, n_subcarriers=8, d_link=16, d_model=32, n_decoder_layers=1)
    )
    report = bench_model(
        (1, 4), seconds=0.05, model=model, n_links=3, window_samples=16, cuda=False
    )
    assert report["parameters"] > 0 and report["n_links"] == 3
    for size in (1, 4):
        timing = report["cpu"][f"batch_{size}"]
        assert timing["batches"] >= 3
        assert timing["windows_per_s"] > 0 and timing["ms_per_batch"] > 0
    assert model.training  # the benchmark leaves the model as it found it
