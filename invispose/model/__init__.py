"""The pose model: network, loss, checkpoints, training, evaluation and benchmarks."""

from invispose.model.checkpoint import (
    DEFAULT_CHECKPOINT,
    LoadedModel,
    load_model,
    save_checkpoint,
)
from invispose.model.inputs import (
    ModelInputs,
    inputs_from_batch,
    inputs_from_hops,
    inputs_from_windows,
)
from invispose.model.network import PoseNet, PoseNetConfig, PoseOutput

__all__ = [
    "DEFAULT_CHECKPOINT",
    "LoadedModel",
    "ModelInputs",
    "PoseNet",
    "PoseNetConfig",
    "PoseOutput",
    "inputs_from_batch",
    "inputs_from_hops",
    "inputs_from_windows",
    "load_model",
    "save_checkpoint",
]
