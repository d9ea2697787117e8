"""The band-split RoFormers' training loss: L1 on waveforms plus L1 between the complex STFTs
of estimate and reference at several resolutions (Lu et al. 2023; the form of the
Music-Source-Separation-Training project and of audio-separator's model copies, whose
``forward(mixture, target)`` returns it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sepkit.losses.base import SeparationLoss


class MultiResolutionSTFTLoss(SeparationLoss):
    """``mean |estimate - reference|`` + ``stft_weight`` x the sum over ``window_sizes`` of
    ``mean |STFT(estimate) - STFT(reference)|`` (complex differences' moduli).

    Each resolution is a Hann window of that size with hop ``hop_length`` samples, FFT size
    ``max(window, min_n_fft)``, centred frames; every channel of every source is transformed
    on its own. The defaults are the published recipes': windows 4096 to 256, hop 147, FFT
    at least 2048 (the models' own STFT size), weight 1.
    """

    reads = ("waveforms",)

    def __init__(
        self,
        window_sizes: Sequence[int] = (4096, 2048, 1024, 512, 256),
        hop_length: int = 147,
        min_n_fft: int = 2048,
        stft_weight: float = 1.0,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        if not window_sizes or any(int(size) < 2 for size in window_sizes):
            raise ValueError(f"loss.window_sizes={list(window_sizes)}: give window lengths >= 2")
        self.window_sizes = [int(size) for size in window_sizes]
        self.hop_length = hop_length
        self.min_n_fft = min_n_fft
        self.stft_weight = stft_weight
        self.normalized = normalized

    def _spectrogram(self, signals: Tensor, window_size: int) -> Tensor:
        window = torch.hann_window(window_size, device=signals.device, dtype=signals.dtype)
        return torch.stft(
            signals,
            n_fft=max(window_size, self.min_n_fft),
            hop_length=self.hop_length,
            win_length=window_size,
            window=window,
            normalized=self.normalized,
            return_complex=True,
        )

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        estimates = outputs["waveforms"].float()
        targets = references["waveforms"].float()
        loss = (estimates - targets).abs().mean()
        flat_estimates = estimates.reshape(-1, estimates.shape[-1])
        flat_targets = targets.reshape(-1, targets.shape[-1])
        for window_size in self.window_sizes:
            difference = self._spectrogram(flat_estimates, window_size) - self._spectrogram(
                flat_targets, window_size
            )
            loss = loss + self.stft_weight * difference.abs().mean()
        return loss
