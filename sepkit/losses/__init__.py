"""Training losses: spectrogram targets, deep clustering, waveform, SI-SDR, PIT.

Imported on first use, so that importing one of them does not import all."""

from importlib import import_module
from typing import Any

_MODULES = {
    "ChimeraLoss": "clustering",
    "DeepClusteringLoss": "clustering",
    "PermutationInvariantLoss": "pit",
    "ScaleInvariantSDRLoss": "waveform",
    "SeparationLoss": "base",
    "SpectrogramLoss": "spectrogram",
    "WaveformLoss": "waveform",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'sepkit.losses' has no attribute {name!r}")
    return getattr(import_module(f"sepkit.losses.{_MODULES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
