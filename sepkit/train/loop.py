"""The training loop: one ``Trainer`` builds the run's parts from the config, then trains,
validates, records and saves epoch after epoch until the last epoch, early stopping or a
stop signal."""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sepkit.checkpoint import load_weights, save_checkpoint
from sepkit.devices import autocast, autocast_dtype, select_device
from sepkit.errors import Interrupted, SepkitError
from sepkit.models.base import SeparationModel
from sepkit.train.ema import WeightAverage
from sepkit.train.finetune import freeze, load_initial_weights
from sepkit.train.processes import Distributed, StopSignals, derived_seed, parse_duration
from sepkit.train.sampling import data_loaders
from sepkit.train.setup import check_compatible, prepare_statistics
from sepkit.train.state import TrainingState, plot_losses, resumable_checkpoint, write_metrics

log = logging.getLogger("sepkit.train")


class NonFiniteLoss(SepkitError):
    """The loss stayed NaN or infinite for too many steps in a row."""


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
        self.cfg, self.trainer, self.run_dir = cfg, cfg.trainer, run_dir
        self.distributed, self.device, self.signals = distributed, device, signals
        self.max_seconds = parse_duration(self.trainer.max_time, "trainer.max_time")
        self.deadline = math.inf
        decay = self.trainer.ema.decay
        if decay is not None and not 0 < decay < 1:
            raise SepkitError(
                f"trainer.ema.decay={decay}: give a number between 0 and 1 (e.g. 0.999), or "
                "null for no average"
            )
        if self.trainer.accumulate < 1:
            raise SepkitError(
                f"trainer.accumulate={self.trainer.accumulate}: give the number of batches "
                "per optimizer step, 1 or more"
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

        resumed = self._resumed_checkpoint()
        self._prepare_model(resumed)
        self.model.to(device)
        self._build_optimizer()
        self.average = None
        if self.trainer.ema.decay is not None:
            self.average = WeightAverage(self.model, self.trainer.ema.decay)
        if resumed is not None:
            self._restore_optimizer(resumed["train_state"])

        self.network: torch.nn.Module = self.model
        if distributed.enabled:
            self.network = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.loaders = data_loaders(
            self.data, self.trainer, distributed, device, self.model.training_segment
        )
        self.batch_augmentation = getattr(self.data, "batch_augmentation", None)

    # -- building --------------------------------------------------------------------------

    def _resumed_checkpoint(self) -> dict[str, Any] | None:
        if self.cfg.resume:
            if self.distributed.is_main:
                # a kill during a save leaves its temporary file; the real one is intact
                for stale in self.last_path.parent.glob(".*.partial-*"):
                    stale.unlink(missing_ok=True)
            if self.last_path.is_file():
                return resumable_checkpoint(self.last_path)
            # stopped before its first checkpoint: start again from the beginning
            log.info("resume=%s: no checkpoint yet, starting from the beginning", self.cfg.resume)
            return None
        if self.last_path.exists() or self.best_path.exists():
            raise SepkitError(
                f"{self.run_dir} already holds checkpoints: pass resume={self.run_dir} to "
                "continue it, or choose another hydra.run.dir"
            )
        return None

    def _prepare_model(self, resumed: dict[str, Any] | None) -> None:
        """The resumed run's weights, state and statistics; for a new run, the input
        statistics of its training tracks."""
        self.state = TrainingState()
        initialised = resumed is None and bool(self.cfg.init)
        if initialised:
            # the trained weights include the statistics the model was trained with
            load_initial_weights(self.model, self.cfg.init)
            # weights trained on other sources (speakers, say) fine-tune on these
            self.model.fit_sources(self.data.ordered_sources)
        if self.cfg.freeze:
            frozen = freeze(self.model, list(self.cfg.freeze))
            log.info("freeze: %d parameter tensors kept fixed", len(frozen))
        if initialised:
            self.statistics = None
            return
        if resumed is None:
            self.statistics = prepare_statistics(
                self.model, self.data, self.trainer.statistics_tracks, self.distributed
            )
            if self.statistics is not None:
                self.model.load_statistics(self.statistics)
            return
        load_weights(
            self.model,
            resumed["model"].get("state_dict"),
            str(self.last_path),
            fix="resume with the model settings the run was trained with "
            "(drop the model overrides) or start a new run",
        )
        self.state = TrainingState(**resumed["train_state"]["state"])
        self.statistics = resumed.get("statistics")

    def _build_optimizer(self) -> None:
        # optimizer and scheduler configs are partial: they get the parameters here
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = instantiate(self.cfg.optimizer, _convert_="all")(trainable)
        self.scheduler = None
        if self.cfg.scheduler:
            self.scheduler = instantiate(self.cfg.scheduler, _convert_="all")(self.optimizer)
        # half precision's narrow range needs the loss scaled; bfloat16's does not
        self.scaler = torch.amp.GradScaler(
            self.device.type,
            enabled=bool(self.trainer.amp) and autocast_dtype(self.device) == torch.float16,
        )

    def _restore_optimizer(self, saved: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None and saved.get("scheduler"):
            self.scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        if self.average is not None and saved.get("ema"):
            self.average.load_state_dict(saved["ema"])
        elif self.average is not None:
            log.info("trainer.ema: the run had no average yet; it starts from these weights")
        log.info(
            "resuming %s after epoch %d%s",
            self.run_dir,
            self.state.epoch,
            f", step {self.state.step} of epoch {self.state.epoch + 1}" if self.state.step else "",
        )

    def amp_context(self) -> torch.autocast:
        return autocast(self.device, bool(self.trainer.amp))

    @property
    def _validated_model(self) -> SeparationModel:
        """The averaged weights when ``trainer.ema.use_for_validation``, else the model's."""
        if self.average is not None and self.trainer.ema.use_for_validation:
            return self.average.model
        return self.model

    def save(self, path: Path, model: torch.nn.Module | None = None) -> None:
        """A checkpoint of ``model``'s weights (the trained ones by default: what resume
        continues from) with everything a resume needs."""
        weights = (model or self.model).state_dict()
        save_checkpoint(
            path,
            {
                "model": {"config": self.model.config, "state_dict": weights},
                "statistics": self.statistics,
                "train_state": {
                    "state": asdict(self.state),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                    "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                    "ema": self.average.state_dict() if self.average is not None else None,
                },
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            },
        )

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> Path:
        """Train until the last epoch, early stopping or the time budget; the best
        checkpoint (last.pt while no epoch has been validated)."""
        state = self.state
        if self.max_seconds is not None:
            self.deadline = time.monotonic() + self.max_seconds
        self.writer = None
        if self.distributed.is_main:
            from torch.utils.tensorboard import SummaryWriter  # heavy: the main process only

            self.writer = SummaryWriter(
                str(self.run_dir / "tensorboard"), purge_step=state.epoch + 1
            )
        try:
            while state.epoch < self.trainer.epochs:
                if not self._epoch():
                    break
        finally:
            if self.writer is not None:
                self.writer.close()
        if state.best_epoch == 0:
            return self.last_path
        if self.distributed.is_main:
            log.info(
                "best validation loss %.5f at epoch %d: %s",
                state.best_valid_loss,
                state.best_epoch,
                self.best_path,
            )
        return self.best_path

    def _epoch(self) -> bool:
        """Train and validate one epoch; False when early stopping or the time budget
        ends the run."""
        state = self.state
        epoch = state.epoch + 1
        started = time.perf_counter() - state.partial_seconds
        self.loaders.sampler.set_epoch(epoch, skip_batches=state.step)
        if not self._train_steps(epoch, started):
            return False
        train_total, train_count = self.distributed.sum(
            [state.partial_loss, float(state.partial_count)], self.device
        )
        valid_loss = self._validate()
        seconds = time.perf_counter() - started
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(valid_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        row = {
            "epoch": epoch,
            "train_loss": train_total / train_count if train_count else math.nan,
            "valid_loss": valid_loss,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
            "segments_per_second": round(train_count / seconds, 2),
        }
        improved = state.finish_epoch(row)
        if self.distributed.is_main:
            self._record(row, improved)
        self.distributed.barrier()
        return not self._stops_early()

    def _record(self, row: dict[str, float], improved: bool) -> None:
        """Checkpoints, metrics.csv, the loss plot, TensorBoard and the log line of an epoch."""
        # best before last: a kill between the two leaves last.pt one epoch behind, and the
        # resumed run redoes (and re-saves) that epoch
        if improved:
            self.save(self.best_path, self._validated_model)
        self.save(self.last_path)
        write_metrics(self.run_dir, self.state.history)
        plot_losses(self.run_dir, self.state.history)
        assert self.writer is not None
        epoch = row["epoch"]
        self.writer.add_scalar("loss/train", row["train_loss"], epoch)
        self.writer.add_scalar("loss/valid", row["valid_loss"], epoch)
        self.writer.add_scalar("learning_rate", row["learning_rate"], epoch)
        self.writer.flush()
        log.info(
            "epoch %d/%d  train %.5f  valid %.5f%s  lr %.2e  %.1f s",
            epoch,
            self.trainer.epochs,
            row["train_loss"],
            row["valid_loss"],
            "  (best)" if improved else "",
            row["learning_rate"],
            row["seconds"],
        )

    def _stops_early(self) -> bool:
        if not self.state.patience_exhausted(self.trainer.patience):
            return False
        if self.distributed.is_main:
            log.info(
                "stopping early: no better validation loss for %d epochs (best %.5f at epoch %d)",
                self.trainer.patience,
                self.state.best_valid_loss,
                self.state.best_epoch,
            )
        return True

    def _stop_requested(self) -> int | None:
        """The signal that asks to stop, agreed by every process (they must stop at the
        same step, or the next collective operation would wait forever)."""
        return self.distributed.any(self.signals.received or 0, self.device) or None

    def _out_of_time(self, epoch: int, started: float) -> bool:
        """True when the time budget is spent (agreed by every process), after saving the
        position as a stop signal does."""
        if not self.distributed.any(int(time.monotonic() >= self.deadline), self.device):
            return False
        self._save_position(started)
        if self.distributed.is_main:
            log.info(
                "time budget trainer.max_time=%s reached in epoch %d after %d steps; the "
                "position is saved in %s: continue with resume=%s",
                self.trainer.max_time,
                epoch,
                self.state.step,
                self.last_path,
                self.run_dir,
            )
        return True

    def _train_steps(self, epoch: int, started: float) -> bool:
        """The epoch's remaining batches, ``trainer.accumulate`` per optimizer step; running
        sums go into the state, so that an interruption (checked between optimizer steps)
        saves them with the position. False when the time budget ran out."""
        sampler, state = self.loaders.sampler, self.state
        self.network.train()
        self.nonfinite_in_a_row = 0
        bar = tqdm(
            self.loaders.training,
            desc=f"epoch {epoch}",
            leave=False,
            # a log file or SLURM's output gets the epoch's line only, not the bar's updates
            disable=not (
                self.trainer.progress and self.distributed.is_main and sys.stderr.isatty()
            ),
            unit="batch",
        )
        losses: list[tuple[float | None, int]] = []  # (loss, items) of this step's batches
        for batch, (mixture, sources) in enumerate(bar, start=state.step):
            torch.manual_seed(derived_seed(self.trainer.seed, epoch, batch, self.distributed.rank))
            mixture = mixture.to(self.device, non_blocking=True)
            sources = sources.to(self.device, non_blocking=True)
            if self.batch_augmentation is not None:
                mixture, sources = self.batch_augmentation(mixture, sources)
            ends_step = sampler.ends_step(batch)
            weight = mixture.shape[0] / sampler.items_in_step(batch)
            losses.append((self._backward(mixture, sources, weight, ends_step), len(mixture)))
            if not ends_step:
                continue
            self._finish_step(losses, epoch, batch)
            losses, state.step = [], batch + 1
            if state.partial_count:
                bar.set_postfix(
                    loss=f"{state.partial_loss / state.partial_count:.4f}",
                    seg_s=f"{state.partial_count / (time.perf_counter() - started):.1f}",
                )
            stop = self._stop_requested()
            if stop is not None:
                self._interrupt(stop, epoch, started)
            if self.max_seconds is not None and self._out_of_time(epoch, started):
                bar.close()
                return False
        return True

    def _finish_step(self, losses: list[tuple[float | None, int]], epoch: int, batch: int) -> None:
        """The optimizer step over the batches whose gradients were accumulated, and their
        losses into the epoch's sums; a step with a non-finite loss or gradient is skipped."""
        if all(value is not None for value, _ in losses) and self._optimizer_step():
            self.nonfinite_in_a_row = 0
            self.state.partial_loss += sum(value * items for value, items in losses)
            self.state.partial_count += sum(items for _, items in losses)
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_a_row += 1
        log.warning("epoch %d batch %d: loss or gradient not finite; skipped", epoch, batch)
        if self.nonfinite_in_a_row >= self.trainer.max_nonfinite_steps:
            raise NonFiniteLoss(
                f"the loss was not finite for {self.nonfinite_in_a_row} steps in a row: "
                "lower optimizer.lr, set trainer.grad_clip, or check the data for NaN"
            )

    def _step(self, mixture: torch.Tensor, sources: torch.Tensor) -> float | None:
        """One optimisation step on one batch; the loss, or None when it (or the
        gradient) was not finite and the step was skipped."""
        value = self._backward(mixture, sources, 1.0, sync=True)
        if value is None or not self._optimizer_step():
            self.optimizer.zero_grad(set_to_none=True)
            return None
        return value

    def _backward(
        self, mixture: torch.Tensor, sources: torch.Tensor, weight: float, sync: bool
    ) -> float | None:
        """Add the gradient of ``weight`` times the batch's loss to the parameters' (DDP
        exchanges the sum only when ``sync``: on the last batch of an optimizer step); the
        loss, or None when it was not finite (then nothing is added)."""
        exchange = self.network.no_sync() if self._is_ddp and not sync else nullcontext()
        with exchange:
            with self.amp_context():
                outputs = self.network(mixture)
            loss = self.loss_function(outputs, self.model.references(sources, mixture))
            value = float(loss.detach())
            # every process must skip together, or DDP's gradient exchange would hang
            if self.distributed.any(0 if math.isfinite(value) else 1, self.device):
                return None
            self.scaler.scale(loss * weight).backward()
        return value

    @property
    def _is_ddp(self) -> bool:
        return isinstance(self.network, torch.nn.parallel.DistributedDataParallel)

    def _optimizer_step(self) -> bool:
        """Clip and apply the accumulated gradient, then clear it; False when the gradient
        was not finite and no step was taken."""
        self.scaler.unscale_(self.optimizer)
        clip = self.trainer.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), clip)
        if not torch.isfinite(norm) and not self.scaler.is_enabled():
            return False  # the gradient scaler skips such steps itself; without it we must
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update(self.model)
        return True

    def _save_position(self, started: float) -> None:
        """last.pt at the current step of an unfinished epoch, for resume."""
        self.state.partial_seconds = time.perf_counter() - started
        if self.distributed.is_main:
            self.save(self.last_path)
        self.distributed.barrier()

    def _interrupt(self, signal_number: int, epoch: int, started: float) -> None:
        name = signal.Signals(signal_number).name
        self._save_position(started)
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
        for mixture, sources in self.loaders.validation:
            mixture, sources = mixture.to(self.device), sources.to(self.device)
            with self.amp_context():
                outputs = self._validated_model(mixture)
            loss = self.loss_function(outputs, self.model.references(sources, mixture))
            total += float(loss) * mixture.shape[0]
            count += mixture.shape[0]
        total, count = self.distributed.sum([total, count], self.device)
        if count == 0:
            raise SepkitError("the validation set is empty: check the dataset's valid split")
        return total / count
