"""Band-split RoFormer checkpoints in the layout of the Music-Source-Separation-Training
project (MSST), the form the shared community models come in: a state dict (``.ckpt``) and
the YAML it was trained with.

The YAML's sections: ``audio`` (``sample_rate``, ``chunk_size`` in samples,
``num_channels``), ``model`` (the constructor arguments of ``bs_roformer.BSRoformer`` or
``mel_band_roformer.MelBandRoformer``; ``num_stems`` is the number of targets),
``training`` (``instruments``; ``target_instrument`` when the model separates that one
stem) and ``inference`` (``num_overlap``: MSST steps ``chunk_size // num_overlap``
samples from one chunk to the next). MSST writes tuples with PyYAML's ``!!python/tuple``
tag, read here as lists; no other Python tag is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml

from sepkit.checkpoint import load_weights, read_torch_file
from sepkit.errors import SepkitError
from sepkit.models.base import SeparationModel
from sepkit.models.bs_roformer import BSRoformer
from sepkit.models.mel_roformer import MelBandRoformer

# MSST's --model_type names of the architectures sepkit loads
ARCHITECTURES: dict[str, type[SeparationModel]] = {
    "bs_roformer": BSRoformer,
    "mel_band_roformer": MelBandRoformer,
}
# a model section's key that only one architecture has
_ARCHITECTURE_KEYS = {"freqs_per_bands": "bs_roformer", "num_bands": "mel_band_roformer"}


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``!!python/tuple`` (as a list)."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple",
    lambda loader, node: loader.construct_sequence(node, deep=True),
)


def load_msst(
    checkpoint_path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    model_type: str | None = None,
) -> SeparationModel:
    """A BSRoformer or MelBandRoformer with an MSST checkpoint's weights, in eval mode.

    ``config_path``: the checkpoint's YAML; None looks beside the checkpoint for the same
    name ending in ``.yaml`` or ``.yml``. ``model_type`` (``bs_roformer`` or
    ``mel_band_roformer``, as MSST's ``--model_type``) is needed only when the ``model``
    section has neither ``freqs_per_bands`` nor ``num_bands``. The model's
    ``segment_seconds`` is the YAML's chunk (``inference.chunk_size`` or
    ``audio.chunk_size``) and its ``segment_overlap`` the share ``1 - 1 / num_overlap``
    (chunks start every ``chunk_size // num_overlap`` samples, as in MSST's inference).
    """
    checkpoint_path = Path(checkpoint_path)
    config_path = _config_beside(checkpoint_path) if config_path is None else Path(config_path)
    config = _read_config(config_path)
    arguments = dict(_section(config, "model", config_path))
    cls = ARCHITECTURES[_architecture(arguments, model_type, config_path)]
    audio = _section(config, "audio", config_path, required=False)
    targets = _targets(config, arguments.pop("num_stems", None), config_path)
    arguments.setdefault("sample_rate", audio.get("sample_rate", 44100))
    try:
        model = cls(targets=targets, **arguments)
    except (TypeError, ValueError) as error:
        raise SepkitError(f"{config_path}: model: {error}") from None
    state_dict = read_torch_file(checkpoint_path)
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if (
        isinstance(state_dict, dict)
        and state_dict
        and all(name.startswith("module.") for name in state_dict)
    ):  # saved from a DataParallel wrapper
        state_dict = {name.removeprefix("module."): value for name, value in state_dict.items()}
    load_weights(model, state_dict, str(checkpoint_path), fix=f"is {config_path} its YAML?")
    _set_segments(model, config, audio, config_path)
    return model.to(device).eval()


def _config_beside(checkpoint_path: Path) -> Path:
    for suffix in (".yaml", ".yml"):
        candidate = checkpoint_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise SepkitError(
        f"{checkpoint_path}: no {checkpoint_path.with_suffix('.yaml').name} beside it; "
        "give the YAML it was trained with (config=<file>.yaml)"
    )


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.load(path.read_text(), Loader=_ConfigLoader)  # noqa: S506 (safe loader)
    except OSError as error:
        raise SepkitError(f"{path}: cannot read it ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise SepkitError(f"{path}: not a readable MSST YAML ({problem})") from None
    if not isinstance(config, dict):
        raise SepkitError(f"{path}: not an MSST config (expected sections audio, model, ...)")
    return config


def _section(
    config: dict[str, Any], name: str, path: Path, required: bool = True
) -> dict[str, Any]:
    section = config.get(name)
    if section is None and not required:
        return {}
    if not isinstance(section, dict):
        raise SepkitError(
            f"{path}: no '{name}' section (an MSST config has audio, model, training and "
            "inference sections)"
        )
    return section


def _architecture(arguments: dict[str, Any], model_type: str | None, path: Path) -> str:
    """The MSST model type: ``model_type`` if given, else told by the model section's keys."""
    if model_type is not None:
        if model_type not in ARCHITECTURES:
            raise SepkitError(
                f"model_type={model_type}: use one of {sorted(ARCHITECTURES)} for {path}"
            )
        return model_type
    found = {_ARCHITECTURE_KEYS[key] for key in arguments if key in _ARCHITECTURE_KEYS}
    if len(found) != 1:
        raise SepkitError(
            f"{path}: model: cannot tell the architecture (freqs_per_bands: bs_roformer, "
            f"num_bands: mel_band_roformer; sepkit loads only these); give model_type"
        )
    return found.pop()


def _targets(config: dict[str, Any], num_stems: int | None, path: Path) -> list[str]:
    """The stems the model separates, in its output order."""
    training = _section(config, "training", path, required=False)
    target = training.get("target_instrument")
    instruments = training.get("instruments")
    if target:
        targets = [str(target)]
    elif isinstance(instruments, list) and instruments:
        targets = [str(name) for name in instruments]
    else:
        raise SepkitError(
            f"{path}: training: no instruments (the list of stems the model separates, or "
            "target_instrument for a one-stem model)"
        )
    if num_stems is not None and num_stems != len(targets):
        raise SepkitError(
            f"{path}: model.num_stems is {num_stems} but training names {len(targets)} "
            f"stem(s) ({', '.join(targets)}): set target_instrument or instruments to match"
        )
    return targets


def _set_segments(
    model: SeparationModel, config: dict[str, Any], audio: dict[str, Any], path: Path
) -> None:
    """The YAML's inference chunk and overlap as the model's separation segments."""
    inference = _section(config, "inference", path, required=False)
    chunk_size = inference.get("chunk_size", audio.get("chunk_size"))
    if chunk_size:
        model.segment_seconds = float(chunk_size) / model.sample_rate
    num_overlap = inference.get("num_overlap")
    if num_overlap:
        if not isinstance(num_overlap, int) or num_overlap < 1:
            raise SepkitError(f"{path}: inference.num_overlap={num_overlap}: use an integer >= 1")
        model.segment_overlap = 1.0 - 1.0 / num_overlap  # MSST steps chunk // num_overlap
