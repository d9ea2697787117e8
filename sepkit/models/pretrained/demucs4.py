"""The models demucs 4.1.0 publishes (``demucs/remote/``): Hybrid Transformer Demucs (v4)
and Hybrid Demucs (v3), rebuilt as sepkit models. MIT licence, as demucs.

Each file is a package demucs's training wrote with ``torch.save``: the model class (pickled
by name: ``demucs.htdemucs.HTDemucs``), its constructor's ``args`` and ``kwargs``, its
``state`` (half precision) and its ``training_args``. The file is read without importing
demucs or running anything from it (``unpickle.read_pickled_file``): the class name picks
sepkit's class of the same constructor arguments (``targets`` for demucs's ``sources``).
``training_args`` holds plain dicts and lists (demucs turns its OmegaConf config into them
before saving) and is not used.

Files come from ``https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/`` into the
torch hub cache under their published names ``<signature>-<checksum>.th``, the checksum
being the start of the file's SHA-256, checked on download as demucs does through
``torch.hub``. A named model is one file, or several averaged per source with the weights
of demucs's ``remote/<name>.yaml`` (``htdemucs_ft``: one fine-tuned model per source).
Sources are drums, bass, other, vocals (htdemucs_6s: + guitar, piano); 44.1 kHz stereo.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sepkit.checkpoint import load_weights
from sepkit.errors import SepkitError
from sepkit.models.bag import BagOfModels
from sepkit.models.base import SeparationModel
from sepkit.models.hdemucs import HDemucs
from sepkit.models.htdemucs import HTDemucs
from sepkit.models.pretrained.hub import cached_file
from sepkit.models.pretrained.unpickle import PickledClass, read_pickled_file

ROOT_URL = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"

# the classes a published package may name, and sepkit's class built in their place
SEPKIT_CLASSES: dict[str, type[SeparationModel]] = {
    "demucs.htdemucs.HTDemucs": HTDemucs,
    "demucs.hdemucs.HDemucs": HDemucs,
}
_FIX = "delete the file to download it again"


@dataclass(frozen=True)
class PublishedDemucs:
    """One of demucs's named models: its files, and how a bag of several averages them.

    ``weights[i][k]``: file ``i``'s weight for source ``k`` (None: one file, or a plain
    mean). ``segment``: seconds per separated segment the listing sets (None: each
    model's own).
    """

    name: str
    files: tuple[str, ...]
    description: str
    weights: tuple[tuple[float, ...], ...] | None = None
    segment: float | None = None

    def urls(self) -> list[str]:
        return [ROOT_URL + file for file in self.files]


_ONE_PER_SOURCE = tuple(tuple(float(i == k) for k in range(4)) for i in range(4))

DEMUCS4: dict[str, PublishedDemucs] = {
    model.name: model
    for model in [
        PublishedDemucs(
            "htdemucs",
            ("955717e8-8726e21a.th",),
            "Hybrid Transformer Demucs (v4) trained on MUSDB18-HQ and 800 songs (MIT licence)",
        ),
        PublishedDemucs(
            "htdemucs_ft",
            (
                "f7e0c4bc-ba3fe64a.th",
                "d12395a8-e57c48e6.th",
                "92cfc3b6-ef3bcb9c.th",
                "04573f0d-f3cf25b2.th",
            ),
            "htdemucs fine-tuned once per source: a bag of four models, each giving one stem; "
            "four times slower than htdemucs (MIT licence)",
            weights=_ONE_PER_SOURCE,
        ),
        PublishedDemucs(
            "htdemucs_6s",
            ("5c90dfd2-34c22ccb.th",),
            "htdemucs with 6 sources: drums, bass, other, vocals, guitar, piano (the piano "
            "source is weak, says demucs) (MIT licence)",
        ),
        PublishedDemucs(
            "hdemucs_mmi",
            ("75fc33f5-1941ce65.th",),
            "Hybrid Demucs (v3) retrained on MUSDB18-HQ and 800 songs (MIT licence)",
            segment=44.0,
        ),
    ]
}


def load_pretrained_demucs4(name: str, device: str | torch.device = "cpu") -> SeparationModel:
    """The published model ``name`` (a key of ``DEMUCS4``) with its weights, in eval mode:
    an ``HTDemucs``/``HDemucs``, or a ``BagOfModels`` of them.

    Files come from the torch hub cache, downloaded there on first use; without a
    connection, place them there by hand (the error says where).
    """
    if name not in DEMUCS4:
        raise SepkitError(
            f"pretrained={name!r} is not one of demucs 4's published models: use one of "
            f"{sorted(DEMUCS4)}"
        )
    published = DEMUCS4[name]
    label = f"pretrained={name}"
    models = []
    for url in published.urls():
        checksum = Path(url).stem.rsplit("-", 1)[1]
        path = cached_file(url, label, hash_prefix=checksum)
        models.append(load_package(path, label))
    if published.segment is not None:
        for model in models:
            set_segment(model, published.segment)
    if len(models) == 1 and published.weights is None:
        model = models[0]
    else:
        weights = None if published.weights is None else [list(w) for w in published.weights]
        model = BagOfModels(models, weights)
    return model.to(device).eval()


def load_package(path: Path, label: str) -> SeparationModel:
    """The sepkit model of the demucs package at ``path``, with its weights."""
    package = read_pickled_file(path, SEPKIT_CLASSES, label)
    source = f"{label}: {path}"
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise SepkitError(f"{source}: not a demucs model package (no klass, kwargs and state)")
    klass = package["klass"]
    if not isinstance(klass, PickledClass):  # a pickled instance or value, not a class name
        raise SepkitError(f"{source}: its klass entry is not a class name; {_FIX}")
    state = package["state"]
    if isinstance(state, dict) and state.get("__quantized"):
        raise SepkitError(
            f"{source}: DiffQ-quantized weights, which sepkit cannot decode; use a model "
            "published without quantization"
        )
    model_class = SEPKIT_CLASSES[klass.path]
    arguments = constructor_arguments(model_class, package["args"], package["kwargs"], source)
    model = model_class(**arguments)
    load_weights(model, state, source, fix=_FIX)
    return model


def constructor_arguments(
    model_class: type[SeparationModel], args: Any, kwargs: Any, source: str
) -> dict[str, Any]:
    """Keyword arguments of ``model_class`` from a demucs package's ``args`` (empty: demucs
    builds its models by keyword) and ``kwargs``: ``sources`` becomes ``targets``, and
    arguments ``model_class`` does not take are dropped with a warning, as demucs's own
    loader does for options of other versions."""
    if args or not isinstance(kwargs, Mapping) or "sources" not in kwargs:
        raise SepkitError(
            f"{source}: the package builds {model_class.__name__} from positional arguments or "
            f"without sources, which demucs's published models do not; {_FIX}"
        )
    arguments = {("targets" if key == "sources" else key): value for key, value in kwargs.items()}
    parameters = inspect.signature(model_class).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return arguments
    accepted = {parameter.name for parameter in parameters}
    dropped = sorted(key for key in arguments if key not in accepted)
    if dropped:
        warnings.warn(
            f"{source}: {model_class.__name__} takes no {', '.join(dropped)}: ignored",
            stacklevel=3,
        )
    return {key: value for key, value in arguments.items() if key in accepted}


def set_segment(model: SeparationModel, seconds: float) -> None:
    """Separate ``model`` in segments of ``seconds``, as demucs's bag ``segment`` does: a
    model trained on a fixed length (HTDemucs) keeps its own when shorter."""
    model.segment_seconds = (
        min(seconds, model.segment_seconds) if isinstance(model, HTDemucs) else seconds
    )
