"""Fine-tuning: start a new run from trained weights (``init=``) and keep some of them fixed
(``freeze=``).

``init`` names a checkpoint of ``sepkit train`` (file or run directory), a
Music-Source-Separation-Training checkpoint with its YAML beside it, or a published model
(``pretrained=`` names, e.g. htdemucs). Its weights load into the model the config builds, so
the config must build the same architecture: when it does not, the error lists the model
settings to add. The run then trains like any other; ``resume=`` continues it from its own
checkpoints.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from torch import nn

from sepkit.checkpoint import load_weights
from sepkit.errors import SepkitError
from sepkit.models.base import SeparationModel
from sepkit.models.pretrained import load_pretrained, load_trained


def initial_model(source: str) -> SeparationModel:
    """The trained model ``init=`` names: a checkpoint file or run directory of sepkit train,
    else a published model's name."""
    path = Path(source).expanduser()
    if path.is_file() or (path / "checkpoints").is_dir():
        return load_trained(path)
    try:
        return load_pretrained(source)
    except SepkitError as error:  # its message names the key pretrained=
        message = str(error).replace(f"pretrained={source}", f"init={source}", 1)
        raise SepkitError(f"{message}; or a checkpoint of sepkit train") from None


def _setting(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_setting(item) for item in value) + "]"
    return "null" if value is None else str(value)


def architecture_differences(model: SeparationModel, trained: SeparationModel) -> list[str]:
    """The ``model.<key>=<value>`` overrides that make ``model``'s constructor call the one
    that built ``trained``."""
    wanted, built = trained.config, model.config
    return [
        f"model.{key}={_setting(value)}"
        for key, value in wanted.items()
        if key not in ("_target_", "targets") and key in built and built[key] != value
    ]


def load_initial_weights(model: SeparationModel, source: str) -> None:
    """Copy the weights of the trained model ``source`` names into ``model``, or a SepkitError
    saying which settings make the two architectures the same.

    Settings that leave the weights' shapes alone (dropout, a training segment) may differ:
    fine-tuning often changes them. The targets must be the same, in the same order, since
    each output channel is one target's.
    """
    trained = initial_model(source)
    if type(trained) is not type(model):
        raise SepkitError(
            f"init={source} is a {trained.name} model but the config builds {model.name}: "
            f"choose the model= option whose _target_ is {trained.config['_target_']}"
        )
    if list(trained.targets) != list(model.targets):
        raise SepkitError(
            f"init={source} separates {list(trained.targets)} but the model {model.targets}: "
            f"add dataset.targets={_setting(trained.targets)}"
        )
    try:
        load_weights(model, trained.state_dict(), f"init={source}")
    except SepkitError:
        differences = architecture_differences(model, trained)
        if not differences:
            raise
        raise SepkitError(
            f"init={source} was trained with other settings than this model's: add "
            f"{' '.join(differences)}"
        ) from None


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Stop training the parameters whose names match any of ``patterns`` (shell-style, e.g.
    ``encoder.*``); a SepkitError for a pattern that matches none. The frozen names."""
    names = [name for name, _ in model.named_parameters()]
    frozen: list[str] = []
    for pattern in patterns:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            prefixes = sorted({name.split(".")[0] for name in names})
            raise SepkitError(
                f"freeze={pattern}: no parameter of the model matches; its parameter names "
                f"start with {', '.join(prefixes)} (e.g. {names[0]})"
            )
        frozen += [name for name in matched if name not in frozen]
    parameters = dict(model.named_parameters())
    for name in frozen:
        parameters[name].requires_grad_(False)
    if len(frozen) == len(names):
        raise SepkitError(f"freeze={patterns}: every parameter is frozen, nothing would train")
    return frozen
