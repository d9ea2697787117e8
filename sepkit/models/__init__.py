"""sepkit's architectures, each a plain nn.Module built from sepkit.blocks.

Imported on first use, so that importing one of them does not import all."""

from importlib import import_module
from typing import Any

_MODULES = {
    "Chimera": "chimera",
    "ConvTasNet": "convtasnet",
    "DeepClustering": "deep_clustering",
    "Demucs": "demucs",
    "InferenceOptions": "base",
    "MaskInference": "mask_inference",
    "OpenUnmix": "openunmix",
    "OpenUnmixSeparator": "openunmix",
    "PRETRAINED": "pretrained",
    "SeparationModel": "base",
    "SpectrogramModel": "base",
    "TasNet": "tasnet",
    "UNet": "unet",
    "UNetSeparator": "unet",
    "WaveUNet": "waveunet",
    "load_pretrained": "pretrained",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'sepkit.models' has no attribute {name!r}")
    return getattr(import_module(f"sepkit.models.{_MODULES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
