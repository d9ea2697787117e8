"""What a run remembers between epochs and across a resume: the position, the best
validation loss so far (for early stopping), the history, and where each is written."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepkit.checkpoint import load_checkpoint
from sepkit.errors import SepkitError
from sepkit.files import atomic_path, write_text_atomic


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

    def finish_epoch(self, row: dict[str, float]) -> bool:
        """Record the epoch just done (``row``: its metrics.csv line, without the best loss)
        and clear the running sums; True when its validation loss is the best so far."""
        improved = row["valid_loss"] < self.best_valid_loss
        if improved:
            self.best_valid_loss, self.best_epoch = row["valid_loss"], row["epoch"]
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        self.history.append({**row, "best_valid_loss": self.best_valid_loss})
        self.epoch, self.step = row["epoch"], 0
        self.partial_loss, self.partial_count, self.partial_seconds = 0.0, 0, 0.0
        return improved

    def patience_exhausted(self, patience: int | None) -> bool:
        """Early stopping: ``patience`` epochs in a row without a better validation loss."""
        return patience is not None and self.epochs_without_improvement >= patience


def resumable_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to hold a training state sepkit can resume."""
    checkpoint = load_checkpoint(path)
    saved = checkpoint.get("train_state")
    if not (
        isinstance(checkpoint["model"], dict)
        and isinstance(saved, dict)
        and isinstance(saved.get("state"), dict)
        and set(saved["state"]) <= {item.name for item in dataclasses.fields(TrainingState)}
        and "optimizer" in saved
    ):
        raise SepkitError(
            f"{path}: holds no training state sepkit can resume from "
            "(written by another tool or version?); start a new run"
        )
    return checkpoint


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
    """``metrics.csv``: one row per epoch, the columns of ``METRIC_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", buffer.getvalue())


def plot_losses(run_dir: Path, history: list[dict[str, float]]) -> None:
    """``loss.png``: training and validation loss per epoch (log scale when positive)."""
    import matplotlib  # heavy: only the main process of a run draws

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
