"""The residual branch of the Demucs v3/v4 layers (Défossez, "Hybrid Spectrogram and
Waveform Source Separation", 2021): dilated convolutions in a compressed channel space,
optionally with a chunked BLSTM and a local attention, each residual scaled by a learnt
per-channel factor started near zero (LayerScale, Touvron et al., "Going deeper with Image
Transformers", 2021).

Sub-modules are numbered as demucs 4.1.0 numbers them, so its weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepkit.blocks.strided_conv import BLSTMBottleneck


class LayerScale(nn.Module):
    """Multiply by a learnt per-channel ``scale`` (initially ``init``): (batch, channels,
    time), or (..., channels) when ``channel_last``."""

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        if self.channel_last:
            return self.scale * x
        return self.scale[:, None] * x


class ChunkedBLSTM(BLSTMBottleneck):
    """(batch, channels, time) -> same: a BLSTM (then linear) run on overlapping chunks of
    ``max_steps`` frames (half a chunk apart), each keeping its middle, so the cost of a
    long input grows linearly and training and separation see the same context. With
    ``skip`` the input is added to the output."""

    def __init__(
        self, channels: int, layers: int = 1, max_steps: int | None = None, skip: bool = False
    ) -> None:
        super().__init__(channels, layers)
        if max_steps is not None and max_steps % 4:
            raise ValueError(f"max_steps={max_steps}: use a multiple of 4")
        self.max_steps = max_steps
        self.skip = skip

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, length = x.shape
        if self.max_steps is None or length <= self.max_steps:
            y = super().forward(x)
        else:
            width, stride = self.max_steps, self.max_steps // 2
            count = -(-length // stride)
            padded = F.pad(x, (0, (count - 1) * stride + width - length))
            chunks = padded.unfold(-1, width, stride)  # (batch, channels, count, width)
            chunks = chunks.permute(0, 2, 1, 3).reshape(-1, channels, width)
            out = super().forward(chunks).reshape(batch, count, channels, width)
            limit = stride // 2
            pieces = [out[:, 0, :, :-limit]]
            pieces += [out[:, k, :, limit:-limit] for k in range(1, count - 1)]
            pieces.append(out[:, -1, :, limit:])
            y = torch.cat(pieces, dim=-1)[..., :length]
        return x + y if self.skip else y


class LocalAttention(nn.Module):
    """(batch, channels, time) -> same: attention over time without positions, each head
    penalising distant frames by learnt decays (``ndecay`` of them), a frame never
    attending to itself; added to the input after a 1x1 projection."""

    def __init__(self, channels: int, heads: int = 4, ndecay: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} is not a multiple of heads={heads}")
        self.heads = heads
        self.ndecay = ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        if ndecay:
            self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
            with torch.no_grad():  # decays start near zero (after the sigmoid): wide windows
                self.query_decay.weight.mul_(0.01)
                self.query_decay.bias.fill_(-2)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, length = x.shape
        positions = torch.arange(length, device=x.device, dtype=x.dtype)
        delta = positions[:, None] - positions[None, :]  # (keys, queries)
        queries = self.query(x).view(batch, self.heads, -1, length)
        keys = self.key(x).view(batch, self.heads, -1, length)
        dots = torch.einsum("bhct,bhcs->bhts", keys, queries) / keys.shape[2] ** 0.5
        if self.ndecay:
            decays = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
            decay_query = torch.sigmoid(self.query_decay(x).view(batch, self.heads, -1, length))
            decay_kernel = -decays.view(-1, 1, 1) * delta.abs() / self.ndecay**0.5
            dots = dots + torch.einsum("fts,bhfs->bhts", decay_kernel, decay_query / 2)
        eye = torch.eye(length, device=x.device, dtype=torch.bool)
        weights = torch.softmax(dots.masked_fill(eye, -100), dim=2)
        content = self.content(x).view(batch, self.heads, -1, length)
        result = torch.einsum("bhts,bhct->bhcs", weights, content)
        return x + self.proj(result.reshape(batch, -1, length))


class DConv(nn.Module):
    """(batch, channels, time) -> same: ``depth`` residual layers, layer d a convolution of
    ``kernel`` taps dilated 2^d (no dilation for a negative ``depth``) down to
    ``channels / compress``, GroupNorm, GELU [, BLSTM] [, local attention], a 1x1
    convolution back to 2 channels, GroupNorm, GLU and a LayerScale started at ``init``."""

    def __init__(
        self,
        channels: int,
        compress: float = 4,
        depth: int = 2,
        init: float = 1e-4,
        norm: bool = True,
        attn: bool = False,
        heads: int = 4,
        ndecay: int = 4,
        lstm: bool = False,
        gelu: bool = True,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel={kernel}: use an odd kernel size")
        hidden = int(channels / compress)
        dilate = depth > 0

        def norm_layer(width: int) -> nn.Module:
            return nn.GroupNorm(1, width) if norm else nn.Identity()

        self.layers = nn.ModuleList()
        for d in range(abs(depth)):
            dilation = 2**d if dilate else 1
            layer: list[nn.Module] = [
                nn.Conv1d(
                    channels, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2)
                ),
                norm_layer(hidden),
                nn.GELU() if gelu else nn.ReLU(),
            ]
            if lstm:
                layer.append(ChunkedBLSTM(hidden, layers=2, max_steps=200, skip=True))
            if attn:
                layer.append(LocalAttention(hidden, heads=heads, ndecay=ndecay))
            layer += [
                nn.Conv1d(hidden, 2 * channels, 1),
                norm_layer(2 * channels),
                nn.GLU(1),
                LayerScale(channels, init),
            ]
            self.layers.append(nn.Sequential(*layer))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x
