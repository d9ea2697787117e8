"""Tracks, partial reads, and the training and validation sets every dataset shares.

A dataset class (MUSDB18, a folder of stems, wsj0-2mix, ...) only finds its tracks: it
subclasses ``SeparationData`` and implements ``_split_tracks(split)``, returning checked
``Track`` records (``_track``, see ``sepkit.data.tracks``). Everything else (the held-out
validation fallback, how segments are drawn, augmented and read) is here, once.

Items are ``(mixture, sources)`` float32 tensors: mixture (channels, time) and sources
(targets, channels, time), in the order of the dataset's ``targets``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import soundfile

from sepkit.audio import convert_channels
from sepkit.data.augment import OPEN_UNMIX, Augmentation, SourceAugmentation, choose_excerpts
from sepkit.data.cache import cache_root
from sepkit.data.tracks import Track, checked_track
from sepkit.errors import SepkitError

if TYPE_CHECKING:
    import torch


def read_audio(path: Path, start: int, frames: int, nb_channels: int) -> torch.Tensor:
    """Read ``frames`` frames from ``start`` of one file as float32 (nb_channels, frames).

    Only the requested frames are decoded (soundfile seeks). Frames past the end of the file
    are zeros. One channel is duplicated to ``nb_channels``; with ``nb_channels == 1``, several
    channels are averaged. NaN or infinite samples are a SepkitError naming the file.
    """
    import torch

    with soundfile.SoundFile(str(path)) as file:
        if start < file.frames:
            file.seek(start)
            audio = file.read(frames, dtype="float32", always_2d=True, fill_value=0.0)
        else:
            audio = np.zeros((frames, file.channels), dtype=np.float32)
        sample_rate = file.samplerate
    finite = np.isfinite(audio)
    if not finite.all():  # one NaN would make every loss and statistic NaN
        first = start + int(np.argmin(finite.all(axis=1)))
        raise SepkitError(
            f"{path}: NaN or infinite samples (at {first / sample_rate:.2f} s); "
            "the file is damaged or was written from invalid data: replace it or remove "
            "its track"
        )
    audio = convert_channels(audio, nb_channels, path)
    return torch.from_numpy(np.ascontiguousarray(audio.T))


def read_track(
    track: Track, start: int = 0, frames: int | None = None, *, nb_channels: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a stretch of ``track``: mixture (channels, time), sources (targets, channels, time).

    ``start`` and ``frames`` count frames at ``track.sample_rate``; ``frames=None`` reads to the
    end. Only the requested frames are decoded; frames past the end are zeros. Both tensors
    are float32. The sources are the track's targets; the mixture is the mixture file, or the
    sum of all stems (targets and non-targets) when the track has none.
    """
    import torch

    if frames is None:
        frames = max(track.num_frames - start, 0)
    sources = torch.stack(
        [read_audio(path, start, frames, nb_channels) for path in track.sources.values()]
    )
    if track.mixture is not None:
        mixture = read_audio(track.mixture, start, frames, nb_channels)
    else:
        mixture = sources.sum(dim=0)
        for path in track.non_targets.values():
            mixture = mixture + read_audio(path, start, frames, nb_channels)
    return mixture, sources


def held_out_split(
    tracks: list[Track], fraction: float, seed: int, folder: Path | str
) -> tuple[list[Track], list[Track]]:
    """Split ``tracks`` into (training, validation), holding out a seeded ``fraction``.

    At least one track is held out and at least one kept; the choice depends only on the
    seed and the track names, so every run and process agrees on it.
    """
    if len(tracks) < 2:
        raise SepkitError(
            f"{folder}: {len(tracks)} training track(s), too few to hold one out for "
            "validation: add tracks or a validation folder"
        )
    ordered = sorted(tracks, key=lambda track: track.name)
    nb_valid = min(max(1, round(fraction * len(ordered))), len(ordered) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(ordered))[:nb_valid].tolist())
    training = [track for index, track in enumerate(ordered) if index not in chosen]
    validation = [track for index, track in enumerate(ordered) if index in chosen]
    return training, validation


def _epoch_and_index(key: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(key, tuple):
        epoch, index = key
        return int(epoch), int(index)
    return 0, int(key)


class TrainingSegments:
    """Random training segments, augmented; deterministic in (seed, epoch, index).

    ``dataset[index]`` or ``dataset[epoch, index]`` returns (mixture (channels, time),
    sources (targets, channels, time)) float32, ``segment_frames`` read (less the
    ``extra_frames`` of a shortening augmentation such as a random shift). All randomness of an
    item comes from ``numpy.random.default_rng([seed, epoch, index])``, so a sampler that
    yields (epoch, index) pairs gets new segments every epoch and the same ones on resume, in
    any worker or rank. Item ``index`` belongs to track ``index // samples_per_track``. Every
    stem of the mixture is read (targets and non-targets), augmented, and summed into the
    mixture; the sources returned are the targets.
    """

    def __init__(
        self,
        tracks: list[Track],
        segment_frames: int,
        samples_per_track: int,
        nb_channels: int,
        seed: int,
        mix_tracks: bool,
        augmentations: list[SourceAugmentation],
    ):
        if not tracks:
            raise SepkitError("no training tracks: check dataset.root and its training split")
        stem_names = list(tracks[0].stems)
        for track in tracks:
            if list(track.stems) != stem_names:
                raise SepkitError(
                    f"track {track.name!r} has stems {sorted(track.stems)}, but "
                    f"{tracks[0].name!r} has {sorted(stem_names)}: give every track the same stems"
                )
        self.tracks = tracks
        self.stem_names = stem_names
        self.nb_targets = len(tracks[0].sources)
        self.segment_frames = segment_frames
        self.samples_per_track = samples_per_track
        self.nb_channels = nb_channels
        self.seed = seed
        self.mix_tracks = mix_tracks
        self.augmentations = list(augmentations)

    def __len__(self) -> int:
        return self.samples_per_track * len(self.tracks)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        epoch, index = _epoch_and_index(key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} training items")
        rng = np.random.default_rng([self.seed, epoch, index])
        excerpts = choose_excerpts(
            rng,
            [track.num_frames for track in self.tracks],
            anchor_track=index // self.samples_per_track,
            nb_sources=len(self.stem_names),
            segment_frames=self.segment_frames,
            mix_tracks=self.mix_tracks,
        )
        stems = torch.stack(
            [
                read_audio(
                    self.tracks[track].stems[name], start, self.segment_frames, self.nb_channels
                )
                for name, (track, start) in zip(self.stem_names, excerpts)
            ]
        )
        for augment in self.augmentations:
            stems = augment(stems, rng)
        return stems.sum(dim=0), stems[: self.nb_targets].contiguous()


class ValidationSegments:
    """Deterministic validation items: whole tracks, or fixed segments of them.

    With ``segment_frames=None`` item i is track i whole (lengths differ: batch size 1).
    Otherwise each track is cut into ceil(num_frames / segment_frames) segments starting
    every ``segment_frames`` frames, the last one moved back to end at the track's end (a
    track shorter than a segment gives one zero-padded segment). Items are (mixture (channels,
    time), sources (targets, channels, time)) float32, read from the mixture file.
    """

    def __init__(self, tracks: list[Track], nb_channels: int, segment_frames: int | None = None):
        if not tracks:
            raise SepkitError("no validation tracks: check dataset.root and its validation split")
        self.tracks = tracks
        self.nb_channels = nb_channels
        self.segment_frames = segment_frames
        self.items: list[tuple[int, int, int | None]] = []
        for number, track in enumerate(tracks):
            if segment_frames is None:
                self.items.append((number, 0, None))
                continue
            count = max(1, -(-track.num_frames // segment_frames))
            for segment in range(count):
                start = max(0, min(segment * segment_frames, track.num_frames - segment_frames))
                self.items.append((number, start, segment_frames))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        number, start, frames = self.items[index]
        return read_track(self.tracks[number], start, frames, nb_channels=self.nb_channels)


class SeparationData:
    """Base of every dataset: its tracks per split and the torch datasets built from them.

    Subclasses find and check the tracks of a split in ``_split_tracks(split)`` (split is
    "train", "valid" or "test"; None for "valid" when the dataset has no validation split,
    and a seeded ``valid_fraction`` of the training tracks is then held out). Each split is
    found on its first request, once, in the process that asks (the main process, when the
    trainer builds its DataLoaders), so bad files are reported before any worker starts.

    The arguments every dataset takes (a subclass passes on the ``**options`` it does not
    name; the defaults are a music set's, the speech sets change them):

    Args:
        targets: the stems the model separates, in the order the sources are served.
        segment: training segment length in seconds; None: the model's own
            (``SeparationModel.training_segment``, which ``training_set`` is given).
        sample_rate: rate the data is served at, in Hz; other rates are resampled into the
            cache once.
        nb_channels: channels served (mono files are duplicated; 1 averages several).
        samples_per_track: training items per track per epoch (Open-Unmix: 64).
        valid_fraction: fraction of training tracks held out when the dataset has no
            validation split.
        valid_segment: None validates on whole tracks; seconds cuts them into fixed segments.
        seed: seeds the training segments (with epoch and index) and the held-out choice.
        cache_dir: cache folder (default ``$SEPKIT_CACHE`` or ``~/.cache/sepkit``).
        augmentation: how training items are augmented, an ``Augmentation`` or a mapping of
            its fields (``sepkit.data.augment``); default Open-Unmix's: random track mix,
            gains U(0.25, 1.25), channel swap with probability 0.5.
    """

    sample_rate: int
    targets: list[str]
    nb_channels: int
    # each source has its place and name (music stems); the speech sets' speakers have none
    ordered_sources: ClassVar[bool] = True

    def __init__(
        self,
        *,
        targets: list[str],
        segment: float | None = None,
        sample_rate: int = 44100,
        nb_channels: int = 2,
        samples_per_track: int = 64,
        valid_fraction: float = 0.1,
        valid_segment: float | None = None,
        seed: int = 42,
        cache_dir: str | None = None,
        augmentation: Augmentation | Mapping[str, Any] = OPEN_UNMIX,
    ):
        targets = list(targets)
        if not targets or len(set(targets)) != len(targets):
            raise SepkitError(f"dataset.targets={targets} must name each target once")
        for name, value in [("segment", segment), ("sample_rate", sample_rate)]:
            if value is not None and value <= 0:
                raise SepkitError(f"dataset.{name}={value} must be positive")
        for name, value in [("nb_channels", nb_channels), ("samples_per_track", samples_per_track)]:
            if value < 1:
                raise SepkitError(f"dataset.{name}={value} must be at least 1")
        if not 0 < valid_fraction < 1:
            raise SepkitError(f"dataset.valid_fraction={valid_fraction} must be between 0 and 1")
        if valid_segment is not None and valid_segment <= 0:
            raise SepkitError(f"dataset.valid_segment={valid_segment} must be positive or null")
        self.targets = targets
        self.segment = None if segment is None else float(segment)
        self.sample_rate = int(sample_rate)
        self.nb_channels = int(nb_channels)
        self.samples_per_track = int(samples_per_track)
        self.valid_fraction = float(valid_fraction)
        self.valid_segment = valid_segment
        self.seed = int(seed)
        self.cache = cache_root(cache_dir)
        self.augmentation = Augmentation.of(augmentation)
        self.augmentations = self.augmentation.source_pieces(self.sample_rate)
        # applied by the trainer to each training batch on the device (None: nothing)
        self.batch_augmentation = self.augmentation.batch_piece()
        self._tracks: dict[str, list[Track]] = {}

    def _split_tracks(self, split: str) -> list[Track] | None:
        """The checked tracks of ``split`` ("train", "valid" or "test"), sorted by name; for
        "valid", None when the dataset has no validation split."""
        raise NotImplementedError

    def _split_location(self, split: str) -> str:
        """Where ``split`` lives, for error messages."""
        return f"the {split} split of {type(self).__name__}"

    def _track(
        self, name: str, folder: Path, stems: dict[str, Path], mixture: Path | None
    ) -> Track:
        """The checked Track of one song or utterance from its files: ``stems`` maps every
        stem of the mixture (the targets and the rest) to its file; ``mixture`` is the mixture
        file, None when the mixture is the sum of the stems."""
        return checked_track(
            name,
            folder,
            sources={target: stems[target] for target in self.targets},
            non_targets={stem: path for stem, path in stems.items() if stem not in self.targets},
            mixture=mixture,
            sample_rate=self.sample_rate,
            nb_channels=self.nb_channels,
            cache=self.cache,
        )

    def _split(self, split: str) -> list[Track]:
        if split in self._tracks:
            return self._tracks[split]
        if split == "test":
            self._tracks["test"] = self._split_tracks("test") or []
            return self._tracks["test"]
        training = self._split_tracks("train") or []
        validation = self._split_tracks("valid")
        if validation is None:
            training, validation = held_out_split(
                training, self.valid_fraction, self.seed, self._split_location("train")
            )
        self._tracks["train"], self._tracks["valid"] = training, validation
        return self._tracks[split]

    def train_tracks(self) -> list[Track]:
        return self._split("train")

    def valid_tracks(self) -> list[Track]:
        return self._split("valid")

    def test_tracks(self) -> list[Track]:
        return self._split("test")

    def training_set(self, model_segment: float = 6.0) -> TrainingSegments:
        """Random augmented segments of ``segment`` seconds, or of ``model_segment`` (the
        model's ``training_segment``) when ``segment`` is None: ``samples_per_track`` items
        per training track. Pieces that shorten an item (a random shift) get the extra frames
        they consume."""
        seconds = model_segment if self.segment is None else self.segment
        extra_frames = sum(getattr(piece, "extra_frames", 0) for piece in self.augmentations)
        return TrainingSegments(
            self.train_tracks(),
            segment_frames=max(1, round(seconds * self.sample_rate)) + extra_frames,
            samples_per_track=self.samples_per_track,
            nb_channels=self.nb_channels,
            seed=self.seed,
            mix_tracks=self.augmentation.mix_tracks,
            augmentations=self.augmentations,
        )

    def validation_set(self) -> ValidationSegments:
        """Whole validation tracks, or fixed ``valid_segment``-second segments when set."""
        frames = None
        if self.valid_segment is not None:
            frames = max(1, round(self.valid_segment * self.sample_rate))
        return ValidationSegments(self.valid_tracks(), self.nb_channels, frames)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(targets={self.targets}, sample_rate={self.sample_rate}, "
            f"nb_channels={self.nb_channels}, segment={self.segment})"
        )
