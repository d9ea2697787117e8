"""Training augmentation: small pieces, each drawing its randomness from the item's generator.

A training item is built in two steps. ``choose_excerpts`` decides where each source is read
from (one track and offset for all, or, as Open-Unmix trains, an independent random track and
offset per source so every item is a new mixture). Then each ``SourceAugmentation`` transforms
the sources tensor (sources, channels, time) in turn, and the mixture is the sum of the result.

Every piece takes a ``numpy.random.Generator`` seeded from (seed, epoch, index), so an item is
the same in any DataLoader worker, on any DDP rank and after resuming. Pieces are plain
picklable classes so DataLoader workers can receive them.

Demucs v2 trains with a random shift of each source (``RandomShift``), a channel flip
(``RandomChannelSwap`` with probability 0.5), a sign flip (``RandomSignFlip``), a gain per
source (``RandomGain`` over U(0.25, 1.25)) and a remix of sources across the items of a batch
(``RemixBatch``, the one piece that works on a batch: the trainer applies a dataset's
``batch_augmentation`` on the device, after each step's seed is set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sepkit.errors import SepkitError

if TYPE_CHECKING:
    import torch


class SourceAugmentation(Protocol):
    """Transforms one item's sources (sources, channels, time) using the item's generator.

    A piece that shortens the item (``RandomShift``) says by how many frames in an
    ``extra_frames`` attribute, and the dataset reads that many more.
    """

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor: ...


def choose_excerpts(
    rng: np.random.Generator,
    track_frames: list[int],
    anchor_track: int,
    nb_sources: int,
    segment_frames: int,
    mix_tracks: bool,
) -> list[tuple[int, int]]:
    """Where to read each source of one training item: a (track index, start frame) per source.

    With ``mix_tracks`` every source comes from its own random track and offset (Open-Unmix's
    ``random_track_mix``); otherwise all sources come from ``anchor_track`` at one random offset,
    so the item is a real excerpt of that track. A track shorter than the segment is read from
    its start (the reader zero-pads the end).
    """

    def random_start(track: int) -> int:
        return int(rng.integers(0, max(track_frames[track] - segment_frames, 0) + 1))

    if mix_tracks:
        excerpts = []
        for _ in range(nb_sources):
            track = int(rng.integers(0, len(track_frames)))
            excerpts.append((track, random_start(track)))
        return excerpts
    start = random_start(anchor_track)
    return [(anchor_track, start)] * nb_sources


def _probability(value: float, key: str) -> float:
    """``value`` when it is a probability; else a SepkitError naming the config key."""
    if not 0 <= value <= 1:
        raise SepkitError(f"dataset.augmentation.{key}={value} is invalid: use a value in [0, 1]")
    return value


class RandomGain:
    """Scales each source by its own gain drawn uniformly from [low, high] (linear, not dB).

    Open-Unmix trains with U(0.25, 1.25).
    """

    def __init__(self, low: float = 0.25, high: float = 1.25):
        if not 0 <= low <= high:
            raise SepkitError(
                f"gain range [{low}, {high}] is invalid: need 0 <= "
                "dataset.augmentation.gain_min <= dataset.augmentation.gain_max"
            )
        self.low = low
        self.high = high

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        gains = rng.uniform(self.low, self.high, size=sources.shape[0])
        return sources * torch.as_tensor(gains, dtype=sources.dtype)[:, None, None]

    def __repr__(self) -> str:
        return f"RandomGain(low={self.low}, high={self.high})"


class RandomChannelSwap:
    """Swaps left and right of each source independently with ``probability``.

    Open-Unmix uses 0.5. Sources with one channel are left as they are (the draw still happens,
    so the rest of the item's randomness does not depend on the channel count).
    """

    def __init__(self, probability: float = 0.5):
        self.probability = _probability(probability, "channel_swap_probability")

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        swap = rng.random(sources.shape[0]) < self.probability
        if sources.shape[1] != 2 or not swap.any():
            return sources
        # one gather: row s reads channels (1, 0) where swapped, (0, 1) elsewhere
        channel_order = torch.as_tensor(np.where(swap[:, None], [1, 0], [0, 1]))
        return sources[torch.arange(sources.shape[0])[:, None], channel_order]

    def __repr__(self) -> str:
        return f"RandomChannelSwap(probability={self.probability})"


class RandomShift:
    """Reads each source from its own random offset (Demucs's random shift).

    The dataset reads ``max_shift`` frames more than the segment (``extra_frames``); each
    source keeps the segment starting at an offset drawn uniformly from [0, max_shift], so
    the sources of one excerpt are misaligned by up to ``max_shift`` frames (Demucs: one
    second). (sources, channels, segment + max_shift) -> (sources, channels, segment).
    """

    def __init__(self, max_shift: int):
        if max_shift < 0:
            raise SepkitError(
                f"dataset.augmentation.shift gives {max_shift} frames: use a value >= 0"
            )
        self.max_shift = int(max_shift)
        self.extra_frames = self.max_shift

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        length = sources.shape[-1] - self.max_shift
        offsets = rng.integers(0, self.max_shift + 1, size=sources.shape[0])
        return torch.stack(
            [source[:, offset : offset + length] for source, offset in zip(sources, offsets)]
        )

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class RandomSignFlip:
    """Inverts each source's polarity independently with ``probability`` (Demucs: 0.5)."""

    def __init__(self, probability: float = 0.5):
        self.probability = _probability(probability, "sign_flip_probability")

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        import torch

        flip = rng.random(sources.shape[0]) < self.probability
        signs = torch.as_tensor(np.where(flip, -1.0, 1.0), dtype=sources.dtype)
        return sources * signs[:, None, None]

    def __repr__(self) -> str:
        return f"RandomSignFlip(probability={self.probability})"


class RemixBatch:
    """Makes new mixtures from the sources of different items of a batch (Demucs's remix).

    The batch is cut into groups of ``group_size`` consecutive items (a shorter last group
    keeps the rest); within a group, each source (and what the mixture holds besides the
    targets) is taken from an item chosen by a random permutation of its own, and the
    mixture is their sum. Demucs uses groups of 4, so that the chance of two sources of one
    track staying together does not depend on the batch size.

    ``(mixture (batch, channels, time), sources (batch, sources, channels, time))`` -> the
    same shapes; randomness from torch's generator on the tensors' device (the trainer seeds
    it per step).
    """

    def __init__(self, group_size: int = 4):
        if group_size < 1:
            raise SepkitError(
                f"dataset.augmentation.remix_group_size={group_size}: use 1 or more (0 disables)"
            )
        self.group_size = int(group_size)

    def __call__(
        self, mixture: torch.Tensor, sources: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        rest = mixture - sources.sum(dim=1)  # non-target stems (zero when all are targets)
        streams = torch.cat([sources, rest.unsqueeze(1)], dim=1)
        batch, nb_streams = streams.shape[:2]
        order = torch.empty(batch, nb_streams, dtype=torch.long, device=streams.device)
        for start in range(0, batch, self.group_size):
            size = min(self.group_size, batch - start)
            scores = torch.rand(size, nb_streams, device=streams.device)
            order[start : start + size] = start + scores.argsort(dim=0)
        remixed = streams[order, torch.arange(nb_streams, device=streams.device)]
        return remixed.sum(dim=1), remixed[:, :-1].contiguous()

    def __repr__(self) -> str:
        return f"RemixBatch(group_size={self.group_size})"


@dataclass(frozen=True)
class Augmentation:
    """How a dataset augments its training items (the config's ``dataset.augmentation``).

    Every field's default leaves items as they are; ``OPEN_UNMIX`` holds the music datasets'
    defaults and the Demucs recipes set the rest (``configs/experiment/demucs_musdb.yaml``).

    Args:
        mix_tracks: each source from its own random track and offset (Open-Unmix's random
            track mix); False keeps all sources of an item in one excerpt of one track.
        gain_min, gain_max: range of the random linear gain per source (1, 1 disables).
        channel_swap_probability: probability of swapping left/right per source (0 disables).
        shift: seconds; each source starts at its own random offset up to this far into a
            read that much longer (Demucs: 1; 0 disables).
        sign_flip_probability: probability of inverting each source's polarity (Demucs: 0.5).
        remix_group_size: remix sources across the items of each training batch, within
            groups of this many items (Demucs: 4; 0 disables).
    """

    mix_tracks: bool = False
    gain_min: float = 1.0
    gain_max: float = 1.0
    channel_swap_probability: float = 0.0
    shift: float = 0.0
    sign_flip_probability: float = 0.0
    remix_group_size: int = 0

    @classmethod
    def of(cls, settings: Augmentation | Mapping[str, Any]) -> Augmentation:
        """``settings`` as an Augmentation: a config's mapping of fields, or one already."""
        if isinstance(settings, cls):
            return settings
        unknown = sorted(set(settings) - {field.name for field in fields(cls)})
        if unknown:
            raise SepkitError(
                f"dataset.augmentation: unknown keys {unknown}; the keys are "
                f"{[field.name for field in fields(cls)]}"
            )
        return cls(**settings)

    def source_pieces(self, sample_rate: int) -> list[SourceAugmentation]:
        """The chain applied to each item's sources; a piece that would do nothing (gain
        range [1, 1], probability 0, no shift) is left out. The shift comes first, so the
        other pieces work on the segment only."""
        pieces: list[SourceAugmentation] = []
        if self.shift != 0:
            pieces.append(RandomShift(round(self.shift * sample_rate)))
        if (self.gain_min, self.gain_max) != (1.0, 1.0):
            pieces.append(RandomGain(self.gain_min, self.gain_max))
        if self.channel_swap_probability != 0:
            pieces.append(RandomChannelSwap(self.channel_swap_probability))
        if self.sign_flip_probability != 0:
            pieces.append(RandomSignFlip(self.sign_flip_probability))
        return pieces

    def batch_piece(self) -> RemixBatch | None:
        """What the trainer applies to each training batch on the device (None: nothing)."""
        return RemixBatch(self.remix_group_size) if self.remix_group_size else None


#: No augmentation: the speech datasets' default.
NO_AUGMENTATION = Augmentation()

#: Open-Unmix's training augmentation, the music datasets' default.
OPEN_UNMIX = Augmentation(
    mix_tracks=True, gain_min=0.25, gain_max=1.25, channel_swap_probability=0.5
)
