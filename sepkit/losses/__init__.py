"""Training losses: spectrogram targets, deep clustering, waveform, SI-SDR, PIT.

Imported on first use, so that importing one of them does not import all."""

from sepkit._exports import lazy_exports

_MODULES = {
    "ChimeraLoss": "clustering",
    "DeepClusteringLoss": "clustering",
    "PermutationInvariantLoss": "pit",
    "ScaleInvariantSDRLoss": "waveform",
    "SeparationLoss": "base",
    "SpectrogramLoss": "spectrogram",
    "WaveformLoss": "waveform",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
