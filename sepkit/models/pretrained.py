"""Published models by name (``pretrained=umxhq``), and Open-Unmix model folders on disk.

``PRETRAINED`` maps a name to a ``PretrainedModel``: a description, a licence and a loader.
This module fills it with Open-Unmix's published weights; other model families add theirs
with ``register_family`` (one line below, where the families are listed), so
``load_pretrained`` reaches every published model through one lookup.

Weights are fetched by ``torch.hub`` into its cache (``$TORCH_HOME/hub/checkpoints/``, by
default ``~/.cache/torch/hub/checkpoints/``) on first use and read from there afterwards.
Without a connection, a file placed there by hand under its published name is used.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sepkit.errors import SepkitError
from sepkit.models.base import SeparationModel
from sepkit.models.openunmix import OpenUnmixSeparator


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


PRETRAINED: dict[str, PretrainedModel] = {}


def register(model: PretrainedModel) -> None:
    """Make ``model`` reachable as ``pretrained=<model.name>``."""
    PRETRAINED[model.name] = model


def register_family(
    published: Mapping[str, Any], loader: Callable[[str, torch.device], SeparationModel]
) -> None:
    """Register every model of a family at once: ``published`` maps names to entries with a
    ``description`` (and optionally a ``licence_notice``), ``loader(name, device)`` loads
    one."""
    for name, entry in published.items():
        register(
            PretrainedModel(
                name=name,
                description=getattr(entry, "description", ""),
                load=lambda device, name=name: loader(name, device),
                licence_notice=getattr(entry, "licence_notice", None),
            )
        )


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_hub_state_dict(url: str, label: str) -> dict[str, torch.Tensor]:
    """A state dict from the torch hub cache, downloaded there first when missing.

    The file name's hash is not checked (as Open-Unmix's own loader), so a file placed in
    the cache by hand under the published name is used as it is.
    """
    cached = hub_cache_path(url)
    try:
        return torch.hub.load_state_dict_from_url(
            url,
            map_location="cpu",
            check_hash=False,
            progress=sys.stderr.isatty(),
            weights_only=True,
        )
    except OSError as error:  # no connection (URLError), HTTP error, unwritable cache
        if cached.exists():
            raise SepkitError(f"{label}: cannot read {cached}: {error}") from None
        reason = getattr(error, "reason", None) or error
        raise SepkitError(
            f"{label}: {url} is not in the torch hub cache and cannot be downloaded "
            f"({reason}); download it elsewhere and place it at {cached}"
        ) from None
    except Exception as error:  # a corrupt or foreign file in the cache
        first_line = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise SepkitError(
            f"{label}: {cached} is not a readable state dict ({first_line}); delete it to "
            "download it again"
        ) from None


def _load_weights(module: torch.nn.Module, state_dict: dict, label: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise SepkitError(
            f"{label}: weights do not fit the model: {str(error).splitlines()[0][:200]}"
        ) from None


# -- Open-Unmix (sigsep/open-unmix-pytorch 1.3.0, openunmix/__init__.py) -----------------

_ZENODO = "https://zenodo.org/records/{record}/files/{file}.pth"
OPEN_UNMIX_TARGETS = ["vocals", "drums", "bass", "other"]


@dataclass(frozen=True)
class OpenUnmixRelease:
    """One of Open-Unmix's published models: four target networks on Zenodo."""

    name: str
    record: int
    files: dict[str, str]  # target -> file name without .pth
    hidden_size: int
    description: str
    licence_notice: str | None = None
    targets: list[str] = field(default_factory=lambda: list(OPEN_UNMIX_TARGETS))

    def url(self, target: str) -> str:
        return _ZENODO.format(record=self.record, file=self.files[target])

    def build(self) -> OpenUnmixSeparator:
        """The published architecture (44.1 kHz stereo, STFT 4096/1024, 16 kHz bandwidth)."""
        return OpenUnmixSeparator(
            targets=self.targets,
            sample_rate=44100,
            nb_channels=2,
            n_fft=4096,
            hop_length=1024,
            hidden_size=self.hidden_size,
            nb_layers=3,
            unidirectional=False,
            bandwidth=16000.0,
        )


OPEN_UNMIX: dict[str, OpenUnmixRelease] = {
    release.name: release
    for release in [
        OpenUnmixRelease(
            "umxhq",
            3370489,
            {"bass": "bass-8d85a5bd", "drums": "drums-9619578f",
             "other": "other-b52fbbf7", "vocals": "vocals-b62c91ce"},
            hidden_size=512,
            description="Open-Unmix trained on MUSDB18-HQ (MIT licence)",
        ),
        OpenUnmixRelease(
            "umx",
            3370486,
            {"bass": "bass-646024d3", "drums": "drums-5a48008b",
             "other": "other-f8e132cc", "vocals": "vocals-c8df74a5"},
            hidden_size=512,
            description="Open-Unmix trained on MUSDB18 (MIT licence)",
        ),
        OpenUnmixRelease(
            "umxl",
            5069601,
            {"bass": "bass-2ca1ce51", "drums": "drums-69e0ebd4",
             "other": "other-c8c5b3e6", "vocals": "vocals-bccbd9aa"},
            hidden_size=1024,
            description="Open-Unmix L (hidden size 1024) trained on MUSDB18-HQ and extra data",
            licence_notice=(
                "CC BY-NC-SA 4.0 (non-commercial use only, share alike: "
                "https://creativecommons.org/licenses/by-nc-sa/4.0/)"
            ),
        ),
    ]
}  # fmt: skip


def load_open_unmix(name: str, device: torch.device | str = "cpu") -> SeparationModel:
    """Open-Unmix's published model ``name`` (umxhq, umx, umxl) with its weights."""
    release = OPEN_UNMIX[name]
    model = release.build()
    for target in release.targets:
        state_dict = load_hub_state_dict(release.url(target), f"pretrained={name} ({target})")
        _load_weights(model.target_models[target], state_dict, f"pretrained={name} ({target})")
    return model.to(device).eval()


register_family(OPEN_UNMIX, load_open_unmix)

# demucs 2.0.3's published models (demucs, demucs_extra, demucs48_hq, tasnet, tasnet_extra)
from sepkit.models import pretrained_demucs  # noqa: E402 (it imports this module lazily)

register_family(pretrained_demucs.PRETRAINED, pretrained_demucs.load_pretrained_demucs)


# -- Open-Unmix model folders (scripts/train.py's output) ----------------------------------


def is_open_unmix_folder(path: Path) -> bool:
    return path.is_dir() and (path / "separator.json").is_file()


def _target_weights(folder: Path, target: str) -> Path | None:
    """``<target>.pth``, else a hub-style ``<target>-<hash>.pth``."""
    exact = folder / f"{target}.pth"
    if exact.is_file():
        return exact
    hashed = sorted(
        path
        for path in folder.glob(f"{target}-*.pth")
        if re.fullmatch(r"[0-9a-f]+", path.stem[len(target) + 1 :])
    )
    return hashed[0] if hashed else None


def load_open_unmix_folder(
    folder: str | Path, device: torch.device | str = "cpu"
) -> SeparationModel:
    """An Open-Unmix model folder as its training script saves it.

    ``separator.json`` gives nfft, nhop, sample_rate and nb_channels; each target has
    ``<target>.json`` (training arguments: hidden_size, nb_channels, unidirectional,
    bandwidth) and ``<target>.pth`` (state dict). The number of LSTM layers and the
    cropped bins come from the weights themselves; all targets must share one architecture.
    """
    folder = Path(folder).expanduser()
    label = str(folder)
    try:
        separator = json.loads((folder / "separator.json").read_text())
        sample_rate = int(separator.get("sample_rate", separator.get("rate")))
        n_fft, hop_length = int(separator["nfft"]), int(separator["nhop"])
        nb_channels = int(separator["nb_channels"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SepkitError(
            f"{label}/separator.json: not an Open-Unmix separator config ({error!r}); it needs "
            "nfft, nhop, sample_rate and nb_channels"
        ) from None
    targets = sorted(
        path.stem
        for path in folder.glob("*.json")
        if path.name != "separator.json" and _target_weights(folder, path.stem) is not None
    )
    if not targets:
        raise SepkitError(
            f"{label}: no target found (a target needs <target>.json and <target>.pth)"
        )
    states: dict[str, dict] = {}
    architectures: dict[str, dict[str, Any]] = {}
    for target in targets:
        weights = _target_weights(folder, target)
        try:
            arguments = json.loads((folder / f"{target}.json").read_text()).get("args", {})
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as error:
            raise SepkitError(f"{label}: cannot read target {target!r}: {error}") from None
        if not isinstance(state, dict) or "input_mean" not in state:
            raise SepkitError(f"{weights}: not an Open-Unmix state dict (no input_mean)")
        states[target] = state
        max_bin = int(state["input_mean"].shape[0])
        nb_layers = len([k for k in state if re.fullmatch(r"lstm\.weight_ih_l\d+", k)])
        architectures[target] = {
            "hidden_size": int(arguments.get("hidden_size", state["fc1.weight"].shape[0])),
            "nb_layers": nb_layers,
            "unidirectional": bool(arguments.get("unidirectional", False)),
            "max_bin": max_bin,
            "bandwidth": arguments.get("bandwidth"),
        }
    first = architectures[targets[0]]
    if any(a != first for a in architectures.values()):
        raise SepkitError(
            f"{label}: the targets differ in architecture ({architectures}); sepkit separates "
            "with one architecture for all targets"
        )
    nb_bins = n_fft // 2 + 1
    bandwidth = _bandwidth_for(first["max_bin"], first["bandwidth"], sample_rate, n_fft, label)
    model = OpenUnmixSeparator(
        targets=targets,
        sample_rate=sample_rate,
        nb_channels=nb_channels,
        n_fft=n_fft,
        hop_length=hop_length,
        hidden_size=first["hidden_size"],
        nb_layers=first["nb_layers"],
        unidirectional=first["unidirectional"],
        bandwidth=bandwidth if first["max_bin"] < nb_bins else None,
    )
    for target in targets:
        _load_weights(model.target_models[target], states[target], f"{label} ({target})")
    return model.to(device).eval()


def _bandwidth_for(
    max_bin: int, bandwidth: Any, sample_rate: int, n_fft: int, label: str
) -> float | None:
    """The bandwidth (Hz) that crops to ``max_bin`` bins: the training argument when it
    does, else the frequency of the last kept bin."""
    from sepkit.blocks.stft import bandwidth_to_max_bin

    if bandwidth is not None and bandwidth_to_max_bin(sample_rate, n_fft, bandwidth) == max_bin:
        return float(bandwidth)
    candidate = (max_bin - 1) * sample_rate / n_fft
    if bandwidth_to_max_bin(sample_rate, n_fft, candidate) != max_bin:
        raise SepkitError(f"{label}: cannot rebuild a model cropped to {max_bin} bins")
    return candidate


# -- one lookup for all ----------------------------------------------------------------


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
