"""Rules about audio arrays that the datasets, separation and evaluation share."""

from __future__ import annotations

import os

import numpy as np

from sepkit.errors import SepkitError

__all__ = ["convert_channels"]


def convert_channels(
    audio: np.ndarray,
    nb_channels: int,
    label: str | os.PathLike,
    fix: str = "set dataset.nb_channels to match the files",
) -> np.ndarray:
    """(samples, channels) -> (samples, nb_channels), by sepkit's one rule for reading a
    file into a fixed channel count: one channel is duplicated, several are averaged into
    one; any other pair is a SepkitError naming ``label`` (the file) and ``fix``."""
    channels = audio.shape[1]
    if channels == nb_channels:
        return audio
    if channels == 1:
        return np.repeat(audio, nb_channels, axis=1)
    if nb_channels == 1:
        return audio.mean(axis=1, keepdims=True)
    raise SepkitError(f"{label}: {channels} channels, expected 1 or {nb_channels} ({fix})")
