"""Training: data, model, loss and optimizer from the config, on any device, with AMP, DDP,
checkpoints, resume and early stopping.

A run directory (Hydra's) ends up holding the resolved config (``.hydra/``),
``checkpoints/last.pt`` (after every epoch), ``checkpoints/best.pt`` (on improvement),
``metrics.csv``, TensorBoard events (``tensorboard/``) and ``loss.png``.

Reproducibility: every random draw is derived from ``trainer.seed`` and the position in
training, never from state that accumulates: the segments of an epoch come from
``(seed, epoch, index)`` and dropout in a step from ``(seed, epoch, step, rank)``. So a
run resumed at an epoch boundary continues exactly as the uninterrupted run would.

Modules: ``loop`` (the ``Trainer``: building a run, its epochs and steps), ``processes``
(the torchrun job, stop signals and the time budget), ``ema`` (the moving average of the
weights), ``sampling`` (each process's share of an epoch, the
DataLoaders), ``setup`` (model/dataset/loss checks, input statistics) and ``state`` (what a
resume needs, early stopping, metrics.csv and the loss plot).
"""

from sepkit.train.loop import NonFiniteLoss, Trainer, run_training
from sepkit.train.processes import Distributed, StopSignals, derived_seed
from sepkit.train.sampling import EpochSampler
from sepkit.train.setup import check_compatible, prepare_statistics
from sepkit.train.state import TrainingState

__all__ = [
    "Distributed",
    "EpochSampler",
    "NonFiniteLoss",
    "StopSignals",
    "Trainer",
    "TrainingState",
    "check_compatible",
    "derived_seed",
    "prepare_statistics",
    "run_training",
]
