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
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import signal
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

from sepkit.checkpoint import load_checkpoint, load_weights, save_checkpoint
from sepkit.devices import autocast, autocast_dtype, select_device
from sepkit.errors import Interrupted, SepkitError
from sepkit.files import atomic_path, write_text_atomic
from sepkit.models.base import SeparationModel

log = logging.getLogger("sepkit.train")


# -- devices and processes ---------------------------------------------------------------


@dataclass
class Distributed:
    """This process's place in a torchrun job (one process alone: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """From torchrun's variables; in a SLURM job started by hydra-submitit-launcher,
        submitit's own helper first exports them from SLURM's."""
        if "RANK" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            from submitit.helpers import TorchDistributedEnvironment

            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
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
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Sample ``epoch``, leaving out its first ``skip_batches`` batches (done before an
        interruption)."""
        self.epoch = epoch
        self.skip = skip_batches * self.batch_size

    def keys_per_epoch(self) -> int:
        if self.steps_per_epoch:
            return self.steps_per_epoch * self.batch_size
        return self.size // self.world_size

    def __len__(self) -> int:
        return max(0, self.keys_per_epoch() - self.skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        needed = self.keys_per_epoch() * self.world_size
        order: list[np.ndarray] = []
        repeat = 0
        while sum(len(part) for part in order) < needed:
            rng = np.random.default_rng([self.seed, self.epoch, repeat])
            order.append(rng.permutation(self.size))
            repeat += 1
        keys = np.concatenate(order)[:needed][self.rank :: self.world_size]
        for index in keys[self.skip :]:
            yield (self.epoch, int(index))


# -- state -----------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What resume needs besides the weights and the optimizer.

    ``step`` and the ``partial_*`` fields describe an epoch interrupted part-way (by
    SIGINT or SIGTERM): how many of its batches are done and their running sums.
    """

    epoch: int = 0  # epochs completed
    best_valid_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    step: int = 0
    partial_loss: float = 0.0
    partial_count: int = 0
    partial_seconds: float = 0.0


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


class NonFiniteLoss(SepkitError):
    """The loss stayed NaN or infinite for too many steps in a row."""


class StopSignals:
    """Turns SIGINT and SIGTERM (what schedulers send before preemption) into a flag the
    loop checks between steps, so it can save where it is and stop cleanly."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = number

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def run_training(cfg: DictConfig, run_dir: Path) -> Path:
    """Train as ``cfg`` says, writing into ``run_dir``; returns the best checkpoint."""
    distributed = Distributed.from_environment()
    device = select_device(cfg.trainer.device, distributed.local_rank)
    distributed.start(device)
    try:
        with StopSignals() as signals:
            return Trainer(cfg, run_dir, distributed, device, signals).run()
    finally:
        distributed.stop()


class Trainer:
    """One training run: builds everything from the config, then loops over epochs."""

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        distributed: Distributed,
        device: torch.device,
        signals: StopSignals,
    ) -> None:
        self.cfg, self.trainer = cfg, cfg.trainer
        self.run_dir, self.distributed, self.device, self.signals = (
            run_dir,
            distributed,
            device,
            signals,
        )
        if self.trainer.threads:
            torch.set_num_threads(self.trainer.threads)
        self.last_path = run_dir / "checkpoints" / "last.pt"
        self.best_path = run_dir / "checkpoints" / "best.pt"

        self.data = instantiate(cfg.dataset, _convert_="all")
        torch.manual_seed(self.trainer.seed)  # the same initial weights for the same seed
        self.model: SeparationModel = instantiate(cfg.model, _convert_="all")
        self.loss_function = instantiate(cfg.loss, _convert_="all")
        check_compatible(self.model, self.data, self.loss_function)

        self.state = TrainingState()
        self.statistics: dict[str, torch.Tensor] | None = None
        resumed = self._resumed_checkpoint()
        if resumed is not None:
            load_weights(
                self.model,
                resumed["model"].get("state_dict"),
                str(self.last_path),
                fix="resume with the model settings the run was trained with "
                "(drop the model overrides) or start a new run",
            )
            self.state = TrainingState(**resumed["train_state"]["state"])
            self.statistics = resumed.get("statistics")
        else:
            self.statistics = prepare_statistics(
                self.model, self.data, self.trainer.statistics_tracks, distributed
            )
            if self.statistics is not None:
                self.model.load_statistics(self.statistics)

        self.model.to(device)
        # optimizer and scheduler configs are partial: they get the parameters here
        self.optimizer = instantiate(cfg.optimizer, _convert_="all")(self.model.parameters())
        self.scheduler = (
            instantiate(cfg.scheduler, _convert_="all")(self.optimizer) if cfg.scheduler else None
        )
        # half precision's narrow range needs the loss scaled; bfloat16's does not
        self.scaler = torch.amp.GradScaler(
            device.type,
            enabled=bool(self.trainer.amp) and autocast_dtype(device) == torch.float16,
        )
        if resumed is not None:
            saved = resumed["train_state"]
            self.optimizer.load_state_dict(saved["optimizer"])
            if self.scheduler is not None and saved.get("scheduler"):
                self.scheduler.load_state_dict(saved["scheduler"])
            if saved.get("scaler"):
                self.scaler.load_state_dict(saved["scaler"])
            log.info(
                "resuming %s after epoch %d%s",
                run_dir,
                self.state.epoch,
                f", step {self.state.step} of epoch {self.state.epoch + 1}"
                if self.state.step
                else "",
            )

        self.network: torch.nn.Module = self.model
        if distributed.enabled:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self._build_loaders()
        self.batch_augmentation = getattr(self.data, "batch_augmentation", None)

    def _resumed_checkpoint(self) -> dict[str, Any] | None:
        if self.cfg.resume:
            if self.distributed.is_main:
                # a kill during a save leaves its temporary file; the real one is intact
                for stale in self.last_path.parent.glob(".*.partial-*"):
                    stale.unlink(missing_ok=True)
            if self.last_path.is_file():
                checkpoint = load_checkpoint(self.last_path)
                saved = checkpoint.get("train_state")
                if not (
                    isinstance(checkpoint["model"], dict)
                    and isinstance(saved, dict)
                    and isinstance(saved.get("state"), dict)
                    and set(saved["state"]) <= {f.name for f in dataclasses.fields(TrainingState)}
                    and "optimizer" in saved
                ):
                    raise SepkitError(
                        f"{self.last_path}: holds no training state sepkit can resume from "
                        "(written by another tool or version?); start a new run"
                    )
                return checkpoint
            # stopped before its first checkpoint: start again from the beginning
            log.info("resume=%s: no checkpoint yet, starting from the beginning", self.cfg.resume)
            return None
        if self.last_path.exists() or self.best_path.exists():
            raise SepkitError(
                f"{self.run_dir} already holds checkpoints: pass resume={self.run_dir} to "
                "continue it, or choose another hydra.run.dir"
            )
        return None

    def _build_loaders(self) -> None:
        trainer, distributed = self.trainer, self.distributed
        training_set = self.data.training_set()
        self.sampler = EpochSampler(
            len(training_set),
            trainer.batch_size,
            trainer.seed,
            trainer.steps_per_epoch,
            distributed.rank,
            distributed.world_size,
        )
        self.training_loader = DataLoader(
            training_set,
            batch_size=trainer.batch_size,
            sampler=self.sampler,
            num_workers=trainer.num_workers,
            persistent_workers=trainer.num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        validation_set = self.data.validation_set()
        shard = range(distributed.rank, len(validation_set), distributed.world_size)
        self.validation_loader = DataLoader(
            torch.utils.data.Subset(validation_set, shard),
            batch_size=1,
            num_workers=trainer.num_workers,
        )

    def amp_context(self) -> torch.autocast:
        return autocast(self.device, bool(self.trainer.amp))

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            {
                "model": {"config": self.model.config, "state_dict": self.model.state_dict()},
                "statistics": self.statistics,
                "train_state": {
                    "state": asdict(self.state),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                    "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                },
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            },
        )

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Path:
        trainer, state, distributed = self.trainer, self.state, self.distributed
        self.writer = None
        if distributed.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(self.run_dir / "tensorboard"), purge_step=state.epoch + 1
            )
        try:
            while state.epoch < trainer.epochs:
                if not self._epoch():
                    break
        finally:
            if self.writer is not None:
                self.writer.close()
        if distributed.is_main:
            log.info(
                "best validation loss %.5f at epoch %d: %s",
                state.best_valid_loss,
                state.best_epoch,
                self.best_path,
            )
        return self.best_path

    def _epoch(self) -> bool:
        """Train and validate one epoch; False when early stopping ends the run."""
        trainer, state, distributed = self.trainer, self.state, self.distributed
        epoch = state.epoch + 1
        started = time.perf_counter() - state.partial_seconds
        self.sampler.set_epoch(epoch, skip_batches=state.step)
        self._train_steps(epoch, started)
        train_total, train_count = distributed.sum(
            [state.partial_loss, float(state.partial_count)], self.device
        )
        train_loss = train_total / train_count if train_count else math.nan
        valid_loss = self._validate()
        seconds = time.perf_counter() - started
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(valid_loss)
            else:
                self.scheduler.step()

        improved = valid_loss < state.best_valid_loss
        if improved:
            state.best_valid_loss, state.best_epoch = valid_loss, epoch
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1
        learning_rate = self.optimizer.param_groups[0]["lr"]
        state.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "valid_loss": valid_loss,
                "best_valid_loss": state.best_valid_loss,
                "learning_rate": learning_rate,
                "seconds": round(seconds, 3),
                "segments_per_second": round(train_count / seconds, 2),
            }
        )
        state.epoch, state.step = epoch, 0
        state.partial_loss, state.partial_count, state.partial_seconds = 0.0, 0, 0.0

        if distributed.is_main:
            # best before last: a kill between the two leaves last.pt one epoch behind, and
            # the resumed run redoes (and re-saves) that epoch
            if improved:
                self.save(self.best_path)
            self.save(self.last_path)
            write_metrics(self.run_dir, state.history)
            plot_losses(self.run_dir, state.history)
            assert self.writer is not None
            self.writer.add_scalar("loss/train", train_loss, epoch)
            self.writer.add_scalar("loss/valid", valid_loss, epoch)
            self.writer.add_scalar("learning_rate", learning_rate, epoch)
            self.writer.flush()
            log.info(
                "epoch %d/%d  train %.5f  valid %.5f%s  lr %.2e  %.1f s",
                epoch,
                trainer.epochs,
                train_loss,
                valid_loss,
                "  (best)" if improved else "",
                learning_rate,
                seconds,
            )
        distributed.barrier()

        if trainer.patience is not None and state.epochs_without_improvement >= trainer.patience:
            if distributed.is_main:
                log.info(
                    "stopping early: no better validation loss for %d epochs "
                    "(best %.5f at epoch %d)",
                    trainer.patience,
                    state.best_valid_loss,
                    state.best_epoch,
                )
            return False
        return True

    def _stop_requested(self) -> int | None:
        """The signal that asks to stop, agreed by every process (they must stop at the
        same step, or the next collective operation would wait forever)."""
        received = self.signals.received
        if not self.distributed.enabled:
            return received
        flag = torch.tensor([received or 0], dtype=torch.int64, device=self.device)
        torch_distributed.all_reduce(flag, op=torch_distributed.ReduceOp.MAX)
        return int(flag.item()) or None

    def _train_steps(self, epoch: int, started: float) -> None:
        """The epoch's remaining batches; running sums go into the state, so that an
        interruption saves them with the position."""
        from tqdm import tqdm

        trainer, state, distributed, device = (
            self.trainer,
            self.state,
            self.distributed,
            self.device,
        )
        self.network.train()
        nonfinite_in_a_row = 0
        bar = tqdm(
            self.training_loader,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not (trainer.progress and distributed.is_main),
            unit="batch",
        )
        for step, (mixture, sources) in enumerate(bar, start=state.step):
            torch.manual_seed(derived_seed(trainer.seed, epoch, step, distributed.rank))
            mixture = mixture.to(device, non_blocking=True)
            sources = sources.to(device, non_blocking=True)
            if self.batch_augmentation is not None:
                mixture, sources = self.batch_augmentation(mixture, sources)
            value = self._step(mixture, sources)
            if value is None:
                nonfinite_in_a_row += 1
                log.warning("epoch %d step %d: loss or gradient not finite; skipped", epoch, step)
                if nonfinite_in_a_row >= trainer.max_nonfinite_steps:
                    raise NonFiniteLoss(
                        f"the loss was not finite for {nonfinite_in_a_row} steps in a row: "
                        "lower optimizer.lr, set trainer.grad_clip, or check the data for NaN"
                    )
            else:
                nonfinite_in_a_row = 0
                state.partial_loss += value * mixture.shape[0]
                state.partial_count += mixture.shape[0]
            state.step = step + 1
            if state.partial_count:
                bar.set_postfix(
                    loss=f"{state.partial_loss / state.partial_count:.4f}",
                    seg_s=f"{state.partial_count / (time.perf_counter() - started):.1f}",
                )
            stop = self._stop_requested()
            if stop is not None:
                self._interrupt(stop, epoch, started)

    def _step(self, mixture: torch.Tensor, sources: torch.Tensor) -> float | None:
        """One optimisation step; the loss, or None when it (or the gradient) was not
        finite and the step was skipped."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.amp_context():
            outputs = self.network(mixture)
        loss = self.loss_function(outputs, self.model.references(sources, mixture))
        value = float(loss.detach())
        finite = math.isfinite(value)
        if self.distributed.enabled:
            # every process must skip together, or DDP's gradient exchange would hang
            flag = torch.tensor([0 if finite else 1], device=self.device)
            torch_distributed.all_reduce(flag, op=torch_distributed.ReduceOp.MAX)
            finite = not bool(flag.item())
        if not finite:
            return None
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.trainer.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), clip)
        if not torch.isfinite(norm) and not self.scaler.is_enabled():
            # the gradient scaler skips such steps itself; without it we must
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

    def _interrupt(self, signal_number: int, epoch: int, started: float) -> None:
        name = signal.Signals(signal_number).name
        self.state.partial_seconds = time.perf_counter() - started
        if self.distributed.is_main:
            self.save(self.last_path)
        self.distributed.barrier()
        raise Interrupted(
            f"stopped by {name} in epoch {epoch} after {self.state.step} steps; the position "
            f"is saved in {self.last_path}: continue with resume={self.run_dir}",
            signal_number,
        )

    @torch.no_grad()
    def _validate(self) -> float:
        """Mean loss over the validation items of all processes."""
        self.network.eval()
        total, count = 0.0, 0
        for mixture, sources in self.validation_loader:
            mixture, sources = mixture.to(self.device), sources.to(self.device)
            with self.amp_context():
                outputs = self.model(mixture)
            loss = self.loss_function(outputs, self.model.references(sources, mixture))
            total += float(loss) * mixture.shape[0]
            count += mixture.shape[0]
        total, count = self.distributed.sum([total, count], self.device)
        if count == 0:
            raise SepkitError("the validation set is empty: check the dataset's valid split")
        return total / count
