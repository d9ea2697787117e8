"""Open-Unmix's published models (umxhq, umx, umxl) and Open-Unmix model folders on disk.

The published models are those of sigsep/open-unmix-pytorch 1.3.0 (``openunmix/__init__.py``):
one state dict per target on Zenodo, loaded into one ``OpenUnmix`` network per target of an
``OpenUnmixSeparator``. A model folder is what Open-Unmix's training script writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sepkit.blocks.stft import bandwidth_to_max_bin, frequency_bins
from sepkit.checkpoint import load_weights, read_torch_file
from sepkit.errors import SepkitError
from sepkit.models.openunmix import OpenUnmixSeparator
from sepkit.models.pretrained.hub import load_published_weights

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
        """The published architecture (44.1 kHz stereo, STFT 4096/1024, 16 kHz bandwidth)
        with untrained weights."""
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


def load_open_unmix(name: str, device: torch.device | str = "cpu") -> OpenUnmixSeparator:
    """Open-Unmix's published model ``name`` (umxhq, umx, umxl) with its weights."""
    release = OPEN_UNMIX[name]
    model = release.build()
    for target in release.targets:
        load_published_weights(
            model.target_models[target], release.url(target), f"pretrained={name} ({target})"
        )
    return model.to(device).eval()


# -- Open-Unmix model folders (scripts/train.py's output) ----------------------------------


def is_open_unmix_folder(path: Path) -> bool:
    return path.is_dir() and (path / "separator.json").is_file()


def load_open_unmix_folder(
    folder: str | Path, device: torch.device | str = "cpu"
) -> OpenUnmixSeparator:
    """An Open-Unmix model folder as its training script saves it.

    ``separator.json`` gives nfft, nhop, sample_rate and nb_channels; each target has
    ``<target>.json`` (training arguments: hidden_size, nb_channels, unidirectional,
    bandwidth) and ``<target>.pth`` (state dict). The number of LSTM layers and the
    cropped bins come from the weights themselves; all targets must share one architecture.
    """
    folder = Path(folder).expanduser()
    stft = _read_separator_config(folder)
    targets = sorted(
        path.stem
        for path in folder.glob("*.json")
        if path.name != "separator.json" and _target_weights(folder, path.stem) is not None
    )
    if not targets:
        raise SepkitError(
            f"{folder}: no target found (a target needs <target>.json and <target>.pth)"
        )
    read = {target: _read_target(folder, target) for target in targets}
    architectures = {target: architecture for target, (_, architecture) in read.items()}
    first = architectures[targets[0]]
    if any(architecture != first for architecture in architectures.values()):
        raise SepkitError(
            f"{folder}: the targets differ in architecture ({architectures}); sepkit separates "
            "with one architecture for all targets"
        )
    cropped = first["max_bin"] < frequency_bins(stft["n_fft"])
    bandwidth = _bandwidth_for(
        first["max_bin"], first["bandwidth"], stft["sample_rate"], stft["n_fft"], folder
    )
    model = OpenUnmixSeparator(
        targets=targets,
        **stft,
        hidden_size=first["hidden_size"],
        nb_layers=first["nb_layers"],
        unidirectional=first["unidirectional"],
        bandwidth=bandwidth if cropped else None,
    )
    for target, (state, _) in read.items():
        load_weights(
            model.target_models[target],
            state,
            str(_target_weights(folder, target)),
            fix=f"the weights must be of the network {folder / target}.json describes",
        )
    return model.to(device).eval()


def _read_separator_config(folder: Path) -> dict[str, int]:
    """``separator.json``'s STFT and audio settings as ``OpenUnmixSeparator`` arguments."""
    try:
        separator = json.loads((folder / "separator.json").read_text())
        return {
            "sample_rate": int(separator.get("sample_rate", separator.get("rate"))),
            "nb_channels": int(separator["nb_channels"]),
            "n_fft": int(separator["nfft"]),
            "hop_length": int(separator["nhop"]),
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SepkitError(
            f"{folder}/separator.json: not an Open-Unmix separator config ({error!r}); it "
            "needs nfft, nhop, sample_rate and nb_channels"
        ) from None


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


def _read_target(folder: Path, target: str) -> tuple[dict, dict[str, Any]]:
    """A target's state dict and its architecture, from ``<target>.json`` and the weights."""
    weights = _target_weights(folder, target)
    try:
        arguments = json.loads((folder / f"{target}.json").read_text()).get("args", {})
    except (OSError, ValueError, AttributeError) as error:
        raise SepkitError(f"{folder / target}.json: cannot read it: {error}") from None
    state = read_torch_file(weights)
    if not isinstance(state, dict) or "input_mean" not in state:
        raise SepkitError(f"{weights}: not an Open-Unmix state dict (no input_mean)")
    architecture = {
        "hidden_size": int(arguments.get("hidden_size", state["fc1.weight"].shape[0])),
        "nb_layers": len([key for key in state if re.fullmatch(r"lstm\.weight_ih_l\d+", key)]),
        "unidirectional": bool(arguments.get("unidirectional", False)),
        "max_bin": int(state["input_mean"].shape[0]),
        "bandwidth": arguments.get("bandwidth"),
    }
    return state, architecture


def _bandwidth_for(
    max_bin: int, bandwidth: Any, sample_rate: int, n_fft: int, folder: Path
) -> float:
    """The bandwidth (Hz) that crops to ``max_bin`` bins: the training argument when it
    does, else the frequency of the last kept bin."""
    if bandwidth is not None and bandwidth_to_max_bin(sample_rate, n_fft, bandwidth) == max_bin:
        return float(bandwidth)
    candidate = (max_bin - 1) * sample_rate / n_fft
    if bandwidth_to_max_bin(sample_rate, n_fft, candidate) != max_bin:
        raise SepkitError(f"{folder}: cannot rebuild a model cropped to {max_bin} bins")
    return candidate
