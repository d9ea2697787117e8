"""Open-Unmix (Stöter et al., JOSS 2019), one network per target.

``OpenUnmix`` is one target's network with the constructor names, state-dict keys and
output of ``openunmix.model.OpenUnmix`` 1.3.0, so published weights load with
``strict=True``. ``OpenUnmixSeparator`` is the sepkit model: an STFT, one ``OpenUnmix``
per target, and the Wiener filter at separation time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sepkit.blocks.masks import Mask
from sepkit.blocks.normalization import FeatureBatchNorm, RunningStatistics, ShiftScale
from sepkit.blocks.recurrent import recurrent_stack
from sepkit.blocks.stft import bandwidth_to_max_bin
from sepkit.models.base import SpectrogramModel, alias_state_dict_keys

# our block names -> the parameter names of openunmix.model.OpenUnmix
_PUBLISHED_NAMES = {
    "input_normalization.shift": "input_mean",
    "input_normalization.scale": "input_scale",
    "output_normalization.scale": "output_scale",
    "output_normalization.shift": "output_mean",
}


class OpenUnmix(nn.Module):
    """One target's Open-Unmix network: mixture magnitude in, target magnitude out.

    Input and output are magnitude spectrograms (batch, channels, bins, frames). The
    input is cropped to ``max_bin`` bins, standardised, compressed by a fully connected
    layer to ``hidden_size`` features, passed through a 3-layer BLSTM with a skip
    connection, expanded back to ``nb_bins`` per channel and applied as a non-negative
    mask to the uncropped input.
    """

    def __init__(
        self,
        nb_bins: int = 4096,
        nb_channels: int = 2,
        hidden_size: int = 512,
        nb_layers: int = 3,
        unidirectional: bool = False,
        max_bin: int | None = None,
    ) -> None:
        super().__init__()
        self.nb_output_bins = nb_bins
        self.nb_bins = max_bin or nb_bins
        self.nb_channels = nb_channels
        self.hidden_size = hidden_size

        self.input_normalization = ShiftScale(self.nb_bins, shift_first=True)
        self.fc1 = nn.Linear(self.nb_bins * nb_channels, hidden_size, bias=False)
        self.bn1 = FeatureBatchNorm(hidden_size)
        self.lstm = recurrent_stack(
            input_size=hidden_size,
            # a bidirectional stack splits the width between its two directions
            hidden_size=hidden_size if unidirectional else hidden_size // 2,
            num_layers=nb_layers,
            bidirectional=not unidirectional,
            dropout=0.4,
        )
        self.fc2 = nn.Linear(2 * hidden_size, hidden_size, bias=False)
        self.bn2 = FeatureBatchNorm(hidden_size)
        self.fc3 = nn.Linear(hidden_size, self.nb_output_bins * nb_channels, bias=False)
        self.bn3 = FeatureBatchNorm(self.nb_output_bins * nb_channels)
        self.output_normalization = ShiftScale(
            self.nb_output_bins, shift_first=False, shift=1.0, scale=1.0
        )
        self.mask = Mask("relu")
        alias_state_dict_keys(self, _PUBLISHED_NAMES)

    def forward(self, magnitude: Tensor) -> Tensor:
        """(batch, channels, bins, frames) -> (batch, channels, bins, frames)."""
        mixture = magnitude
        # (frames, batch, channels, bins): the recurrent stack runs along frames
        x = magnitude.permute(3, 0, 1, 2)
        frames, batch, channels, _ = x.shape

        x = self.input_normalization(x[..., : self.nb_bins])
        x = self.fc1(x.reshape(frames, batch, channels * self.nb_bins))
        x = torch.tanh(self.bn1(x))  # (frames, batch, hidden)

        recurrent, _ = self.lstm(x)
        x = torch.cat([x, recurrent], dim=-1)  # skip connection: (frames, batch, 2 hidden)

        x = torch.relu(self.bn2(self.fc2(x)))
        x = self.bn3(self.fc3(x))  # (frames, batch, channels * nb_output_bins)
        x = x.reshape(frames, batch, channels, self.nb_output_bins)
        x = self.output_normalization(x)

        # back to (batch, channels, bins, frames) with one blocked transpose: a product read
        # through the transposed strides would jump through memory for every element
        return self.mask(x).permute(1, 2, 3, 0).contiguous() * mixture


class OpenUnmixSeparator(SpectrogramModel):
    """Open-Unmix for several targets: one ``OpenUnmix`` network per target.

    The networks share the STFT (``n_fft`` 4096, hop 1024, Hann, centred) and the input
    statistics (mean and deviation per bin of the training mixtures' channel-averaged
    magnitudes) but nothing else: training them together is training each alone, with
    one validation loss (the mean over targets) driving the schedule and early stopping.
    ``bandwidth`` (Hz) crops the networks' input as Open-Unmix's ``max_bin``: 16 kHz for
    the published models.
    """

    # The BLSTM gains from long context, and separating costs about 12 MB per second of
    # segment with the published sizes (sepkit.separate; benchmarks/separate.py); 6 s of
    # cross-fade give each segment's edges context enough.
    segment_seconds = 60.0
    segment_overlap = 0.1

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 44100,
        nb_channels: int = 2,
        n_fft: int = 4096,
        hop_length: int = 1024,
        hidden_size: int = 512,
        nb_layers: int = 3,
        unidirectional: bool = False,
        bandwidth: float | None = 16000.0,
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop_length)
        max_bin = bandwidth_to_max_bin(sample_rate, n_fft, bandwidth) if bandwidth else None
        self.target_models = nn.ModuleDict(
            {
                target: OpenUnmix(
                    nb_bins=self.stft.nb_bins,
                    nb_channels=nb_channels,
                    hidden_size=hidden_size,
                    nb_layers=nb_layers,
                    unidirectional=unidirectional,
                    max_bin=max_bin,
                )
                for target in self.targets
            }
        )

    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        magnitude = mixture_spectrogram.abs()
        estimates = [network(magnitude) for network in self.target_models.values()]
        return {"magnitudes": torch.stack(estimates, dim=1)}

    def statistics_key(self) -> dict[str, Any]:
        return {
            "kind": "channel-mean magnitude per bin",
            "n_fft": self.stft.n_fft,
            "hop_length": self.stft.hop_length,
            "sample_rate": self.sample_rate,
        }

    @torch.no_grad()
    def compute_statistics(self, mixtures: Iterable[Tensor]) -> dict[str, Tensor]:
        statistics = RunningStatistics(min_std_ratio=1e-4)
        for mixture in mixtures:
            magnitude = self.stft(mixture.to(self.stft.window.device)).abs().mean(0)
            statistics.update(magnitude.transpose(0, 1))  # (frames, bins)
        mean, std = statistics.result()
        return {"mean": mean, "std": std}

    def load_statistics(self, statistics: dict[str, Tensor]) -> None:
        for network in self.target_models.values():
            network.input_normalization.standardise_with(
                statistics["mean"][: network.nb_bins], statistics["std"][: network.nb_bins]
            )
