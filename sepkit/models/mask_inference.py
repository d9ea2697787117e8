"""Mask inference: a recurrent network that estimates one time-frequency mask per source.

The mask-inference network of nussl's and Asteroid's wsj0-2mix recipes (Luo et al.,
ICASSP 2017; Wang et al., ICASSP 2018): log-magnitude STFT, batch norm, a stack of BLSTMs,
a fully connected layer and a sigmoid giving each source's mask of the mixture magnitude.
Trained with a permutation-invariant spectrogram loss (``loss=pit_spectrogram_l1``) since
speakers have no fixed order.
"""

from __future__ import annotations

from torch import Tensor

from sepkit.blocks.masks import MaskHead
from sepkit.blocks.trunk import RecurrentTrunk
from sepkit.models.base import SpectrogramModel


class MaskInference(SpectrogramModel):
    """BLSTM mask inference on STFT magnitudes.

    Defaults are the usual speech recipe: 8 kHz, 32 ms square-root Hann windows (256
    samples) every 8 ms (64), 4 BLSTM layers of 600 units per direction with dropout 0.3
    between them (on the first three), sigmoid masks. ``log_kind``: the input compression
    (``db`` or ``log1p``); ``mask``: ``sigmoid`` or ``softmax`` over the sources.

    ``forward`` returns ``masks`` and ``magnitudes`` (masks x mixture magnitude), both
    (batch, sources, channels, freq, frames), and the ``mixture_spectrogram``.
    """

    outputs = ("magnitudes", "masks", "mixture_spectrogram")

    @property
    def training_segment(self) -> float:
        """Seconds of a training item where the dataset sets no segment (the music sets):
        400 frames (3.2 s at 8 kHz), as deep clustering's later recipes (Isik et al. 2016)."""
        return 400 * self.stft.hop_length / self.sample_rate

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 8000,
        nb_channels: int = 1,
        n_fft: int = 256,
        hop_length: int = 64,
        window: str = "sqrt_hann",
        hidden_size: int = 600,
        nb_layers: int = 4,
        bidirectional: bool = True,
        dropout: float = 0.3,
        log_kind: str = "db",
        mask: str = "sigmoid",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop_length, window)
        nb_bins = self.stft.nb_bins
        self.trunk = RecurrentTrunk(
            nb_channels, nb_bins, hidden_size, nb_layers, bidirectional, dropout, log_kind
        )
        self.mask_head = MaskHead(
            self.trunk.output_size, len(self.targets), nb_channels, nb_bins, mask
        )

    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        magnitude = mixture_spectrogram.abs()  # (batch, channels, bins, frames)
        features = self.trunk(magnitude)  # (batch, frames, features)
        masks = self.mask_head(features)  # (batch, sources, channels, bins, frames)
        return {"masks": masks, "magnitudes": masks * magnitude.unsqueeze(1)}
