"""sepkit's architectures, each a plain nn.Module built from sepkit.blocks.

Imported on first use, so that importing one of them does not import all."""

from sepkit._exports import lazy_exports

_MODULES = {
    "BSRoformer": "bs_roformer",
    "BagOfModels": "bag",
    "Chimera": "chimera",
    "ConvTasNet": "convtasnet",
    "DeepClustering": "deep_clustering",
    "Demucs": "demucs",
    "HDemucs": "hdemucs",
    "HTDemucs": "htdemucs",
    "InferenceOptions": "base",
    "MaskInference": "mask_inference",
    "MelBandRoformer": "mel_roformer",
    "OpenUnmix": "openunmix",
    "OpenUnmixSeparator": "openunmix",
    "PRETRAINED": "pretrained.registry",
    "SeparationModel": "base",
    "SpectrogramModel": "base",
    "TasNet": "tasnet",
    "UNet": "unet",
    "UNetSeparator": "unet",
    "WaveUNet": "waveunet",
    "load_pretrained": "pretrained.registry",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _MODULES)
