"""Small models, runs and songs the separation tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sepkit.checkpoint import save_checkpoint
from sepkit.models.openunmix import OpenUnmixSeparator

RATE = 44100
MUSIC_TARGETS = ["vocals", "drums", "bass", "other"]


def tiny_model(targets=MUSIC_TARGETS, sample_rate=RATE, nb_channels=2, seed=0):
    """An Open-Unmix of a few thousand weights, random from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    model = OpenUnmixSeparator(
        targets=list(targets), sample_rate=sample_rate, nb_channels=nb_channels, n_fft=512,
        hop_length=128, hidden_size=16, nb_layers=1, bandwidth=None,
    )  # fmt: skip
    return model.eval()


def save_run(run_dir: Path, model) -> Path:
    """A run directory as ``sepkit train`` leaves it (the parts separation reads)."""
    save_checkpoint(
        run_dir / "checkpoints" / "best.pt",
        {"model": {"config": model.config, "state_dict": model.state_dict()}},
    )
    return run_dir


def song(seconds: float, channels: int = 2, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """(time, channels) float32: tones and noise bursts, peak about 0.5."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    tones = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t)
    bursts = 0.2 * np.exp(-(t % 0.5) / 0.05) * rng.standard_normal(t.shape)
    pans = rng.uniform(0.5, 1.0, size=(2, channels))
    return (tones[:, None] * pans[0] + bursts[:, None] * pans[1]).astype(np.float32)
