"""The `invispose train`, `eval` and `export` subcommands (argparse)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from invispose.errors import InvisPoseError
from invispose.model.checkpoint import DEFAULT_CHECKPOINT, LoadedModel, export_checkpoint
from invispose.model.evaluate import (
    EVAL_SPLITS,
    calibrate_falls,
    calibrate_presence,
    evaluate_checkpoint,
    simulator_generate,
)
from invispose.model.train import load_train_config, train
from invispose.output import print_json
from invispose.threads import limit_threads

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_CONFIG = Path("configs/train.yaml")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `train`, `eval` and `export`; each sets ``func(args) -> exit code``."""
    p_train = subparsers.add_parser(
        "train",
        help="train the pose model on simulated CSI",
        description="Train PoseNet on simulator windows; checkpoints can be resumed.",
    )
    p_train.add_argument("--config", type=Path, default=DEFAULT_TRAIN_CONFIG, help="train.yaml")
    p_train.add_argument("--resume", type=Path, help="checkpoint to continue from")
    p_train.add_argument("--steps", type=int, help="override the number of steps")
    p_train.add_argument("--checkpoint", type=Path, help="override where weights are written")
    p_train.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the device")
    p_train.set_defaults(func=run_train)

    p_eval = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on a simulator split",
        description="MPJPE, PA-MPJPE, PCK-3D, OKS AP, counts and falls, next to a mean-pose "
        "baseline.",
    )
    p_eval.add_argument(
        "--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
        help="weights, or 'classical' for the classical localiser alone",
    )
    p_eval.add_argument("--split", choices=EVAL_SPLITS, default="same-layout")
    p_eval.add_argument("--seed", type=int, default=0, help="simulator seed of the test set")
    p_eval.add_argument("--windows", type=int, default=1000, help="windows to evaluate")
    p_eval.add_argument(
        "--persons", type=int, help="score only the windows with exactly this many people"
    )
    p_eval.add_argument(
        "--routers", type=int, help="simulate spaces with exactly this many routers (1-4)"
    )
    p_eval.add_argument(
        "--hardware", help="every router of this simulator profile (e.g. intel5300)"
    )
    p_eval.add_argument(
        "--calibrated", type=float, default=None, metavar="RAD",
        help="routers carry measured chain phases with this error (invispose calibrate "
        "leaves ~0.15 rad); default: none calibrated, phases estimated from the static",
    )
    p_eval.add_argument("--batch-size", type=int, default=64, help="windows per forward pass")
    p_eval.add_argument("--device", default="cpu", help="cpu or cuda")
    p_eval.add_argument(
        "--threads", type=int, default=0,
        help="compute threads (torch and numpy's BLAS); default: the libraries' own choice",
    )
    p_eval.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p_eval.set_defaults(func=run_eval)

    p_export = subparsers.add_parser(
        "export",
        help="write a checkpoint without its training state, for shipping",
        description="Keep weights, hyperparameters, baseline statistics and metadata; drop "
        "the optimiser and RNG state that only resuming needs.",
    )
    p_export.add_argument("checkpoint", type=Path, help="training checkpoint (e.g. best.pt)")
    p_export.add_argument("--out", type=Path, default=DEFAULT_CHECKPOINT, help="file to write")
    p_export.add_argument(
        "--calibrate-presence", type=int, default=0, metavar="N",
        help="choose the presence threshold on N val windows (seed 1) for the best count, "
        "then the fall threshold of the best recall at fall precision >= 0.5",
    )
    p_export.set_defaults(func=run_export)


def run_train(args: argparse.Namespace) -> int:
    """`invispose train`."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("invispose.model").setLevel(logging.INFO)  # validation lines
    try:
        cfg = load_train_config(
            args.config, steps=args.steps, checkpoint=args.checkpoint, device=args.device
        )
        result = train(cfg, resume=args.resume)
    except InvisPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {result.step} steps; weights in {result.checkpoint}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """`invispose eval`."""
    if args.windows < 1:
        print("error: --windows must be at least 1", file=sys.stderr)
        return 2
    if args.threads < 0:
        print("error: --threads must be at least 0", file=sys.stderr)
        return 2
    if args.threads:
        limit_threads(args.threads)
    try:
        evaluation = evaluate_checkpoint(
            args.checkpoint, args.split, args.seed, args.windows, args.device, args.batch_size,
            args.persons, args.routers, args.hardware, args.calibrated,
        )
    except InvisPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json(evaluation.to_json(), indent=2)
    else:
        print(f"checkpoint {args.checkpoint}")
        print(evaluation.table())
    return 0


def training_data_config(path: Path) -> dict[str, object]:
    """The ``data`` section a training checkpoint was trained with ({} if it has none)."""
    import torch

    raw = torch.load(path, map_location="cpu", weights_only=False)
    data = ((raw.get("train") or {}).get("config") or {}).get("data") or {}
    return dict(data)


def run_export(args: argparse.Namespace) -> int:
    """`invispose export`."""
    calibrate = None
    if args.calibrate_presence > 0:

        calibrated_rad = training_data_config(args.checkpoint).get("calibrated_rad")

        def calibrate(loaded: LoadedModel) -> dict[str, object]:
            # validation windows as the model was trained on them (calibrated routers or not)
            space = loaded.model.cfg.space_inputs
            val = simulator_generate()("val", 1, args.calibrate_presence, floor_maps=space,
                                       calibrated_rad=calibrated_rad)
            return {"presence_threshold": calibrate_presence(loaded.model, val),
                    "fall_threshold": calibrate_falls(loaded.model, val),
                    "presence_calibration_windows": args.calibrate_presence,
                    "trained_calibrated_rad": calibrated_rad}

    try:
        path = export_checkpoint(args.checkpoint, args.out, calibrate)
    except InvisPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
