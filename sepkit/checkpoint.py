"""Checkpoints: one file with weights, the model's config, statistics, training state
and the sepkit version.

Loading never runs code from the file: ``torch.load(weights_only=True)`` refuses pickled
objects, and a stored config may only build sepkit's own classes.
"""

from __future__ import annotations

import importlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

import sepkit
from sepkit.errors import SepkitError
from sepkit.files import atomic_path
from sepkit.models.base import SeparationModel


def save_checkpoint(path: str | os.PathLike, content: dict[str, Any]) -> None:
    """Write ``content`` (plus the sepkit version) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        torch.save({"sepkit_version": sepkit.__version__, **content}, temporary)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file on the CPU without unpickling any object."""
    path = Path(path)
    if not path.is_file():
        raise SepkitError(f"{path}: no such checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise SepkitError(
            f"{path}: refused to load: the file holds pickled Python objects, which could "
            f"run code ({str(error).splitlines()[0][:120]}); only load checkpoints you trust "
            "with other tools"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise SepkitError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): "
            f"{str(error).splitlines()[0][:160]}"
        ) from None
    if not isinstance(content, dict) or "model" not in content:
        raise SepkitError(f"{path}: not a sepkit checkpoint (no 'model' entry)")
    return content


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory's best (else last) checkpoint."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            candidate = path / "checkpoints" / name
            if candidate.is_file():
                return candidate
        raise SepkitError(f"{path}: run directory without checkpoints/best.pt or last.pt")
    if not path.exists():
        raise SepkitError(f"{path}: no such checkpoint file or run directory")
    return path


def _locate_sepkit_object(target: Any) -> Any:
    if not isinstance(target, str) or not target.startswith("sepkit."):
        raise SepkitError(
            f"refused to build {target!r} from a stored config: only sepkit's own classes "
            "(sepkit.*) may be built from a checkpoint"
        )
    module_name, _, attribute = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise SepkitError(
            f"stored config names {target!r}, which this sepkit ({sepkit.__version__}) "
            "does not have"
        ) from None


def instantiate_stored(config: Any) -> Any:
    """Build objects from a stored config of plain dicts and lists.

    Every ``_target_`` must be a sepkit class or function; values are taken literally
    (no interpolation, no resolvers).
    """
    if isinstance(config, list):
        return [instantiate_stored(item) for item in config]
    if not isinstance(config, dict):
        return config
    arguments = {k: instantiate_stored(v) for k, v in config.items() if not k.startswith("_")}
    if "_target_" not in config:
        return arguments
    factory = _locate_sepkit_object(config["_target_"])
    return factory(**arguments)


def build_model(checkpoint: dict[str, Any], source: str = "checkpoint") -> SeparationModel:
    """Rebuild a checkpoint's model from its stored config and load its weights."""
    model_entry = checkpoint.get("model", {})
    config = model_entry.get("config")
    if not isinstance(config, dict) or "_target_" not in config:
        raise SepkitError(f"{source}: the checkpoint has no model config to rebuild from")
    model = instantiate_stored(config)
    if not isinstance(model, SeparationModel):
        raise SepkitError(f"{source}: {config['_target_']} is not a sepkit separation model")
    try:
        model.load_state_dict(model_entry["state_dict"], strict=True)
    except (RuntimeError, KeyError) as error:
        raise SepkitError(
            f"{source}: weights do not fit {config['_target_']}: {str(error).splitlines()[0][:200]}"
        ) from None
    return model.eval()
