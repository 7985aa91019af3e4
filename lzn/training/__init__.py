"""One generic training loop (method.md §9): optimizer, warm-up, clipping, EMA, AMP, non-finite skips,
staged freezing, checkpoint/resume and logging. It knows nothing about LZN."""

from lzn.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from lzn.training.config import StepFn, StepOutput, TrainConfig
from lzn.training.ema import EMA
from lzn.training.logging import MetricsWindow, MetricsWriter, ProgressBar
from lzn.training.loop import Hook, Trainer
from lzn.training.schedules import decay_factor, ema_decay, step_seed, warmup_factor

__all__ = [
    "EMA",
    "CheckpointError",
    "Hook",
    "MetricsWindow",
    "MetricsWriter",
    "ProgressBar",
    "StepFn",
    "StepOutput",
    "TrainConfig",
    "Trainer",
    "checkpoint_path",
    "decay_factor",
    "ema_decay",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "step_seed",
    "warmup_factor",
]
