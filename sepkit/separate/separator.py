"""The ``Separator`` API: a model ready to separate arrays or files, and how ``sepkit
separate`` and ``sepkit eval`` build one from their config.

Everything about running a model on real audio, rather than about the model, is the same
for every model: models are driven only through ``SeparationModel.separate(mixture
(batch, channels, time), options)`` and ``valid_length``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sepkit.devices import autocast, select_device
from sepkit.errors import SepkitError
from sepkit.models.base import InferenceOptions, SeparationModel
from sepkit.models.pretrained import load_pretrained, load_trained
from sepkit.models.shifts import DEFAULT_MAX_SHIFT_SECONDS, apply_shifts
from sepkit.separate.audio_io import AudioReader, StemWriter, check_output_settings, progress_bar
from sepkit.separate.inputs import track_name
from sepkit.separate.streaming import ChannelLayout, SeparationStream, segment_stride

__all__ = [
    "DEFAULT_PRETRAINED",
    "SEPARATION_KEYS",
    "Separator",
    "model_name",
    "separator_from_config",
]

DEFAULT_PRETRAINED = "htdemucs"
# the keys of configs/separate.yaml and configs/eval.yaml that set how a model separates
SEPARATION_KEYS = (
    "niter", "softmask", "wiener_win_len", "segment", "overlap", "shifts", "seed", "device", "amp",
)  # fmt: skip


class Separator:
    """A model ready to separate: options, segments, device; stems as tensors or files.

        separator = Separator.from_pretrained("umxhq")
        stems = separator.separate(audio, sample_rate)   # {"vocals": (channels, time), ...}
        separator.separate_file("song.wav", "separated/umxhq")

    ``stems`` names what comes out, in order: the model's targets (and ``residual``
    with ``residual=True``), only ``targets`` of them if given, or ``<two_stems>`` and
    ``no_<two_stems>`` (the sum of all other sources). Every target of the model is always
    separated (they share the Wiener filter); ``targets`` only chooses what is returned.
    """

    def __init__(
        self,
        model: SeparationModel,
        *,
        targets: Sequence[str] | None = None,
        two_stems: str | None = None,
        residual: bool = False,
        niter: int = 1,
        softmask: bool = False,
        wiener_win_len: int | None = 300,
        segment: float | None = None,
        overlap: float | None = None,
        shifts: int = 0,
        seed: int = 0,
        device: str | torch.device = "auto",
        amp: bool = False,
    ) -> None:
        if niter < 0:
            raise SepkitError(f"niter={niter}: use 0 or more EM iterations")
        if wiener_win_len is not None and wiener_win_len < 1:
            raise SepkitError(f"wiener_win_len={wiener_win_len}: use a positive number or null")
        if overlap is not None and not 0 <= overlap <= 0.5:
            if model.segment_weighting == "cross_fade" or not 0 <= overlap < 1:
                largest = "0.5]" if model.segment_weighting == "cross_fade" else "1)"
                raise SepkitError(
                    f"overlap={overlap}: use a fraction of a segment in [0, {largest}"
                )
        if segment is not None and segment <= 0:
            raise SepkitError(f"segment={segment}: use a positive number of seconds or null")
        sources = [*model.targets, *(["residual"] if residual else [])]
        self.stems, self._stem_sources = _stem_plan(sources, targets, two_stems)
        self._stems_are_sources = self._stem_sources == [[i] for i in range(len(sources))]
        self.options = InferenceOptions(
            niter=niter, softmask=softmask, residual=residual, wiener_win_len=wiener_win_len
        )
        self.segment = model.segment_seconds if segment is None else segment
        self.overlap = model.segment_overlap if overlap is None else overlap
        self.shifts = shifts
        self.seed = seed
        self.amp = amp
        if not isinstance(device, torch.device):
            device = select_device(str(device), setting="device")
        self.device = device
        self.model = model.to(device).eval()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_PRETRAINED, **options: Any) -> Separator:
        """A published model (``htdemucs``, ``umxhq``, ...) or an Open-Unmix folder."""
        return cls(load_pretrained(name), **options)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, config: str | os.PathLike | None = None, **options: Any
    ) -> Separator:
        """A model trained by ``sepkit train`` (a checkpoint file or a run directory), or a
        Music-Source-Separation-Training checkpoint with its YAML (``config``, or beside it)."""
        return cls(load_trained(path, config), **options)

    def with_residual(self) -> Separator:
        """The same model and options, with the ``residual`` stem (the mixture minus the
        targets) added to the stems."""
        options = {name: getattr(self, name) for name in ("segment", "overlap", "shifts", "seed")}
        return Separator(
            self.model, residual=True, niter=self.options.niter, softmask=self.options.softmask,
            wiener_win_len=self.options.wiener_win_len, device=self.device, amp=self.amp,
            **options,
        )  # fmt: skip

    # -- separation ----------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """The model's sample rate (inputs at any rate are resampled to it and back)."""
        return self.model.sample_rate

    def segment_geometry(self) -> tuple[int, int]:
        """Segment and overlap lengths in samples at the model's rate."""
        segment_length = self.model.valid_length(max(1, round(self.segment * self.sample_rate)))
        stride = segment_stride(self.model.segment_weighting, segment_length, self.overlap)
        return segment_length, segment_length - stride

    def select_stems(self, sources: Tensor) -> Tensor:
        """(sources, channels, time) of the model -> (stems, channels, time) to write."""
        if self._stems_are_sources:
            return sources
        return torch.stack([sources[indices].sum(0) for indices in self._stem_sources])

    def stream(self, sample_rate: int, channels: int, label: str = "audio") -> SeparationStream:
        """A ``SeparationStream`` for audio at ``sample_rate`` with ``channels`` channels;
        ``label`` names the input in errors. Shifts are drawn from ``seed``, per stream."""
        layout = ChannelLayout(channels, self.model.nb_channels, label)
        generator = torch.Generator().manual_seed(self.seed)
        segment_length, overlap_length = self.segment_geometry()
        return SeparationStream(
            functools.partial(self._separate_segment, layout=layout, generator=generator),
            layout,
            sample_rate=sample_rate,
            model_rate=self.sample_rate,
            stems=len(self.stems),
            segment_length=segment_length,
            overlap_length=overlap_length,
            label=label,
            segment_weighting=self.model.segment_weighting,
        )

    def _separate_segment(
        self, segment: Tensor, layout: ChannelLayout, generator: torch.Generator
    ) -> Tensor:
        """(input channels, time) at the model's rate -> (stems, input channels, time); with
        ``shifts`` the mean of that many separations of randomly delayed copies."""
        batch = layout.to_model(segment).to(self.device)
        max_shift = int(DEFAULT_MAX_SHIFT_SECONDS * self.sample_rate)
        with torch.inference_mode(), autocast(self.device, self.amp):
            sources = apply_shifts(
                lambda mixture: self.model.separate(mixture, self.options),
                batch,
                self.shifts,
                max_shift,
                generator,
            )
        return self.select_stems(layout.from_model(sources.float().cpu()))

    def separate(self, audio: Tensor | np.ndarray, sample_rate: int) -> dict[str, Tensor]:
        """Stems of ``audio`` (channels, time) or (time,), float, at ``sample_rate`` Hz.

        Returns {stem: tensor} on the CPU, each shaped like ``audio`` (float32, same
        channels, length and rate), in ``stems`` order.
        """
        if not torch.is_tensor(audio):
            audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
        if audio.dim() not in (1, 2) or audio.shape[-1] == 0:
            raise SepkitError(
                f"audio must be (channels, time) or (time,) with samples, got shape "
                f"{tuple(audio.shape)}"
            )
        one_dimensional = audio.dim() == 1
        audio = audio.detach().float().cpu().reshape(-1, audio.shape[-1])
        stream = self.stream(int(sample_rate), audio.shape[0])
        stems = torch.cat([stream.push(audio), stream.finish()], dim=-1)
        if one_dimensional:
            stems = stems[:, 0]
        return dict(zip(self.stems, stems, strict=True))

    def separate_file(
        self,
        path: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        track: str | None = None,
        format: str = "wav",
        subtype: str = "PCM_16",
        clip: str = "rescale",
        overwrite: bool = False,
        progress: bool = False,
    ) -> dict[str, Path]:
        """Separate one file into ``<out_dir>/<track>/<stem>.<format>``.

        ``track`` defaults to the file's name without its suffix (for ``.../<track>/
        mixture.wav``, the folder's name). Reads and writes block by block; raises
        ``SepkitError`` (nothing written) for a bad file and ``StemsExist`` when stems are
        already there and ``overwrite`` is false. Returns {stem: path written}. Clipping
        warnings are printed to stderr.
        """
        path = Path(path)
        track = track or track_name(path)
        folder = Path(out_dir) / track
        check_output_settings(format, subtype, clip)
        with AudioReader(path) as reader:
            stream = self.stream(reader.sample_rate, reader.channels, str(path))
            writer = StemWriter(
                folder, self.stems, reader.sample_rate, reader.channels, format, subtype
            )
            writer.check_free(overwrite)
            with writer.open(), progress_bar(reader, track, progress) as bar:
                for block in reader.blocks():
                    writer.write(stream.push(block))
                    bar.update(block.shape[-1] / reader.sample_rate)
                writer.write(stream.finish())
                reader.check_complete()
                written = writer.commit(clip)
        for warning in writer.warnings:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        return written


def _stem_plan(
    sources: list[str], targets: Sequence[str] | None, two_stems: str | None
) -> tuple[list[str], list[list[int]]]:
    """Names of the stems to write, and for each the model sources it sums."""
    if targets is not None and two_stems is not None:
        raise SepkitError(
            "targets and two_stems both given: use targets=[...] for a subset or "
            "two_stems=<target> for <target> and no_<target>"
        )
    if two_stems is not None:
        if two_stems not in sources:
            raise SepkitError(f"two_stems={two_stems}: the model's stems are {sources}")
        index = sources.index(two_stems)
        others = [i for i in range(len(sources)) if i != index]
        return [two_stems, f"no_{two_stems}"], [[index], others]
    if targets is None:
        return list(sources), [[i] for i in range(len(sources))]
    targets = list(targets)
    unknown = [t for t in targets if t not in sources]
    if unknown or not targets:
        raise SepkitError(f"targets={targets}: choose among the model's stems {sources}")
    return targets, [[sources.index(t)] for t in targets]


def model_name(cfg: Any) -> str:
    """The ``<name>`` folder: ``name``, else the pretrained model's name, else the
    checkpoint's run directory (with its parent's name when it is only a time stamp)."""
    if cfg.name:
        return str(cfg.name)
    if cfg.checkpoint:
        path = Path(cfg.checkpoint).expanduser().resolve()
        if path.is_file():
            run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
            if run_dir is None:
                return path.stem
            path = run_dir
        name = path.name
        if not any(character.isalpha() for character in name) and path.parent.name:
            name = f"{path.parent.name}_{name}"
        return name
    return Path(str(cfg.pretrained or DEFAULT_PRETRAINED)).name


def separator_from_config(cfg: Any, **options: Any) -> Separator:
    """The ``Separator`` of ``cfg.checkpoint`` or ``cfg.pretrained`` (default htdemucs) with the
    separation keys of ``cfg``, plus ``options``; shared by separate and eval."""
    options = {key: cfg[key] for key in SEPARATION_KEYS} | options
    if cfg.checkpoint and cfg.pretrained:
        raise SepkitError(
            f"checkpoint={cfg.checkpoint} and pretrained={cfg.pretrained}: choose one model"
        )
    if cfg.config and not cfg.checkpoint:
        raise SepkitError(
            f"config={cfg.config} is the YAML of a Music-Source-Separation-Training checkpoint: "
            "give the checkpoint too (checkpoint=<file>.ckpt)"
        )
    if cfg.checkpoint:
        return Separator.from_checkpoint(cfg.checkpoint, cfg.config, **options)
    return Separator.from_pretrained(cfg.pretrained or DEFAULT_PRETRAINED, **options)
