"""The model gives the same answer on windows built from the real readers' decoding of the
simulator's wire output as on windows built from the simulator's own frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invispose.csi.formats import make_reader
from invispose.csi.window import Windower
from invispose.model.network import PoseNet
from invispose.schemas import CsiFrame, CsiWindow
from invispose.sim import wire
from invispose.sim.scene import RouterSpec, Scene

ROOM_M = (6.0, 5.0, 2.7)
ROUTERS = {
    "intel5300": RouterSpec(
        "intel",
        "intel5300",
        ((0.3, 0.2, 1.5), (0.33, 0.2, 1.5)),
        ((5.7, 4.8, 1.2), (5.67, 4.8, 1.2), (5.64, 4.8, 1.2)),
    ),
    "nexmon": RouterSpec("pi", "nexmon", ((3.0, 0.1, 1.5),), ((3.0, 4.9, 1.5),)),
    "esp32": RouterSpec("esp", "esp32", ((5.8, 0.3, 1.0),), ((0.2, 4.7, 1.0),)),
}


def encode(fmt: str, frames: list[CsiFrame]) -> bytes:
    if fmt == "intel5300":
        return wire.intel5300_dat(frames)
    if fmt == "nexmon":
        return wire.nexmon_pcap(frames)
    return wire.esp32_text(frames, "esp-csi")


def windows(spec: RouterSpec, frames: list[CsiFrame], every: int = 20) -> list[CsiWindow]:
    windower = Windower(
        router_id=spec.router_id,
        space_id="room",
        tx_pos_m=spec.tx_positions_m,
        rx_pos_m=spec.rx_positions_m,
        room_size_m=ROOM_M,
    )
    out = []
    for i, frame in enumerate(frames, 1):
        windower.push(frame)
        if i % every == 0 and i >= 64:
            window = windower.make_window()
            assert window is not None
            out.append(window)
    return out


@pytest.mark.parametrize("fmt", sorted(ROUTERS))
def test_inference_through_wire_and_readers_matches_simulator_frames(fmt: str) -> None:
    spec = ROUTERS[fmt]
    scene = Scene.simple(ROOM_M, [spec], 2, seed=5, epoch_s=1.7e9)
    sent = scene.frames(spec.router_id, 0.0, 1.5)
    reader = make_reader(fmt, spec.router_id)
    decoded = reader.feed(encode(fmt, sent)) + reader.flush()
    assert reader.bad_records == 0 and len(decoded) == len(sent)
    # the wire carries arrival as capture time; keep the simulator's so both runs match
    for got, want in zip(decoded, sent, strict=True):
        got.arrival_time_s = want.arrival_time_s
    from_sim, from_wire = windows(spec, sent), windows(spec, decoded)
    assert len(from_sim) == len(from_wire) >= 3
    torch.manual_seed(0)
    model = PoseNet().eval()
    det_sim, det_wire = model.predict(from_sim), model.predict(from_wire)
    for a, b in zip(det_sim, det_wire, strict=True):
        np.testing.assert_allclose(a.keypoints_m, b.keypoints_m, atol=1e-4)
        np.testing.assert_allclose(a.presence, b.presence, atol=1e-5)
