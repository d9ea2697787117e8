"""Temporal convolutional network (TCN) of Conv-TasNet (Luo & Mesgarani, TASLP 2019).

A ``TemporalBlock`` is 1x1 conv -> PReLU -> norm -> depthwise dilated conv -> PReLU ->
norm, then two 1x1 convs: one back to the block's input width, added to its input (the
residual path), and optionally one to ``skip_channels`` (the skip path, summed over all
blocks). ``TemporalConvNet`` stacks ``repeats`` x ``layers`` blocks with dilations
1, 2, ..., 2**(layers-1) in each repeat and ends in one mask per source.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.layer_norm import CAUSAL_LAYER_NORMS, ChannelLayerNorm, layer_norm
from sepkit.blocks.masks import Mask


class TemporalBlock(nn.Module):
    """(batch, channels, frames) -> (residual output of the same shape, skip output or None).

    ``causal`` pads the dilated convolution on the left only, so frame k sees frames <= k.
    Convolutions have no bias (as in the reference implementations whose weights sepkit
    loads).
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation: int,
        norm: str = "global",
        causal: bool = False,
        skip_channels: int | None = None,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.padding = (kernel_size - 1) * dilation
        self.expand = nn.Conv1d(channels, hidden_channels, 1, bias=False)
        self.expand_activation = nn.PReLU()
        self.expand_norm = layer_norm(norm, hidden_channels)
        self.depthwise = nn.Conv1d(
            hidden_channels,
            hidden_channels,
            kernel_size,
            dilation=dilation,
            groups=hidden_channels,
            bias=False,
        )
        self.depthwise_activation = nn.PReLU()
        self.depthwise_norm = layer_norm(norm, hidden_channels)
        self.residual = nn.Conv1d(hidden_channels, channels, 1, bias=False) if residual else None
        self.skip = (
            nn.Conv1d(hidden_channels, skip_channels, 1, bias=False) if skip_channels else None
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        hidden = self.expand_norm(self.expand_activation(self.expand(x)))
        if self.causal:
            hidden = F.pad(hidden, (self.padding, 0))
        else:
            hidden = F.pad(hidden, (self.padding // 2, self.padding - self.padding // 2))
        hidden = self.depthwise_norm(self.depthwise_activation(self.depthwise(hidden)))
        skip = self.skip(hidden) if self.skip is not None else None
        if self.residual is None:
            return x, skip
        return x + self.residual(hidden), skip


class TemporalConvNet(nn.Module):
    """Conv-TasNet's separator: coefficients (batch, filters, frames) -> masks (batch,
    sources, filters, frames).

    Channel-wise layer norm of the input, a 1x1 bottleneck to ``bottleneck_channels``,
    ``repeats`` x ``layers`` ``TemporalBlock``s of ``hidden_channels`` with kernel
    ``kernel_size``, then a 1x1 conv to ``sources * filters`` and the mask activation. With
    ``skip_channels`` the masks come from the sum of the blocks' skip outputs (the paper's
    design) and the last block has no residual convolution (its output would be unused,
    which DDP refuses); otherwise from the last residual output.
    """

    def __init__(
        self,
        filters: int,
        sources: int,
        bottleneck_channels: int = 128,
        hidden_channels: int = 512,
        kernel_size: int = 3,
        layers: int = 8,
        repeats: int = 3,
        norm: str = "global",
        causal: bool = False,
        skip_channels: int | None = 128,
        mask: str = "sigmoid",
    ) -> None:
        super().__init__()
        if causal and norm not in CAUSAL_LAYER_NORMS:
            raise ValueError(
                f"norm={norm!r} looks at the whole signal; a causal model needs one of "
                f"{list(CAUSAL_LAYER_NORMS)}"
            )
        self.sources = sources
        self.input_norm = ChannelLayerNorm(filters)
        self.bottleneck = nn.Conv1d(filters, bottleneck_channels, 1, bias=False)
        count = repeats * layers
        self.blocks = nn.ModuleList(
            TemporalBlock(
                bottleneck_channels,
                hidden_channels,
                kernel_size,
                dilation=2 ** (index % layers),
                norm=norm,
                causal=causal,
                skip_channels=skip_channels,
                residual=not skip_channels or index < count - 1,
            )
            for index in range(count)
        )
        self.mask_conv = nn.Conv1d(
            skip_channels or bottleneck_channels, sources * filters, 1, bias=False
        )
        self.mask = Mask(mask, source_dim=1)

    def forward(self, coefficients: Tensor) -> Tensor:
        batch, filters, frames = coefficients.shape
        x = self.bottleneck(self.input_norm(coefficients))
        skips = 0
        for block in self.blocks:
            x, skip = block(x)
            if skip is not None:
                skips = skips + skip
        scores = self.mask_conv(x if isinstance(skips, int) else skips)
        return self.mask(scores.reshape(batch, self.sources, filters, frames))
