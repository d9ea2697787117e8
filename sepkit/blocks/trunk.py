"""The recurrent trunk of spectrogram mask and embedding networks."""

from __future__ import annotations

from torch import Tensor, nn

from sepkit.blocks.log_magnitude import LogMagnitude
from sepkit.blocks.normalization import FeatureBatchNorm
from sepkit.blocks.recurrent import recurrent_stack


class RecurrentTrunk(nn.Module):
    """Magnitude spectrogram to one feature vector per frame.

    Log compression (``log_kind``: ``db`` or ``log1p``), batch norm per input feature (a
    channel's frequency bin), then a stack of ``nb_layers`` recurrent layers of
    ``hidden_size`` units per direction along the frames, with ``dropout`` between layers
    (so on the outputs of all but the last). The trunk of the mask-inference, deep-clustering
    and Chimera networks (Hershey et al. 2016; Luo et al. 2017).

    Input (batch, channels, bins, frames) magnitudes; output (batch, frames, features) with
    ``features = hidden_size * (2 if bidirectional else 1)`` (``output_size``).
    """

    def __init__(
        self,
        nb_channels: int,
        nb_bins: int,
        hidden_size: int = 600,
        nb_layers: int = 4,
        bidirectional: bool = True,
        dropout: float = 0.3,
        log_kind: str = "db",
    ) -> None:
        super().__init__()
        self.log_magnitude = LogMagnitude(log_kind)
        self.input_norm = FeatureBatchNorm(nb_channels * nb_bins)
        self.recurrent = recurrent_stack(
            input_size=nb_channels * nb_bins,
            hidden_size=hidden_size,
            num_layers=nb_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            batch_first=True,
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, magnitude: Tensor) -> Tensor:
        batch, channels, bins, frames = magnitude.shape
        # (batch, frames, channels * bins): one feature vector per frame
        x = magnitude.permute(0, 3, 1, 2).reshape(batch, frames, channels * bins)
        x = self.input_norm(self.log_magnitude(x))
        x, _ = self.recurrent(x)
        return x
