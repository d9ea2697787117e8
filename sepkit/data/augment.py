"""Training augmentation: small pieces, each drawing its randomness from the item's generator.

A training item is built in two steps. ``choose_excerpts`` decides where each source is read
from (one track and offset for all, or, as Open-Unmix trains, an independent random track and
offset per source so every item is a new mixture). Then each ``SourceAugmentation`` transforms
the sources tensor (sources, channels, time) in turn, and the mixture is the sum of the result.

Every piece takes a ``numpy.random.Generator`` seeded from (seed, epoch, index), so an item is
the same in any DataLoader worker, on any DDP rank and after resuming. Pieces are plain
picklable classes so DataLoader workers can receive them. Demucs's augmentations (random shift,
channel flip, sign flip, per-source scale, remix within the batch) belong here too.
"""

from typing import Protocol

import numpy as np
import torch

from sepkit.errors import SepkitError


class SourceAugmentation(Protocol):
    """Transforms one item's sources (sources, channels, time) using the item's generator."""

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


class RandomGain:
    """Scales each source by its own gain drawn uniformly from [low, high] (linear, not dB).

    Open-Unmix trains with U(0.25, 1.25).
    """

    def __init__(self, low: float = 0.25, high: float = 1.25):
        if not 0 <= low <= high:
            raise SepkitError(
                f"gain range [{low}, {high}] is invalid: need 0 <= dataset.gain_min <= "
                "dataset.gain_max"
            )
        self.low = low
        self.high = high

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
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
        if not 0 <= probability <= 1:
            raise SepkitError(
                f"dataset.channel_swap_probability={probability} is invalid: use a value in [0, 1]"
            )
        self.probability = probability

    def __call__(self, sources: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        swap = rng.random(sources.shape[0]) < self.probability
        if sources.shape[1] != 2 or not swap.any():
            return sources
        # one gather: row s reads channels (1, 0) where swapped, (0, 1) elsewhere
        channel_order = torch.as_tensor(np.where(swap[:, None], [1, 0], [0, 1]))
        return sources[torch.arange(sources.shape[0])[:, None], channel_order]

    def __repr__(self) -> str:
        return f"RandomChannelSwap(probability={self.probability})"


def source_augmentations(
    gain_min: float = 1.0, gain_max: float = 1.0, channel_swap_probability: float = 0.0
) -> list[SourceAugmentation]:
    """The augmentation chain a dataset's options ask for; a piece that would do nothing
    (gain range [1, 1], swap probability 0) is left out."""
    pieces: list[SourceAugmentation] = []
    if (gain_min, gain_max) != (1.0, 1.0):
        pieces.append(RandomGain(gain_min, gain_max))
    if channel_swap_probability > 0:
        pieces.append(RandomChannelSwap(channel_swap_probability))
    return pieces
