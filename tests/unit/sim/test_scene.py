"""Streaming scenes: determinism in time, router independence, ground truth, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from invispose.csi.formats import read_capture
from invispose.sim import commands
from invispose.sim.scene import RouterSpec, Scene
from invispose.sim.scene_config import load_scene_config
from invispose.sim.view import project_front

DEMO = Path(commands.__file__).parent / "scenes" / "demo.yaml"
ROUTERS = [
    RouterSpec("a", "esp32", ((5.8, 0.3, 1.0),), ((0.2, 4.7, 1.0),)),
    RouterSpec("b", "intel5300", ((0.3, 0.2, 1.5),), ((5.7, 4.8, 1.2), (5.67, 4.8, 1.2))),
]


def test_frames_do_not_depend_on_how_time_is_stepped() -> None:
    scene = Scene.simple([6.0, 5.0, 2.7], ROUTERS, 2, seed=4, epoch_s=0.0)
    whole = scene.frames("a", 0.0, 1.0)
    stepped = [f for k in range(20) for f in scene.frames("a", k * 0.05, (k + 1) * 0.05)]
    again = Scene.simple([6.0, 5.0, 2.7], ROUTERS[:1], 2, seed=4, epoch_s=0.0)  # one router
    alone = again.frames("a", 0.0, 1.0)
    assert [f.seq for f in whole] == [f.seq for f in stepped] == [f.seq for f in alone]
    for x, y, z in zip(whole, stepped, alone, strict=True):
        assert np.array_equal(x.csi, y.csi) and np.array_equal(x.csi, z.csi)
    assert 85 <= len(whole) <= 100  # 100 packets/s minus losses
    times = np.asarray([f.device_time_s for f in whole])
    assert np.all(np.diff(times) > 0)
    assert abs(np.median(np.diff(times)) - 0.01) < 0.002


def test_step_advances_every_router() -> None:
    scene = Scene.simple([6.0, 5.0, 2.7], ROUTERS, 1, seed=2, epoch_s=100.0)
    out = scene.step(0.2) | scene.step(0.2)
    assert set(out) == {"a", "b"}
    assert scene.time_s == 0.4
    frame = out["b"][0]
    assert frame.csi.shape == (1, 2, 30) and frame.format == "sim"
    assert frame.arrival_time_s > 100.2


def test_ground_truth_of_the_demo_scene() -> None:
    scene = Scene.from_config(load_scene_config(DEMO), epoch_s=0.0)
    truths = {t.person_id: t for t in scene.ground_truth(1.0)}
    assert set(truths) == {"alice", "bob"}
    alice = truths["alice"]
    assert alice.activity == "walking" and not alice.falling
    u, v = project_front(alice.keypoints_m, scene.room.size_m)
    assert np.allclose(alice.keypoints_uv, np.stack((u, v), -1))
    assert 0 <= alice.box["x"] <= u.min() and alice.box["x"] + alice.box["width"] >= u.max()
    fall_t = next(s.t0_s for s in scene.people[0].segments if s.kind == 4)
    assert scene.ground_truth(fall_t + 0.2)[0].falling
    later = scene.ground_truth(fall_t + 3.0)[0]
    assert later.activity == "fallen" and later.fall_times_s == [fall_t]
    assert json.dumps(later.to_json())


def test_front_view_maps_the_room_into_the_image() -> None:
    size = np.asarray([6.0, 5.0, 2.7])
    corners = np.stack(np.meshgrid([0, 6.0], [0, 5.0], [0, 2.7], indexing="ij"), -1).reshape(-1, 3)
    u, v = project_front(corners, size)
    assert np.all((u >= 0) & (u <= 1) & (v >= 0) & (v <= 1))
    u, v = project_front([[3.0, 5.0, 1.35], [4.0, 5.0, 2.0]], size)
    assert (u[0], v[0]) == (0.5, 0.5)
    assert u[1] > 0.5 and v[1] < 0.5  # right and up in the room: right and up in the image


def test_sim_scene_command_writes_captures_and_truth(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sim", "scene", "--config", str(DEMO), "--duration", "1.5",
                              "--out", str(tmp_path), "--seed", "3"])
    assert args.func(args) == 0
    summary = json.loads((tmp_path / "scene.json").read_text())
    for rid, info in summary["routers"].items():
        result = read_capture(tmp_path / info["file"])
        assert result.bad_records == 0 and len(result.frames) == info["frames"] > 100, rid
    lines = (tmp_path / "ground_truth.jsonl").read_text().splitlines()
    assert len(lines) == 31
    first = json.loads(lines[0])
    assert {p["id"] for p in first["persons"]} == {"alice", "bob"}
    assert np.asarray(first["persons"][0]["keypoints_m"]).shape == (17, 3)
