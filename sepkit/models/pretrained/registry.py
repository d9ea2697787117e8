"""Every published model by name (``pretrained=umxhq``), and the one lookup that loads it.

A family of published models is a module of this package holding a dict of its models
(name -> an entry with a ``description`` and, for licences that restrict use, a
``licence_notice``) and a loader ``load(name, device)``; ``PRETRAINED`` below lists each
family on one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from sepkit.checkpoint import build_model, find_checkpoint, load_checkpoint
from sepkit.errors import SepkitError
from sepkit.models.base import SeparationModel
from sepkit.models.pretrained.demucs import DEMUCS, load_pretrained_demucs
from sepkit.models.pretrained.demucs4 import DEMUCS4, load_pretrained_demucs4
from sepkit.models.pretrained.msst import load_msst
from sepkit.models.pretrained.open_unmix import (
    OPEN_UNMIX,
    is_open_unmix_folder,
    load_open_unmix,
    load_open_unmix_folder,
)


@dataclass(frozen=True)
class PretrainedModel:
    """One published model: what it is, under which licence, and how to load it.

    ``load(device)`` returns the model with its weights, in eval mode, on ``device``.
    ``licence_notice`` is printed whenever the model is used: for licences that restrict
    what its output may be used for.
    """

    name: str
    description: str
    load: Callable[[torch.device], SeparationModel]
    licence_notice: str | None = None


def family(
    published: Mapping[str, Any], loader: Callable[[str, torch.device], SeparationModel]
) -> dict[str, PretrainedModel]:
    """The registry entries of a family: ``published`` maps its names to entries with a
    ``description`` (and optionally a ``licence_notice``), ``loader(name, device)`` loads
    one."""
    return {
        name: PretrainedModel(
            name=name,
            description=getattr(entry, "description", ""),
            load=partial(loader, name),
            licence_notice=getattr(entry, "licence_notice", None),
        )
        for name, entry in published.items()
    }


PRETRAINED: dict[str, PretrainedModel] = {
    **family(OPEN_UNMIX, load_open_unmix),  # umxhq, umx, umxl
    **family(DEMUCS, load_pretrained_demucs),  # demucs 2.0.3: demucs, tasnet and variants
    **family(DEMUCS4, load_pretrained_demucs4),  # demucs 4.1.0: htdemucs(_ft, _6s), hdemucs_mmi
}


def load_pretrained(
    name_or_path: str | Path, device: torch.device | str = "cpu"
) -> SeparationModel:
    """A published model by name (a key of ``PRETRAINED``) or an Open-Unmix model folder.

    Prints the licence of models that restrict their use.
    """
    path = Path(str(name_or_path)).expanduser()
    if is_open_unmix_folder(path):
        return load_open_unmix_folder(path, device)
    name = str(name_or_path)
    if name not in PRETRAINED:
        if path.exists():
            raise SepkitError(
                f"pretrained={name}: not an Open-Unmix model folder (no separator.json); for a "
                "model trained by sepkit use checkpoint=<file.pt or run directory>"
            )
        raise SepkitError(
            f"pretrained={name}: unknown model; use one of {', '.join(sorted(PRETRAINED))} or "
            "an Open-Unmix model folder"
        )
    entry = PRETRAINED[name]
    if entry.licence_notice:
        print(f"note: the {name} weights are licensed {entry.licence_notice}", file=sys.stderr)
    return entry.load(torch.device(device))


def is_msst_checkpoint(path: Path, config: str | Path | None = None) -> bool:
    """Whether ``path`` is a Music-Source-Separation-Training checkpoint: its YAML is given
    (``config``) or lies beside it under the same name, as the shared community models do."""
    if config is not None:
        return True
    return path.is_file() and any(path.with_suffix(s).is_file() for s in (".yaml", ".yml"))


def load_trained(
    path: str | Path, config: str | Path | None = None, device: torch.device | str = "cpu"
) -> SeparationModel:
    """A trained model from disk, in eval mode: a checkpoint of ``sepkit train`` (a file or
    its run directory, whose best.pt is taken), or a Music-Source-Separation-Training
    checkpoint with its YAML (``config``, or beside it; ``sepkit.models.pretrained.msst``)."""
    path = Path(path).expanduser()
    if is_msst_checkpoint(path, config):
        return load_msst(path, config, device)
    file = find_checkpoint(path)
    return build_model(load_checkpoint(file), source=str(file)).to(device)
