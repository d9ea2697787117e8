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


# Overrides that shrink each model config to a few thousand weights for the contract test
# (tests/test_model_contract.py), by file name in configs/model/; a model without a row is
# tested at its default size.
SMALL_MODELS = {
    "openunmix": ["model.hidden_size=16", "model.nb_layers=1", "model.n_fft=512",
                  "model.hop_length=128", "model.bandwidth=null"],
    "mask_inference": ["model.hidden_size=8", "model.nb_layers=1", "model.dropout=0.0"],
    "deep_clustering": ["model.hidden_size=8", "model.nb_layers=1", "model.dropout=0.0"],
    "chimera": ["model.hidden_size=8", "model.nb_layers=1", "model.dropout=0.0"],
    "unet": ["model.n_fft=512", "model.hop_length=128", "model.max_bin=128",
             "model.patch_frames=64", "model.channels=[4,4,4,4,4,4]"],
    "tasnet": ["model.filters=16", "model.hidden_size=16", "model.layers=2"],
    "convtasnet": ["model.filters=16", "model.bottleneck_channels=8", "model.skip_channels=8",
                   "model.hidden_channels=16", "model.layers=2", "model.repeats=1"],
    "waveunet": ["model.levels=3", "model.extra_filters=4"],
    "demucs": ["model.channels=4", "model.depth=3"],
    "htdemucs": ["model.channels=8", "model.depth=3", "model.nfft=512", "model.t_layers=1",
                 "model.t_heads=2", "model.bottom_channels=0", "model.segment=1.0"],
    "hdemucs": ["model.channels=8", "model.depth=5", "model.nfft=1024"],
    "bs_roformer": ["model.dim=16", "model.depth=1", "model.heads=2", "model.dim_head=8",
                    "model.stft_n_fft=256", "model.stft_win_length=256",
                    "model.stft_hop_length=64", "model.freqs_per_bands=[8,8,16,32,65]"],
    "mel_roformer": ["model.dim=16", "model.depth=1", "model.heads=2", "model.dim_head=8",
                     "model.stft_n_fft=256", "model.stft_win_length=256",
                     "model.stft_hop_length=64", "model.num_bands=8"],
}  # fmt: skip
