"""The models demucs 2.0.3 published (``demucs/pretrained.py``), rebuilt as sepkit models.

Each is a plain state dict fetched from
``https://dl.fbaipublicfiles.com/demucs/v3.0/<name>-<signature>.th`` into the torch hub
cache (``sepkit.models.pretrained.hub``); the signature is the start of the file's SHA-256.
Sources are drums, bass, other, vocals; audio is 44.1 kHz stereo. MUSDB18 test SDR (paper,
trained on MUSDB18 only): demucs 6.28 dB, tasnet 5.73 dB; the ``_extra`` models add 150
songs of training data.

``demucs_quantized`` (a DiffQ-compressed state dict) is not offered: decoding it needs
the diffq package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sepkit.errors import SepkitError
from sepkit.models.base import SeparationModel
from sepkit.models.convtasnet import ConvTasNet
from sepkit.models.demucs import Demucs
from sepkit.models.pretrained.hub import load_published_weights

ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/v3.0/"
SOURCES = ["drums", "bass", "other", "vocals"]

# demucs.tasnet.ConvTasNet's defaults with X=10, as demucs.pretrained.tasnet() builds it
_TASNET_ARGUMENTS = {
    "sample_rate": 44100,
    "nb_channels": 2,
    "filters": 256,
    "kernel_size": 20,
    "bottleneck_channels": 256,
    "skip_channels": None,
    "hidden_channels": 512,
    "conv_kernel_size": 3,
    "layers": 10,
    "repeats": 4,
    "norm": "global",
    "causal": False,
    "mask": "relu",
    "encoder_activation": "relu",
}


@dataclass(frozen=True)
class PublishedModel:
    """One published state dict and the sepkit model it loads into."""

    name: str
    signature: str
    model: type[SeparationModel]
    arguments: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.signature}.th"

    @property
    def url(self) -> str:
        return ROOT_URL + self.filename

    def build(self) -> SeparationModel:
        """The architecture, with untrained weights."""
        return self.model(targets=list(SOURCES), **self.arguments)


DEMUCS: dict[str, PublishedModel] = {
    model.name: model
    for model in [
        PublishedModel(
            "demucs", "e07c671f", Demucs, {"channels": 64}, "Demucs v2 trained on MUSDB18"
        ),
        PublishedModel(
            "demucs_extra",
            "3646af93",
            Demucs,
            {"channels": 64},
            "Demucs v2 trained on MUSDB18 and 150 extra songs",
        ),
        PublishedModel(
            "demucs48_hq",
            "28a1282c",
            Demucs,
            {"channels": 48},
            "Demucs v2 with 48 initial channels, trained on MUSDB18-HQ",
        ),
        PublishedModel(
            "tasnet",
            "beb46fac",
            ConvTasNet,
            _TASNET_ARGUMENTS,
            "Conv-TasNet (X=10) trained on MUSDB18",
        ),
        PublishedModel(
            "tasnet_extra",
            "df3777b2",
            ConvTasNet,
            _TASNET_ARGUMENTS,
            "Conv-TasNet (X=10) trained on MUSDB18 and 150 extra songs",
        ),
    ]
}


def load_pretrained_demucs(name: str, device: str | torch.device = "cpu") -> SeparationModel:
    """The published model ``name`` (a key of ``DEMUCS``) with its weights, in eval mode.

    The file comes from the torch hub cache, downloaded there on first use; without a
    connection, place it there by hand (the error says where).
    """
    if name not in DEMUCS:
        raise SepkitError(
            f"pretrained={name!r} is not one of demucs's published models: use one of "
            f"{sorted(DEMUCS)}"
        )
    published = DEMUCS[name]
    model = published.build()
    load_published_weights(model, published.url, f"pretrained={name}")
    return model.to(device).eval()
