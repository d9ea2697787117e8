"""The training loop: data, model, loss and optimizer from the config, on any device,
with AMP, DDP, checkpoints, resume and early stopping.

A run directory (Hydra's) ends up holding the resolved config (``.hydra/``),
``checkpoints/last.pt`` (after every epoch), ``checkpoints/best.pt`` (on improvement),
``metrics.csv``, TensorBoard events (``tensorboard/``) and ``loss.png``.

Reproducibility: every random draw is derived from ``trainer.seed`` and the position in
training, never from state that accumulates: the segments of an epoch come from
``(seed, epoch, index)`` and dropout in a step from ``(seed, epoch, step, rank)``. So a
run resumed at an epoch boundary continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_distributed
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Sampler

from sepkit.checkpoint import load_checkpoint, save_checkpoint
from sepkit.errors import SepkitError
from sepkit.files import atomic_path, write_text_atomic
from sepkit.models.base import SeparationModel

log = logging.getLogger("sepkit.train")


# -- devices and processes ---------------------------------------------------------------


def select_device(name: str, local_rank: int = 0, setting: str = "trainer.device") -> torch.device:
    """``auto`` picks CUDA (this process's local GPU), then MPS, then the CPU.

    ``setting`` is the config key named in error messages.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SepkitError(
            f"{setting}={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SepkitError(f"{setting}={name}: CUDA is not available here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SepkitError(f"{setting}={name}: MPS is not available here; use auto or cpu")
    return device


@dataclass
class Distributed:
    """This process's place in a torchrun job (one process alone: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.enabled and not torch_distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch_distributed.init_process_group(backend=backend)

    def stop(self) -> None:
        if self.enabled and torch_distributed.is_initialized():
            torch_distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            torch_distributed.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_distributed.all_reduce(tensor)
        return tensor.tolist()


def derived_seed(*numbers: int) -> int:
    """A 32-bit seed that depends on every number given, for per-step random state."""
    return int(np.random.SeedSequence([abs(int(n)) for n in numbers]).generate_state(1)[0])


# -- sampling --------------------------------------------------------------------------


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys for one process's share of an epoch.

    The order is a permutation seeded by ``(seed, epoch)``, identical in every process,
    which then takes every ``world_size``-th key from its rank on. With
    ``steps_per_epoch`` the permutations repeat (each with its own seed) until there are
    ``steps_per_epoch * batch_size`` keys per process.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        seed: int,
        steps_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if size == 0:
            raise SepkitError("the training set is empty: check dataset.root and its train split")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.steps_per_epoch:
            return self.steps_per_epoch * self.batch_size
        return self.size // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        needed = len(self) * self.world_size
        order: list[np.ndarray] = []
        repeat = 0
        while sum(len(part) for part in order) < needed:
            rng = np.random.default_rng([self.seed, self.epoch, repeat])
            order.append(rng.permutation(self.size))
            repeat += 1
        keys = np.concatenate(order)[:needed][self.rank :: self.world_size]
        for index in keys:
            yield (self.epoch, int(index))


# -- state -----------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What resume needs besides the weights and the optimizer."""

    epoch: int = 0  # epochs completed
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


METRIC_COLUMNS = (
    "epoch",
    "train_loss",
    "valid_loss",
    "best_valid_loss",
    "learning_rate",
    "seconds",
    "segments_per_second",
)


def write_metrics(run_dir: Path, history: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def plot_losses(run_dir: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(epochs, [row["train_loss"] for row in history], label="training")
    axes.plot(epochs, [row["valid_loss"] for row in history], label="validation")
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log" if all(row["train_loss"] > 0 for row in history) else "linear")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(run_dir / "loss.png") as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)


# -- statistics ------------------------------------------------------------------------


def prepare_statistics(
    model: SeparationModel, data: Any, max_tracks: int | None, distributed: Distributed
) -> dict[str, torch.Tensor] | None:
    """The model's input statistics over the training tracks, from a cache when the same
    tracks and settings were measured before (rank 0 computes, the others wait)."""
    from sepkit.data.base import read_track
    from sepkit.data.cache import cache_root

    key = model.statistics_key()
    if key is None:
        return None
    tracks = data.train_tracks()[:max_tracks] if max_tracks else data.train_tracks()
    description = {
        "model": key,
        "tracks": [[str(track.mixture or track.sources), track.num_frames] for track in tracks],
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "statistics" / f"{digest}.pt"
    if distributed.is_main and not path.is_file():
        log.info("computing input statistics over %d training tracks", len(tracks))
        mixtures = (read_track(track, nb_channels=model.nb_channels)[0] for track in tracks)
        statistics = model.compute_statistics(mixtures)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(statistics, temporary)
    distributed.barrier()
    return torch.load(path, map_location="cpu", weights_only=True)


# -- the loop --------------------------------------------------------------------------


def check_compatible(model: SeparationModel, data: Any, loss: Any) -> None:
    if list(model.targets) != list(data.targets):
        raise SepkitError(
            f"model.targets={list(model.targets)} but dataset.targets={list(data.targets)}: "
            "leave model.targets at ${dataset.targets} or set both alike"
        )
    if model.sample_rate != data.sample_rate:
        raise SepkitError(
            f"model.sample_rate={model.sample_rate} but dataset.sample_rate="
            f"{data.sample_rate}: set both alike"
        )
    if model.nb_channels != data.nb_channels:
        raise SepkitError(
            f"model.nb_channels={model.nb_channels} but dataset.nb_channels="
            f"{data.nb_channels}: set both alike"
        )
    missing = [name for name in loss.reads if name not in model.outputs]
    if missing:
        raise SepkitError(
            f"loss {type(loss).__name__} reads {missing} but model {model.name} outputs "
            f"{list(model.outputs)}: choose a loss that reads what the model outputs"
        )


def _unwrap(model: torch.nn.Module) -> SeparationModel:
    return model.module if hasattr(model, "module") else model


class NonFiniteLoss(SepkitError):
    pass


def run_training(cfg: DictConfig, run_dir: Path) -> Path:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the best checkpoint."""
    trainer = cfg.trainer
    distributed = Distributed.from_environment()
    device = select_device(trainer.device, distributed.local_rank)
    distributed.start(device)
    try:
        return _train(cfg, run_dir, trainer, distributed, device)
    finally:
        distributed.stop()


def _train(
    cfg: DictConfig,
    run_dir: Path,
    trainer: DictConfig,
    distributed: Distributed,
    device: torch.device,
) -> Path:
    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    checkpoints = run_dir / "checkpoints"
    last_path, best_path = checkpoints / "last.pt", checkpoints / "best.pt"

    data = instantiate(cfg.dataset, _convert_="all")
    torch.manual_seed(trainer.seed)  # the same initial weights for the same seed
    model: SeparationModel = instantiate(cfg.model, _convert_="all")
    loss_function = instantiate(cfg.loss, _convert_="all")
    check_compatible(model, data, loss_function)

    state = TrainingState()
    resumed: dict[str, Any] | None = None
    statistics: dict[str, torch.Tensor] | None = None
    if cfg.resume:
        if not last_path.is_file():
            raise SepkitError(f"resume={cfg.resume}: no checkpoints/last.pt in it to resume from")
        resumed = load_checkpoint(last_path)
        model.load_state_dict(resumed["model"]["state_dict"])
        state = TrainingState(**resumed["train_state"]["state"])
        statistics = resumed.get("statistics")
    else:
        if last_path.exists() or best_path.exists():
            raise SepkitError(
                f"{run_dir} already holds checkpoints: pass resume={run_dir} to continue it, "
                "or choose another hydra.run.dir"
            )
        statistics = prepare_statistics(model, data, trainer.statistics_tracks, distributed)
        if statistics is not None:
            model.load_statistics(statistics)

    model.to(device)
    # optimizer and scheduler configs are partial: they get the parameters here
    optimizer = instantiate(cfg.optimizer, _convert_="all")(model.parameters())
    scheduler = instantiate(cfg.scheduler, _convert_="all")(optimizer) if cfg.scheduler else None
    use_amp = bool(trainer.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and device.type == "cuda")
    if resumed is not None:
        optimizer.load_state_dict(resumed["train_state"]["optimizer"])
        if scheduler is not None and resumed["train_state"].get("scheduler"):
            scheduler.load_state_dict(resumed["train_state"]["scheduler"])
        if resumed["train_state"].get("scaler"):
            scaler.load_state_dict(resumed["train_state"]["scaler"])
        log.info("resuming %s after epoch %d", run_dir, state.epoch)

    network: torch.nn.Module = model
    if distributed.enabled:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    training_set = data.training_set()
    sampler = EpochSampler(
        len(training_set),
        trainer.batch_size,
        trainer.seed,
        trainer.steps_per_epoch,
        distributed.rank,
        distributed.world_size,
    )
    training_loader = DataLoader(
        training_set,
        batch_size=trainer.batch_size,
        sampler=sampler,
        num_workers=trainer.num_workers,
        persistent_workers=trainer.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    validation_set = data.validation_set()
    validation_loader = DataLoader(
        torch.utils.data.Subset(
            validation_set, range(distributed.rank, len(validation_set), distributed.world_size)
        ),
        batch_size=1,
        num_workers=trainer.num_workers,
    )

    writer = None
    if distributed.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=state.epoch + 1)

    def amp_context() -> torch.autocast:
        # float16 with a gradient scaler on CUDA; bfloat16 (no scaler needed) elsewhere
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype, enabled=use_amp)

    def train_config() -> dict[str, Any]:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]

    def save(path: Path) -> None:
        save_checkpoint(
            path,
            {
                "model": {"config": model.config, "state_dict": model.state_dict()},
                "statistics": statistics,
                "train_state": {
                    "state": asdict(state),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                },
                "config": train_config(),
            },
        )

    while state.epoch < trainer.epochs:
        epoch = state.epoch + 1
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_loss, segments = _train_epoch(
            network,
            model,
            training_loader,
            loss_function,
            optimizer,
            scaler,
            amp_context,
            trainer,
            epoch,
            distributed,
            device,
        )
        valid_loss = _validate(
            network, model, validation_loader, loss_function, amp_context, distributed, device
        )
        seconds = time.perf_counter() - started
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(valid_loss)
            else:
                scheduler.step()

        improved = valid_loss < state.best_valid_loss
        if improved:
            state.best_valid_loss, state.best_epoch = valid_loss, epoch
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        state.epoch = epoch
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                "best_valid_loss": state.best_valid_loss,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "seconds": round(seconds, 3),
                "segments_per_second": round(segments * distributed.world_size / seconds, 2),
            }
        )

        if distributed.is_main:
            save(last_path)
            if improved:
                save(best_path)
            write_metrics(run_dir, state.history)
            plot_losses(run_dir, state.history)
            assert writer is not None
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/valid", valid_loss, epoch)
            writer.add_scalar("learning_rate", optimizer.param_groups[0]["lr"], epoch)
            writer.flush()
            log.info(
                "epoch %d/%d  train %.5f  valid %.5f%s  lr %.2e  %.1f s",
                epoch,
                trainer.epochs,
                train_loss,
                valid_loss,
                "  (best)" if improved else "",
                optimizer.param_groups[0]["lr"],
                seconds,
            )
        distributed.barrier()

        if trainer.patience is not None and state.epochs_without_improvement >= trainer.patience:
            log.info(
                "stopping early: no better validation loss for %d epochs (best %.5f at epoch %d)",
                trainer.patience,
                state.best_valid_loss,
                state.best_epoch,
            )
            break

    if writer is not None:
        writer.close()
    if distributed.is_main:
        log.info(
            "best validation loss %.5f at epoch %d: %s",
            state.best_valid_loss,
            state.best_epoch,
            best_path,
        )
    return best_path


def _train_epoch(
    network: torch.nn.Module,
    model: SeparationModel,
    loader: DataLoader,
    loss_function: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    amp_context: Any,
    trainer: DictConfig,
    epoch: int,
    distributed: Distributed,
    device: torch.device,
) -> tuple[float, int]:
    """One pass over the epoch's segments; returns (mean loss over all processes, segments
    seen by this process)."""
    from tqdm import tqdm

    network.train()
    total, count, segments, nonfinite_in_a_row = 0.0, 0, 0, 0
    started = time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not (trainer.progress and distributed.is_main),
        unit="batch",
    )
    for step, (mixture, sources) in enumerate(bar):
        torch.manual_seed(derived_seed(trainer.seed, epoch, step, distributed.rank))
        mixture = mixture.to(device, non_blocking=True)
        sources = sources.to(device, non_blocking=True)
        with amp_context():
            outputs = network(mixture)
        references = model.references(sources, mixture)
        loss = loss_function(outputs, references)
        value = float(loss.detach())
        if not math.isfinite(value):
            nonfinite_in_a_row += 1
            log.warning("epoch %d step %d: loss is %s; step skipped", epoch, step, value)
            optimizer.zero_grad(set_to_none=True)
            if nonfinite_in_a_row >= 10:
                raise NonFiniteLoss(
                    f"the loss was not finite for {nonfinite_in_a_row} steps in a row: lower "
                    "optimizer.lr, set trainer.grad_clip, or check the data for NaN"
                )
            continue
        nonfinite_in_a_row = 0
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if trainer.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), trainer.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total += value * mixture.shape[0]
        count += mixture.shape[0]
        segments += mixture.shape[0]
        bar.set_postfix(
            loss=f"{total / count:.4f}",
            seg_s=f"{segments / (time.perf_counter() - started):.1f}",
        )
    total, count = distributed.sum([total, count], device)
    return (total / count if count else math.nan), segments


@torch.no_grad()
def _validate(
    network: torch.nn.Module,
    model: SeparationModel,
    loader: DataLoader,
    loss_function: Any,
    amp_context: Any,
    distributed: Distributed,
    device: torch.device,
) -> float:
    """Mean loss over the validation items of all processes."""
    network.eval()
    total, count = 0.0, 0
    for mixture, sources in loader:
        mixture, sources = mixture.to(device), sources.to(device)
        with amp_context():
            outputs = model(mixture)
        loss = loss_function(outputs, model.references(sources, mixture))
        total += float(loss) * mixture.shape[0]
        count += mixture.shape[0]
    total, count = distributed.sum([total, count], device)
    if count == 0:
        raise SepkitError("the validation set is empty: check the dataset's valid split")
    return total / count
