"""Wire output parses back through the project's readers to the same CSI values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from invispose.csi.esp32 import Esp32Reader
from invispose.csi.formats import read_capture
from invispose.csi.intel5300 import Intel5300Reader
from invispose.csi.nexmon import NexmonReader
from invispose.errors import SimulationError
from invispose.schemas import CsiFrame
from invispose.sim import wire
from invispose.sim.scene import RouterSpec, Scene

ROUTERS = [
    RouterSpec("intel", "intel5300", ((0.3, 0.2, 1.5), (0.33, 0.2, 1.5)),
               ((5.7, 4.8, 1.2), (5.67, 4.8, 1.2), (5.64, 4.8, 1.2))),
    RouterSpec("esp", "esp32", ((5.8, 0.3, 1.0),), ((0.2, 4.7, 1.0),)),
    RouterSpec("pi", "nexmon", ((3.0, 0.1, 1.5),), ((3.0, 4.9, 1.5),)),
]


@pytest.fixture(scope="module")
def frames() -> dict[str, list[CsiFrame]]:
    scene = Scene.simple([6.0, 5.0, 2.7], ROUTERS, 2, seed=3, epoch_s=1.7e9)
    return {rid: scene.frames(rid, 0.0, 0.4) for rid in scene.router_ids}


def _same(decoded: list[CsiFrame], sent: list[CsiFrame], skip: tuple[int, ...] = ()) -> None:
    assert len(decoded) == len(sent) > 0
    for got, want in zip(decoded, sent, strict=True):
        keep = ~np.isin(got.subcarriers, skip)
        assert np.array_equal(got.subcarriers, want.subcarriers)
        assert np.array_equal(got.csi[..., keep], want.csi[..., keep])


@pytest.mark.parametrize("dialect", ["csi-tool", "esp-csi"])
def test_esp32_lines_round_trip(frames: dict[str, list[CsiFrame]], dialect: str) -> None:
    sent = frames["esp"]
    reader = Esp32Reader("esp")
    decoded = reader.feed(wire.esp32_text(sent, dialect)) + reader.flush()
    assert reader.bad_records == 0
    # ESP32-CSI-Tool lines carry no first_word flag: readers drop subcarriers 0 and +1
    _same(decoded, sent, skip=(0, 1) if dialect == "csi-tool" else ())
    assert [f.device_time_s for f in decoded] == pytest.approx(
        [f.device_time_s % 4294.967296 for f in sent], abs=1e-6)
    assert decoded[0].rssi_dbm == round(sent[0].rssi_dbm or 0.0)


def test_nexmon_pcap_and_udp_round_trip(frames: dict[str, list[CsiFrame]]) -> None:
    sent = frames["pi"]
    reader = NexmonReader("pi")
    decoded = reader.feed(wire.nexmon_pcap(sent)) + reader.flush()
    assert reader.bad_records == 0
    _same(decoded, sent)
    assert decoded[0].chipset == "bcm43455c0" and decoded[0].channel == 42
    assert decoded[0].bandwidth_mhz == 80
    udp = NexmonReader("pi", container="udp")
    live = [f for frame in sent for p in wire.nexmon_payloads(frame) for f in udp.feed(p)]
    live += udp.flush()
    _same(live, sent)


def test_intel5300_records_round_trip(frames: dict[str, list[CsiFrame]]) -> None:
    sent = frames["intel"]
    reader = Intel5300Reader("intel")
    data = wire.intel5300_dat(sent)
    decoded = []
    for start in range(0, len(data), 777):  # arbitrary chunking
        decoded += reader.feed(data[start : start + 777])
    decoded += reader.flush()
    assert reader.bad_records == 0
    _same(decoded, sent)
    assert decoded[0].csi.shape == (2, 3, 30)
    assert decoded[0].rssi_dbm == pytest.approx(sent[0].rssi_dbm, abs=2.0)


def test_capture_files_are_detected_and_read(frames: dict[str, list[CsiFrame]],
                                              tmp_path: Path) -> None:
    for rid, fmt in (("esp", "esp32"), ("pi", "nexmon"), ("intel", "intel5300")):
        path = wire.write_capture(frames[rid], tmp_path / f"{rid}{wire.WIRE_SUFFIX[fmt]}", fmt)
        result = read_capture(path)
        assert result.format == fmt and result.bad_records == 0
        assert len(result.frames) == len(frames[rid])


def test_frames_that_do_not_fit_a_format_are_refused(frames: dict[str, list[CsiFrame]]) -> None:
    with pytest.raises(SimulationError):
        wire.esp32_line(frames["pi"][0])
    with pytest.raises(SimulationError):
        wire.intel5300_record(frames["esp"][0])
    loud = frames["esp"][0]
    too_big = CsiFrame(loud.router_id, 0, 0.0, 0.0, loud.csi * 100, loud.subcarriers)
    with pytest.raises(SimulationError):
        wire.esp32_line(too_big)
