"""Spectrogram losses: L1 or MSE between estimated and target magnitudes.

Targets (Erdogan et al., ICASSP 2015, "Phase-sensitive and recognition-boosted speech
separation using deep recurrent neural networks"):

``magnitude`` (MSA)                   |S|
``phase_sensitive`` (PSA)             |S| cos(angle(S) - angle(X))
``truncated_phase_sensitive`` (tPSA)  PSA clipped to [0, |X|]

with S a source's complex STFT and X the mixture's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sepkit.losses.base import SeparationLoss

TARGETS = ("magnitude", "phase_sensitive", "truncated_phase_sensitive")
DISTANCES = ("l1", "mse")


def spectrogram_target(sources: Tensor, mixture: Tensor, target: str = "magnitude") -> Tensor:
    """Target magnitudes (batch, sources, channels, freq, frames) from complex source
    spectrograms of that shape and the complex mixture spectrogram (batch, channels,
    freq, frames)."""
    if target == "magnitude":
        return sources.abs()
    mixture = mixture.unsqueeze(1)
    # |S| cos(angle S - angle X) = Re(S conj(X)) / |X|
    projected = (sources * mixture.conj()).real / mixture.abs().clamp_min(1e-8)
    if target == "phase_sensitive":
        return projected
    if target == "truncated_phase_sensitive":
        return torch.minimum(projected.clamp_min(0.0), mixture.abs())
    raise ValueError(f"unknown spectrogram target {target!r}: use one of {list(TARGETS)}")


def distance(estimate: Tensor, target: Tensor, kind: str, reduce_dims: tuple[int, ...]) -> Tensor:
    """Mean absolute (``l1``) or squared (``mse``) difference over ``reduce_dims``."""
    difference = estimate - target
    if kind == "l1":
        return difference.abs().mean(reduce_dims)
    if kind == "mse":
        return difference.square().mean(reduce_dims)
    raise ValueError(f"unknown distance {kind!r}: use one of {list(DISTANCES)}")


class SpectrogramLoss(SeparationLoss):
    """L1 or MSE between the model's ``magnitudes`` and a target spectrogram, averaged
    over every source, channel, bin and frame (Open-Unmix: MSE on magnitudes)."""

    reads = ("magnitudes", "mixture_spectrogram")

    def __init__(self, distance: str = "mse", target: str = "magnitude") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"loss.distance={distance!r}: use one of {list(DISTANCES)}")
        if target not in TARGETS:
            raise ValueError(f"loss.target={target!r}: use one of {list(TARGETS)}")
        self.distance = distance
        self.target = target

    def _estimate_and_target(
        self, outputs: dict[str, Tensor], references: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Estimated and target magnitudes, both (batch, sources, channels, freq, frames)."""
        estimate = outputs["magnitudes"].float()
        target = spectrogram_target(
            references["spectrograms"], outputs["mixture_spectrogram"], self.target
        )
        return estimate, target.float()

    def per_source(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """Loss per example and source, each estimate against its own reference:
        (batch, sources)."""
        estimate, target = self._estimate_and_target(outputs, references)
        return distance(estimate, target, self.distance, reduce_dims=(2, 3, 4))

    def pairwise(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """Loss of every estimate against every reference: (batch, estimates, references),
        for permutation-invariant training (``sepkit.losses.pit``). The targets (phase
        sensitive or not) depend only on the reference and the mixture, so any estimate
        can be scored against any reference."""
        estimate, target = self._estimate_and_target(outputs, references)
        # one reference at a time: memory of one extra estimate-sized tensor, not S of them
        columns = [
            distance(estimate, target[:, [index]], self.distance, reduce_dims=(2, 3, 4))
            for index in range(target.shape[1])
        ]
        return torch.stack(columns, dim=-1)

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        return self.per_source(outputs, references).mean()
