"""TasNet with an LSTM separator (Luo & Mesgarani, "TasNet: Time-Domain Audio Separation
Network for Real-Time, Single-Channel Speech Separation", ICASSP 2018).

The waveform is cut into frames of ``kernel_size`` samples, each normalised by its L2 norm
and encoded by a gated basis into non-negative weights; a deep (B)LSTM estimates one mask
per source on the layer-normalised weights; each source's masked weights are decoded by a
learned basis back into frames, rescaled by the frame's norm and overlap-added.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.filterbank import GatedEncoder, covering_length, overlap_add
from sepkit.blocks.masks import Mask
from sepkit.blocks.recurrent import recurrent_stack
from sepkit.models.base import SeparationModel


class TasNet(SeparationModel):
    """LSTM TasNet: mixture (batch, channels, time) -> waveforms (batch, sources, channels,
    time). Every channel is separated on its own.

    ``filters`` N basis signals of ``kernel_size`` L samples; frames every ``stride``
    samples (None: L, the paper's non-overlapping frames). Separator: ``layers`` LSTM
    layers of ``hidden_size`` units (per direction when ``bidirectional``; a causal model
    is unidirectional), with an identity skip connection around every pair of layers
    whose input and output widths agree, then a linear layer and ``mask`` across sources
    (softmax in the paper). Defaults follow the paper: N 500, L 40 (5 ms at 8 kHz), 4
    layers of 500 units.
    """

    @property
    def training_segment(self) -> float:
        """Seconds of a training item where the dataset sets no segment (the music sets):
        the paper's 4 s excerpts at 8 kHz as a count of samples, which memory grows with."""
        return 32000 / self.sample_rate

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 8000,
        nb_channels: int = 1,
        filters: int = 500,
        kernel_size: int = 40,
        stride: int | None = None,
        hidden_size: int = 500,
        layers: int = 4,
        bidirectional: bool = True,
        dropout: float = 0.0,
        mask: str = "softmax",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size
        if self.stride > kernel_size:
            raise ValueError(f"stride={stride} > kernel_size={kernel_size} would skip samples")

        self.encoder = GatedEncoder(filters, kernel_size)
        self.norm = nn.LayerNorm(filters)
        width = hidden_size * (2 if bidirectional else 1)
        self.lstms = nn.ModuleList(
            recurrent_stack(
                filters if layer == 0 else width,
                hidden_size,
                num_layers=1,
                bidirectional=bidirectional,
                batch_first=True,
            )
            for layer in range(layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.mask_layer = nn.Linear(width, len(self.targets) * filters)
        self.mask = Mask(mask, source_dim=2)
        self.decoder = nn.Linear(filters, kernel_size, bias=False)

    def valid_length(self, length: int) -> int:
        """The smallest length >= ``length`` made of whole frames."""
        return covering_length(length, self.kernel_size, self.stride)

    def separate_weights(self, weights: Tensor) -> Tensor:
        """Mixture weights (batch, frames, filters) -> masks (batch, frames, sources,
        filters)."""
        x = self.norm(weights)
        for index, lstm in enumerate(self.lstms):
            if index % 2 == 0:
                pair_input = x
            x, _ = lstm(self.dropout(x) if index else x)
            if index % 2 == 1 and x.shape[-1] == pair_input.shape[-1]:
                x = x + pair_input  # identity skip connection around the pair of layers
        scores = self.mask_layer(x)
        return self.mask(scores.reshape(*scores.shape[:2], len(self.targets), self.filters))

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        batch, channels, length = mixture.shape
        padded = F.pad(mixture, (0, self.valid_length(length) - length))
        frames = padded.reshape(batch * channels, -1).unfold(-1, self.kernel_size, self.stride)
        norms = frames.norm(dim=-1, keepdim=True)  # (batch * channels, frames, 1)
        weights = self.encoder(frames / (norms + 1e-8))  # (batch * channels, frames, filters)

        masks = self.separate_weights(weights)  # (batch * channels, frames, sources, filters)
        source_frames = self.decoder(masks * weights.unsqueeze(2)) * norms.unsqueeze(2)
        waveforms = overlap_add(source_frames.transpose(1, 2), self.stride)
        waveforms = waveforms.reshape(batch, channels, len(self.targets), -1).transpose(1, 2)
        return {"waveforms": waveforms[..., :length]}
