"""Layers of a convolutional encoder/decoder on waveforms with a recurrent bottleneck, as
in Demucs v2 (Défossez et al., "Music Source Separation in the Waveform Domain", 2019).

An encoder layer divides the time resolution by ``stride`` (strided convolution, ReLU)
and, with ``rewrite``, mixes channels with a 1x1 convolution followed by a gated linear
unit. A decoder layer mirrors it: a convolution of ``context`` frames with a GLU, then a
transposed strided convolution (and a ReLU, except for the network's last layer). The
layers are ``nn.Sequential`` so that their parameters are numbered as Demucs numbers them
(``0`` the first convolution, ``2`` the second).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sepkit.blocks.recurrent import recurrent_stack


def _gate(glu: bool) -> nn.Module:
    return nn.GLU(dim=1) if glu else nn.ReLU()


class StridedEncoderLayer(nn.Sequential):
    """(batch, in_channels, time) -> (batch, out_channels, ceil((time - kernel) / stride) + 1).

    Conv1d(kernel_size, stride) -> ReLU [-> Conv1d 1x1 to 2 out_channels -> GLU]. Without
    ``glu`` the 1x1 convolution keeps out_channels and a ReLU replaces the GLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 8,
        stride: int = 4,
        rewrite: bool = True,
        glu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv1d(in_channels, out_channels, kernel_size, stride),
            nn.ReLU(),
        ]
        if rewrite:
            widening = 2 if glu else 1
            layers += [nn.Conv1d(out_channels, widening * out_channels, 1), _gate(glu)]
        super().__init__(*layers)


class StridedDecoderLayer(nn.Sequential):
    """(batch, in_channels, frames) -> (batch, out_channels, (frames - context) * stride +
    kernel_size).

    [Conv1d(context) to 2 in_channels -> GLU ->] ConvTranspose1d(kernel_size, stride)
    [-> ReLU unless ``last``].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 3,
        rewrite: bool = True,
        glu: bool = True,
        last: bool = False,
    ) -> None:
        layers: list[nn.Module] = []
        if rewrite:
            widening = 2 if glu else 1
            layers += [nn.Conv1d(in_channels, widening * in_channels, context), _gate(glu)]
        layers.append(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride))
        if not last:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class BLSTMBottleneck(nn.Module):
    """(batch, channels, frames) -> (batch, channels, frames): a bidirectional LSTM stack
    of ``channels`` units per direction, then a linear map from both directions back to
    ``channels``."""

    def __init__(self, channels: int, layers: int = 2) -> None:
        super().__init__()
        self.lstm = recurrent_stack(channels, channels, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        sequence, _ = self.lstm(x.permute(2, 0, 1))  # (frames, batch, 2 channels)
        return self.linear(sequence).permute(1, 2, 0)


@torch.no_grad()
def rescale_conv_weights(module: nn.Module, reference: float) -> None:
    """Scale every (transposed) 1-D or 2-D convolution's weight and bias by sqrt(reference /
    std(weight)), bringing the weights' standard deviation closer to ``reference``.

    Demucs v2 does this once at initialisation (reference 0.1) and reports that it helps
    training; v3 and v4 do the same to their 2-D convolutions.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv1d | nn.ConvTranspose1d | nn.Conv2d | nn.ConvTranspose2d):
            scale = (layer.weight.std() / reference) ** 0.5
            layer.weight.div_(scale)
            if layer.bias is not None:
                layer.bias.div_(scale)
