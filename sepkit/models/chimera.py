"""Chimera (Luo et al., ICASSP 2017): one recurrent trunk, two heads trained together.

A mask-inference head and a deep-clustering head share the BLSTM trunk; the loss is a
weighted sum of a permutation-invariant mask loss and the deep clustering loss
(``loss=chimera``). The clustering objective regularises the trunk; separation uses the
mask head, which needs no clustering.
"""

from __future__ import annotations

from torch import Tensor

from sepkit.blocks.embedding import BinEmbedding, flatten_bins
from sepkit.blocks.masks import MaskHead
from sepkit.blocks.trunk import RecurrentTrunk
from sepkit.models.base import SpectrogramModel


class Chimera(SpectrogramModel):
    """The trunk of ``MaskInference`` with its mask head and the embedding head of
    ``DeepClustering``.

    Arguments are theirs (defaults: 8 kHz, 32/8 ms sqrt-Hann, 4 x 600 BLSTM, dropout 0.3,
    sigmoid masks, 20-dimensional sigmoid embeddings). ``forward`` returns ``masks`` and
    ``magnitudes`` (batch, sources, channels, freq, frames), ``embeddings`` (batch,
    channels * freq * frames, dim) and the ``mixture_spectrogram``; separation masks the
    mixture with the mask head.
    """

    outputs = ("magnitudes", "masks", "embeddings", "mixture_spectrogram")

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
        embedding_dim: int = 20,
        embedding_activation: str = "sigmoid",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop_length, window)
        nb_bins = self.stft.nb_bins
        self.trunk = RecurrentTrunk(
            nb_channels, nb_bins, hidden_size, nb_layers, bidirectional, dropout, log_kind
        )
        self.mask_head = MaskHead(
            self.trunk.output_size, len(self.targets), nb_channels, nb_bins, mask
        )
        self.embedding = BinEmbedding(
            self.trunk.output_size, nb_channels * nb_bins, embedding_dim, embedding_activation
        )

    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        magnitude = mixture_spectrogram.abs()  # (batch, channels, bins, frames)
        features = self.trunk(magnitude)  # (batch, frames, features)
        masks = self.mask_head(features)  # (batch, sources, channels, bins, frames)
        embeddings = self.embedding(features)  # (batch, frames, channels * bins, dim)
        return {
            "masks": masks,
            "magnitudes": masks * magnitude.unsqueeze(1),
            "embeddings": flatten_bins(embeddings, self.nb_channels),
        }
