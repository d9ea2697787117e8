"""Demucs v2 (Défossez, Usunier, Bottou, Bach, "Music Source Separation in the Waveform
Domain", 2019): a convolutional encoder/decoder on waveforms with a BLSTM bottleneck.

Constructor arguments, state-dict keys and output match ``demucs.model.Demucs`` of demucs
2.0.3, so its published weights load with ``strict=True`` (see
``sepkit.models.pretrained.demucs``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.crop import center_trim
from sepkit.blocks.resample import SincResample
from sepkit.blocks.strided_conv import (
    BLSTMBottleneck,
    StridedDecoderLayer,
    StridedEncoderLayer,
    rescale_conv_weights,
)
from sepkit.models.base import SeparationModel


class Demucs(SeparationModel):
    """Demucs v2: mixture waveform in, one waveform per target out.

    The input is upsampled x2 (``resample``), encoded by ``depth`` strided layers whose
    width starts at ``channels`` and grows by ``growth`` per layer, passed through a BLSTM
    of ``lstm_layers`` layers, and decoded by mirrored layers, each adding the matching
    encoder output (U-Net skips); the result is downsampled /2 and split into
    ``len(targets)`` sources of ``nb_channels`` channels. Convolutions are valid (no
    padding), so the input is padded to ``valid_length`` and the output centre-trimmed
    back to the input's length. ``rescale`` scales the initial convolution weights towards
    that standard deviation; ``normalize`` standardises each input by its mono mean and
    deviation and undoes it at the output.

    The defaults are the paper's (and demucs 2.0.3's); published models list their
    targets as drums, bass, other, vocals.
    """

    training_segment = 10.0  # demucs 2.0.3's --samples, 10 s at 44.1 kHz

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 44100,
        nb_channels: int = 2,
        channels: int = 64,
        growth: float = 2.0,
        depth: int = 6,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 3,
        glu: bool = True,
        rewrite: bool = True,
        lstm_layers: int = 2,
        resample: bool = True,
        rescale: float = 0.1,
        normalize: bool = False,
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context
        self.resample = resample
        self.normalize = normalize

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        in_channels = nb_channels
        for index in range(depth):
            self.encoder.append(
                StridedEncoderLayer(in_channels, channels, kernel_size, stride, rewrite, glu)
            )
            # the decoder is built from its last layer (which outputs the sources) upwards
            last = index == 0
            self.decoder.insert(
                0,
                StridedDecoderLayer(
                    channels,
                    len(self.targets) * nb_channels if last else in_channels,
                    kernel_size,
                    stride,
                    context,
                    rewrite,
                    glu,
                    last=last,
                ),
            )
            in_channels = channels
            channels = int(growth * channels)
        self.lstm = BLSTMBottleneck(in_channels, lstm_layers) if lstm_layers else None
        self.upsample = SincResample(1, 2)
        self.downsample = SincResample(2, 1)
        if rescale:
            rescale_conv_weights(self, reference=rescale)

    def valid_length(self, length: int) -> int:
        """The input length the network computes on to return at least ``length`` samples:
        every convolution sees whole windows."""
        if self.resample:
            length *= 2
        for _ in range(self.depth):
            length = max(math.ceil((length - self.kernel_size) / self.stride) + 1, 1)
            length += self.context - 1
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> waveforms (batch, sources, channels, time)."""
        batch, channels, length = mixture.shape
        excess = self.valid_length(length) - length
        x = F.pad(mixture, (excess // 2, excess - excess // 2))

        mean, std = 0.0, 1.0
        if self.normalize:
            mono = x.mean(dim=1, keepdim=True)
            mean = mono.mean(dim=-1, keepdim=True)
            std = mono.std(dim=-1, keepdim=True)
        x = (x - mean) / (1e-5 + std)

        if self.resample:
            x = self.upsample(x)
        skips = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for decode in self.decoder:
            x = decode(x + center_trim(skips.pop(), x.shape[-1]))
        if self.resample:
            x = self.downsample(x)

        x = center_trim(x * std + mean, length)
        return {"waveforms": x.reshape(batch, len(self.targets), channels, length)}
