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
    content = read_torch_file(path)
    if not isinstance(content, dict) or "model" not in content:
        raise SepkitError(
            f"{path}: not a sepkit checkpoint (no 'model' entry); for a "
            "Music-Source-Separation-Training checkpoint give its YAML: config=<file>.yaml"
        )
    return content


def read_torch_file(path: str | os.PathLike) -> Any:
    """What ``torch.save`` wrote to ``path`` (a checkpoint, published weights), read on the
    CPU without unpickling any object, or a one-line SepkitError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise SepkitError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise SepkitError(f"{path}: empty file (0 bytes), not a checkpoint (an interrupted copy?)")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the refused class or function on a line with "GLOBAL"; other
        # unpickling errors come from bytes that are not a pickle at all
        refused = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        if refused:
            named = refused[0].split(" was not")[0].split(" whose")[0][:120]
            raise SepkitError(
                f"{path}: refused to load: the file holds pickled Python objects, which could "
                f"run code ({named}); only load checkpoints you trust with other tools"
            ) from None
        raise SepkitError(f"{path}: not a checkpoint (not a PyTorch file)") from None
    except (zipfile.BadZipFile, RuntimeError) as error:
        raise SepkitError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): "
            f"{_first_sentence(error, 160)}"
        ) from None
    except OSError as error:
        raise SepkitError(f"{path}: cannot read it ({error.strerror or error})") from None
    except Exception as error:  # the unpickler fails in many ways on bytes that are no pickle
        raise SepkitError(
            f"{path}: not a checkpoint (truncated, corrupt or another kind of file: "
            f"{type(error).__name__} while reading it)"
        ) from None
    return content


def _first_sentence(error: BaseException, limit: int) -> str:
    """The first sentence of an exception's message (torch's run on for lines), or its type
    when the message is empty (``EOFError()``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0].split(". ")[0][:limit]


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
    config = model_entry.get("config") if isinstance(model_entry, dict) else None
    if not isinstance(config, dict) or "_target_" not in config:
        raise SepkitError(f"{source}: the checkpoint has no model config to rebuild from")
    try:
        model = instantiate_stored(config)
    except SepkitError as error:  # a refused or unknown _target_
        raise SepkitError(f"{source}: {error}") from None
    except (TypeError, ValueError) as error:  # a stored argument of the wrong type or name
        raise SepkitError(
            f"{source}: cannot rebuild {config['_target_']} from the stored config "
            f"({_first_sentence(error, 200)}); the file was not written by sepkit train or "
            "was edited"
        ) from None
    if not isinstance(model, SeparationModel):
        raise SepkitError(f"{source}: {config['_target_']} is not a sepkit separation model")
    load_weights(model, model_entry.get("state_dict"), source)
    return model.eval()


def load_weights(
    model: torch.nn.Module, state_dict: Any, source: str, fix: str = "use its own checkpoint"
) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, or a SepkitError naming
    ``source`` and what does not fit (missing and unexpected names, other shapes); ``fix``
    ends the message."""
    if not isinstance(state_dict, dict) or not all(
        isinstance(value, torch.Tensor) for value in state_dict.values()
    ):
        raise SepkitError(f"{source}: its weights are not a dict of tensors (damaged file?)")
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError) as error:
        expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
        given = {name: tuple(value.shape) for name, value in state_dict.items()}
        missing = [name for name in expected if name not in given]
        unexpected = [name for name in given if name not in expected]
        reshaped = [n for n in expected if n in given and expected[n] != given[n]]
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if reshaped:
            name = reshaped[0]
            details.append(
                f"{len(reshaped)} of another shape (e.g. {name} {list(given[name])}, "
                f"the model's {list(expected[name])})"
            )
        found = ", ".join(details) or _first_sentence(error, 200)
        raise SepkitError(
            f"{source}: its weights do not fit {type(model).__name__} ({found}): the "
            f"checkpoint holds another architecture or size; {fix}"
        ) from None
