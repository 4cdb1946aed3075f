"""`invispose sim ...`: simulated captures with ground truth, and training datasets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from invispose.errors import SimulationError
from invispose.schemas import CsiFrame
from invispose.sim.dataset import SPLITS, write_shards
from invispose.sim.scene import Scene
from invispose.sim.scene_config import load_scene_config
from invispose.sim.wire import WIRE_SUFFIX, write_capture

SCENE_FORMATS = ("auto", "esp32", "nexmon", "intel5300", "frames")
STEP_S = 1.0  # scene seconds simulated per step (bounds memory on long runs)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `sim` command group."""
    sim = subparsers.add_parser("sim", help="physical CSI simulator")
    sub = sim.add_subparsers(dest="sim_command", required=True)

    scene = sub.add_parser("scene", help="simulate a scene file: captures + ground truth")
    scene.add_argument("--config", required=True, type=Path, help="scene YAML")
    scene.add_argument("--duration", required=True, type=float, help="seconds to simulate")
    scene.add_argument("--out", required=True, type=Path, help="output directory")
    scene.add_argument(
        "--format", dest="fmt", choices=SCENE_FORMATS, default="auto",
        help="wire format (auto: each router's own; frames: npz arrays)",
    )
    scene.add_argument("--seed", type=int, default=None, help="override the scene's seed")
    scene.add_argument("--truth-hz", type=float, default=20.0, help="ground-truth rate")
    scene.set_defaults(func=cmd_scene)

    dataset = sub.add_parser("dataset", help="write training windows as npz shards")
    dataset.add_argument("--split", required=True, choices=list(SPLITS))
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--windows", required=True, type=int)
    dataset.add_argument("--out", required=True, type=Path)
    dataset.add_argument("--shard-size", type=int, default=4096)
    dataset.add_argument("--hardware", default=None, help="only this hardware profile")
    dataset.set_defaults(func=cmd_dataset)


def _frames_npz(frames: list[CsiFrame], path: Path) -> None:
    """Frames of one router as arrays (all frames of a router share a layout)."""
    np.savez_compressed(
        path,
        csi=np.stack([f.csi for f in frames]) if frames else np.zeros((0, 1, 1, 1), np.complex64),
        subcarriers=frames[0].subcarriers if frames else np.zeros(0, np.int16),
        seq=np.asarray([f.seq for f in frames], dtype=np.int64),
        device_time_s=np.asarray([f.device_time_s for f in frames]),
        arrival_time_s=np.asarray([f.arrival_time_s for f in frames]),
        rssi_dbm=np.asarray([f.rssi_dbm for f in frames], dtype=np.float32),
        noise_dbm=np.asarray([f.noise_dbm for f in frames], dtype=np.float32),
        agc_db=np.asarray([f.agc_db for f in frames], dtype=np.float32),
    )


def run_scene(
    scene: Scene, duration_s: float, out: Path, fmt: str = "auto", truth_hz: float = 20.0
) -> dict[str, object]:
    """Simulate ``duration_s`` of a scene into ``out``: one capture per router + truth JSONL."""
    if duration_s <= 0 or truth_hz <= 0:
        raise SimulationError("--duration and --truth-hz must be positive")
    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[CsiFrame]] = {rid: [] for rid in scene.router_ids}
    t = 0.0
    while t < duration_s:
        t1 = min(duration_s, t + STEP_S)
        for rid in scene.router_ids:
            frames[rid].extend(scene.frames(rid, t, t1))
        t = t1
    files: dict[str, str] = {}
    for rid, router_frames in frames.items():
        native = scene.profile(rid).wire_format or "frames"
        wire = native if fmt == "auto" else fmt
        if wire not in ("frames", native):
            raise SimulationError(
                f"router {rid} is {scene.profile(rid).name}: it cannot be written as {wire} "
                f"(use --format auto, {native} or frames)"
            )
        if wire == "frames":
            path = out / f"{rid}.frames.npz"
            _frames_npz(router_frames, path)
        else:
            path = write_capture(router_frames, out / f"{rid}{WIRE_SUFFIX[wire]}", wire)
        files[rid] = path.name
    truth_path = out / "ground_truth.jsonl"
    n_truth = int(np.floor(duration_s * truth_hz)) + 1
    with truth_path.open("w", encoding="utf-8") as fh:
        for i in range(n_truth):
            t_s = i / truth_hz
            persons = [p.to_json() for p in scene.ground_truth(t_s)]
            fh.write(json.dumps({"t_s": round(t_s, 4), "epoch_s": scene.epoch_s + t_s,
                                 "persons": persons}) + "\n")
    summary: dict[str, object] = {
        "out": str(out),
        "duration_s": duration_s,
        "room_size_m": scene.room.size_m.tolist(),
        "routers": {
            rid: {"hardware": scene.profile(rid).name, "file": files[rid],
                  "frames": len(frames[rid])}
            for rid in scene.router_ids
        },
        "ground_truth": truth_path.name,
        "people": [p.person_id for p in scene.people],
    }
    (out / "scene.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def cmd_scene(args: argparse.Namespace) -> int:
    """Simulate a scene file."""
    config = load_scene_config(args.config)
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    start = time.monotonic()
    summary = run_scene(Scene.from_config(config), args.duration, args.out, args.fmt,
                        args.truth_hz)
    summary["wall_s"] = round(time.monotonic() - start, 3)
    print(json.dumps(summary))
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    """Write a dataset split as npz shards, with a progress bar."""
    options: dict[str, object] = {}
    if args.hardware is not None:
        options["hardware"] = args.hardware
    start = time.monotonic()
    paths = write_shards(args.split, args.seed, args.windows, args.out, args.shard_size,
                         progress=True, **options)
    elapsed = time.monotonic() - start
    print(json.dumps({
        "split": args.split, "seed": args.seed, "windows": args.windows,
        "shards": [p.name for p in paths], "out": str(args.out),
        "windows_per_s": round(args.windows / max(elapsed, 1e-9), 1),
    }))
    return 0
