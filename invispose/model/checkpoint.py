"""Checkpoint files: weights, hyperparameters, baseline statistics and (optionally) training state.

A checkpoint is a ``torch.save``d mapping read back with ``weights_only=True`` (no code runs
on load)::

    format            "invispose-posenet"
    format_version    FORMAT_VERSION
    hyperparameters   PoseNetConfig as a mapping
    model             state_dict
    mean_pose         MeanPoseStats.to_dict() (the evaluation baseline), or None
    train             {"step", "optimizer", "rng", "config"} to resume training, or None
    metadata          free-form facts (torch version, validation numbers, ...)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from invispose.errors import ModelError
from invispose.model.metrics import MeanPoseStats
from invispose.model.network import PoseNet, PoseNetConfig

logger = logging.getLogger(__name__)

#: the shipped small model; `invispose eval` and the inference deployment default to it
DEFAULT_CHECKPOINT = Path("models/invispose-space.pt")
FORMAT_NAME = "invispose-posenet"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "hyperparameters", "model")


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with what came along with it."""

    model: PoseNet
    path: Path
    mean_pose: MeanPoseStats | None
    metadata: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: PoseNet,
    *,
    mean_pose: MeanPoseStats | None = None,
    train_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename); returns the path."""
    target = Path(path)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hyperparameters": model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "mean_pose": None if mean_pose is None else mean_pose.to_dict(),
        "train": train_state,
        "metadata": {"torch": str(torch.__version__), **(metadata or {})},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(f"cannot write checkpoint {target}: {exc.strerror or exc}") from exc
    logger.info("saved checkpoint %s", target)
    return target


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint mapping, checked for format and version."""
    source = Path(path)
    if not source.is_file():
        raise ModelError(
            f"no checkpoint at {source}; train one with "
            "`invispose train --config configs/train.yaml` or pass --checkpoint PATH"
        )
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file; all mean "corrupt"
        raise ModelError(
            f"cannot read checkpoint {source} (corrupt or not a checkpoint): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelError(f"{source} is not an InvisPose pose-model checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ModelError(f"checkpoint {source} lacks {', '.join(missing)}")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise ModelError(
            f"checkpoint {source} has format version {version}; this InvisPose reads "
            f"version {FORMAT_VERSION}"
        )
    return payload


def load_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild PoseNet from a checkpoint, in eval mode on ``device``."""
    source = Path(path)
    payload = read_checkpoint(source)
    hyper = payload["hyperparameters"]
    if not isinstance(hyper, dict):
        raise ModelError(f"checkpoint {source}: hyperparameters are not a mapping")
    try:
        model = PoseNet(PoseNetConfig.from_dict(hyper))
        state = dict(payload["model"])
        state.setdefault("presence_offset", torch.zeros(()))  # written before calibration
        state.setdefault("fall_offset", torch.zeros(()))  # written before falls were calibrated
        model.load_state_dict(state, strict=True)
    except ModelError as exc:
        raise ModelError(f"checkpoint {source}: {exc}") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"checkpoint {source} does not fit PoseNet: {exc}") from exc
    mean_pose = payload.get("mean_pose")
    metadata = payload.get("metadata")
    return LoadedModel(
        model=model.to(device).eval(),
        path=source,
        mean_pose=MeanPoseStats.from_dict(mean_pose) if isinstance(mean_pose, dict) else None,
        metadata=metadata if isinstance(metadata, dict) else {},
        train_state=payload.get("train"),
    )


def export_checkpoint(
    source: str | os.PathLike[str], target: str | os.PathLike[str],
    calibrate: Callable[[LoadedModel], dict[str, object]] | None = None,
) -> Path:
    """Write ``source``'s weights, hyperparameters, baseline statistics and metadata to
    ``target`` without the training state (optimiser, RNG): the file to ship.

    ``calibrate`` may adjust the loaded model first (e.g. its presence threshold); what it
    returns is added to the metadata."""
    loaded = load_model(source)
    metadata = dict(loaded.metadata)
    if calibrate is not None:
        metadata.update(calibrate(loaded))
    if loaded.train_state is not None and "step" in loaded.train_state:
        metadata.setdefault("step", loaded.train_state["step"])
    return save_checkpoint(target, loaded.model, mean_pose=loaded.mean_pose, metadata=metadata)
