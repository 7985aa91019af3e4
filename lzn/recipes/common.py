"""What every recipe shares: typed config sections, data info, network construction and batches.

A recipe is a typed config, a function building its model (an LZN recipe's ``build_model(cfg, info)``
returns a :class:`~lzn.models.LatentZoningNetwork`), a ``step(batch, step) -> StepOutput`` and an
``evaluate`` calling ``lzn.eval`` and the model's own task methods. ``modules`` (what the trainer
optimises) are the model's parts, held once by the model; a baseline without a model keeps its own.
Recipes use the library (models, core, data); the training loop knows nothing about them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from lzn import checks, distributed
from lzn.data import BatchLoader, DataConfig, ImageDataset, ShardedDataset, random_flip
from lzn.models import FlowConfig, LatentZoningNetwork, build
from lzn.models.registry import UnknownArgument, check_arguments, check_name, network_data_type
from lzn.recipes.config import ConfigError
from lzn.training import StepOutput, TrainConfig


@dataclass
class NetConfig:
    """A network from ``lzn.models.NETWORKS``; image shape, latent size and classes are filled in."""

    name: str = "small_encoder"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            check_name(self.name)
        except ValueError as err:
            raise ValueError(f"name: {err}") from None


@dataclass
class DataInfo:
    """The shape facts a recipe needs, stored in the run folder so a run can be rebuilt without data."""

    channels: int
    size: int
    num_classes: int
    num_train: int
    class_names: list[str] | None = None  # index = label; folder sub-folder names, .npz class_names


def default_train() -> TrainConfig:
    return TrainConfig(lr=1e-3, steps=1000, warmup_steps=100, ema_decay=0.999, checkpoint_every=500,
                       log_every=50)


@dataclass
class RecipeConfig:
    """Fields every recipe has."""

    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 256  # global batch: the anchor set of the latent flow (method.md §1.6)
    latent_dim: int = 16
    eval_batch_size: int = 2000  # anchor set size when classifying / reconstructing (method.md §8.2)
    sample_every: int = 0  # write a sample grid every N steps (0: only at the end)
    reference_size: int = 2000  # training anchors in the exported model's reference bank (0: none; method.md §2.9)
    train: TrainConfig = field(default_factory=default_train)

    def __post_init__(self) -> None:
        """Values checked for meaning; subclasses extend this (messages start with the key)."""
        checks.at_least("batch_size", self.batch_size, 1)
        checks.at_least("latent_dim", self.latent_dim, 1)
        checks.at_least("eval_batch_size", self.eval_batch_size, 1)
        checks.at_least("sample_every", self.sample_every, 0)
        checks.at_least("reference_size", self.reference_size, 0)


def check_flow(flow: FlowConfig, name: str = "flow") -> None:
    """Step counts and time offsets of a latent-flow config (method.md §2.7)."""
    checks.at_least(f"{name}.steps", flow.steps, 1)
    checks.at_least(f"{name}.label_steps", flow.label_steps, 1)
    if flow.eps is not None:
        checks.in_range(f"{name}.eps", flow.eps, 0.0, 0.5)
    checks.in_range(f"{name}.label_eps", flow.label_eps, 0.0, 0.5)


def data_info(data: ImageDataset | ShardedDataset) -> DataInfo:
    c, h, w = data.image_shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}; set data.size to resize")
    names = list(data.class_names) if data.class_names is not None else None
    return DataInfo(channels=c, size=h, num_classes=data.num_classes, num_train=len(data), class_names=names)


def build_net(net: NetConfig, info: DataInfo, latent_dim: int, num_classes: int = 0, key: str = "encoder") -> nn.Module:
    """The network of config section ``key``; unknown ``kwargs`` keys and values the network refuses
    are config errors naming ``key.kwargs...``."""
    if network_data_type(net.name) != "image":
        raise ConfigError(f"{key}.name: {net.name!r} is a {network_data_type(net.name)} network; {key} takes an image "
                          "network (small_encoder, small_unet, resnet18_encoder, ncsnpp_encoder, ...)")
    try:
        check_arguments(net.name, net.kwargs)
    except UnknownArgument as err:  # named as the config key it came from
        hint = (f"did you mean '{key}.kwargs.{err.suggestion}'?" if err.suggestion
                else f"{net.name} takes: {', '.join(err.known)}")
        raise ConfigError(f"unknown config key '{key}.kwargs.{err.argument}'; {hint}") from None
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None
    kwargs: dict[str, Any] = {"image_channels": info.channels, "image_size": info.size, "latent_dim": latent_dim}
    if num_classes:
        kwargs["num_classes"] = num_classes
    kwargs.update(net.kwargs)
    try:
        return build(net.name, **kwargs)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None


def step_generator(device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from the global RNG, which the trainer seeds per step and rank:
    augmentations are random, yet identical when a run is resumed."""
    return torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**62, ())))


def cached_anchors(encoder: nn.Module, x: Tensor, chunk: int) -> tuple[Tensor, Callable[[], None]]:
    """Gradient caching for an encoder (method.md §9.7): x (B, ...) -> anchors (B, q), a leaf that
    requires grad, computed in chunks of ``chunk`` without the encoder's graph, and ``replay()``, which
    re-runs the encoder chunk by chunk with grad and backpropagates ``anchors.grad`` into its
    parameters (nothing to do when the encoder is frozen). Each chunk's re-run sees the global random
    state of its first run, so dropout masks agree."""
    states, parts = [], []
    with torch.no_grad():
        for xc in x.split(chunk):
            states.append(_rng_state(x.device))
            parts.append(encoder(xc))  # (n_c, q)
        anchors = torch.cat(parts)  # (B, q)
    anchors.requires_grad_(True)

    def replay() -> None:
        if anchors.grad is None or not any(p.requires_grad for p in encoder.parameters()):
            return
        for xc, grad, state in zip(x.split(chunk), anchors.grad.split(chunk), states):
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else [],
                                       device_type=x.device.type):
                _set_rng_state(x.device, state)
                backward(encoder(xc), grad)

    return anchors, replay


def backward(outputs: Tensor | list[Tensor], grads: Tensor | list[Tensor | None] | None = None) -> None:
    """``torch.autograd.backward`` outside autocast, as the loop runs a plain loss's backward: a chunked
    step (method.md §9.7) is called under the loop's autocast, and custom backward functions (the zone
    mean's) expect the dtypes of their forward pass."""
    device_type = (outputs[0] if isinstance(outputs, list) else outputs).device.type
    with torch.autocast(device_type, enabled=False):
        torch.autograd.backward(outputs, grads)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def check_chunkable(modules: Mapping[str, nn.Module]) -> None:
    """Chunked steps (method.md §9.7) are exact only for networks whose output for one sample does not
    depend on the rest of its batch: refuse BatchNorm in training mode, whose batch statistics would
    be those of a chunk (and whose running statistics would be updated twice per chunk)."""
    for name, module in modules.items():
        bn = [n or name for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bn:
            raise ValueError(f"train.chunk_size: {name} has BatchNorm layers ({', '.join(bn[:3])}), which normalise "
                             "over the chunk rather than the batch, so a chunked step would not equal the unchunked "
                             "one; use GroupNorm (as lzn's networks do) or train.chunk_size=null")


def device_of(modules: Mapping[str, nn.Module]) -> torch.device:
    for m in modules.values():
        for p in m.parameters():
            return p.device
    return torch.device("cpu")


class Recipe(ABC):
    """Base class: data batches by global step (exact resume), device placement, flips."""

    name: str = ""  # the registered name (lzn.recipes.runner.RECIPES) this instance was built as
    config_cls: ClassVar[type[RecipeConfig]]
    needs_labels: ClassVar[bool] = False
    streams_eval: ClassVar[bool] = False  # whether ``evaluate`` reads sharded data batch by batch (else: in memory)
    chunkable: ClassVar[bool] = False  # whether ``step`` honours train.chunk_size (a subclass overriding step resets it)

    def __init__(self, cfg: RecipeConfig, info: DataInfo) -> None:
        self.cfg, self.info = cfg, info
        if cfg.train.chunk_size is not None and not self.chunkable:
            raise ValueError(f"train.chunk_size: recipe {self.name!r} has no chunked step (generation, joint, nogen "
                             "and representation have one); set train.chunk_size=null")
        if cfg.batch_size % distributed.world_size():
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by {distributed.world_size()} processes")
        if cfg.batch_size > info.num_train:
            raise ValueError(f"batch_size {cfg.batch_size} exceeds the {info.num_train} training images")
        if self.needs_labels and info.num_classes < 2:
            raise ValueError(f"recipe {self.name!r} needs a labelled data set with at least 2 classes")
        self.lzn: LatentZoningNetwork | None = None  # an LZN recipe's model: it holds the networks
        self._own: dict[str, nn.Module] = {}  # networks a baseline keeps outside a model
        self.train_data: ImageDataset | ShardedDataset | None = None
        self.loader: BatchLoader | None = None

    @property
    def modules(self) -> Mapping[str, nn.Module]:
        """The networks the trainer optimises, by name, each held once: an LZN recipe's model parts
        (``lzn.parts()``: encoder, decoder, label_anchors, text_encoder, ...), read-only, then the networks
        kept outside the model (a baseline's, e.g. CLIP's logit scale), in the mutable dict a baseline
        sets with ``self.modules = {...}``."""
        if self.lzn is None:
            return self._own
        return MappingProxyType({**self.lzn.parts(), **self._own})

    @modules.setter
    def modules(self, value: dict[str, nn.Module]) -> None:
        self._own = value

    @property
    def device(self) -> torch.device:
        return device_of(self.modules)

    def attach_data(self, data: ImageDataset | ShardedDataset) -> None:
        """The training split, read through a :class:`~lzn.data.BatchLoader` (``data.workers`` processes)."""
        self.train_data = data
        self.loader = BatchLoader(data, self.cfg.batch_size, seed=self.cfg.train.seed, rank=distributed.rank(),
                                  world_size=distributed.world_size(), workers=self.cfg.data.workers,
                                  pin_memory=self.device.type == "cuda", balanced=self.cfg.data.balanced)

    def batches(self, step: int) -> tuple[Tensor, Tensor | None]:
        """This process's local batch of global step ``step`` (method.md §9.6 data order)."""
        assert self.loader is not None, "attach_data() first"
        x, y = self.loader(step)
        x = x.to(self.device, non_blocking=True)
        y = None if y is None else y.to(self.device, non_blocking=True)
        if self.cfg.data.flip:
            x = random_flip(x, step_generator(x.device))
        return x, y

    def chunk(self, batch: int) -> int | None:
        """Samples per chunk when a step over a local batch of ``batch`` is chunked (method.md §9.7); None
        for the plain step (chunking off, or a chunk that holds the whole batch)."""
        size = self.cfg.train.chunk_size
        return size if size is not None and size < batch else None

    def build_references(self) -> None:
        """Reference sets the exported model keeps besides the image bank (the runner builds that one), under
        the current weights: called with the EMA weights before evaluation and export. None by default."""

    def export(self, run_dir: Path) -> None:
        """Files of a baseline that has no LZN to export (the runner writes an LZN recipe's ``model/``), under the
        current weights: called with the EMA weights after ``model/`` and before evaluation. None by default."""

    @abstractmethod
    def step(self, batch: Any, step: int) -> StepOutput:
        """The loss of one training step on this process's ``batch`` (method.md §5.7, §6.4, §7.3)."""

    def sample_grid(self, path: Path) -> Path | None:
        """A grid of samples under the current weights written to ``path`` (PNG), for the run's ``samples/``
        every ``sample_every`` steps; None for a recipe whose model has no image decoder (no samples)."""
        return None

    # task methods used by evaluation and the CLI; a recipe implements those that apply
    def evaluate(self, data: ImageDataset, run_dir: Any, split: str = "test") -> dict[str, Any]:
        """The figures of the trained model on ``data`` (split ``split``) as sections of ``lzn evaluate``'s
        schema (``lzn.eval.results``): the runner writes them to ``metrics.json`` and their flat keys
        (``test_accuracy``, or ``train_accuracy`` for a data set without a held-out split) to ``results.json``."""
        return {}
