"""Losses on waveforms: L1 or MSE (Demucs, Wave-U-Net) and negative SI-SDR (TasNet family).

Each loss reads the model's ``waveforms`` (batch, sources, channels, time) and the true
sources of the same shape, and offers three views:

``forward(outputs, references)``   a scalar: the mean over examples and sources, each
                                   estimate compared with the reference of the same index
``per_source(...)``                (batch, sources) in that fixed order
``pairwise(...)``                  (batch, estimates, references): every estimate against
                                   every reference, what a permutation-invariant wrapper
                                   minimises over assignments
"""

from __future__ import annotations

from torch import Tensor

from sepkit.losses.base import SeparationLoss
from sepkit.metrics.ratios import si_sdr

DISTANCES = ("l1", "mse")


class WaveformLoss(SeparationLoss):
    """Mean absolute (``l1``) or squared (``mse``) sample difference.

    ``forward`` averages over every sample of every channel, source and example: with
    ``l1`` it is Demucs's training loss (``torch.nn.L1Loss`` on the waveforms); with
    ``mse``, Wave-U-Net's.
    """

    reads = ("waveforms",)

    def __init__(self, distance: str = "l1") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"loss.distance={distance!r}: use one of {list(DISTANCES)}")
        self.distance = distance

    def _mean_distance(self, difference: Tensor) -> Tensor:
        values = difference.abs() if self.distance == "l1" else difference.square()
        return values.mean(dim=(-2, -1))

    def per_source(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, sources)."""
        return self._mean_distance(outputs["waveforms"].float() - references["waveforms"].float())

    def pairwise(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, estimates, references)."""
        estimates = outputs["waveforms"].float().unsqueeze(2)
        targets = references["waveforms"].float().unsqueeze(1)
        return self._mean_distance(estimates - targets)

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        return self.per_source(outputs, references).mean()


class ScaleInvariantSDRLoss(SeparationLoss):
    """Negative SI-SDR (dB, ``sepkit.metrics.ratios.si_sdr``) between estimated and true
    waveforms, the mean over channels (each channel scored on its own).

    SI-SNR, the TasNet and Conv-TasNet papers' objective, is this measure: zero-mean
    signals (``zero_mean``) and the reference scaled to best fit the estimate; ``eps``
    keeps silent references and perfect estimates finite. Speech separation wraps it in
    permutation-invariant training through ``pairwise``.
    """

    reads = ("waveforms",)

    def __init__(self, zero_mean: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        self.zero_mean = zero_mean
        self.eps = eps

    def per_source(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, sources)."""
        sdr = si_sdr(
            outputs["waveforms"].float(), references["waveforms"].float(), self.zero_mean, self.eps
        )
        return -sdr.mean(dim=-1)

    def pairwise(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, estimates, references)."""
        sdr = si_sdr(
            outputs["waveforms"].float().unsqueeze(2),
            references["waveforms"].float().unsqueeze(1),
            self.zero_mean,
            self.eps,
        )
        return -sdr.mean(dim=-1)

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        return self.per_source(outputs, references).mean()
