"""Encoder and decoder layers of the hybrid Demucs models (Défossez, "Hybrid Spectrogram
and Waveform Source Separation", 2021), shared by the spectrogram branch (convolutions over
frequency, one frame at a time) and the waveform branch (convolutions over time).

An encoder layer: strided convolution [+ the other branch's features] -> GroupNorm -> GELU
[-> DConv residual branch] [-> 1x1 convolution to twice the channels -> GroupNorm -> GLU].
A decoder layer mirrors it: [skip added -> 1x1 convolution -> GroupNorm -> GLU] [-> DConv]
-> transposed strided convolution -> GroupNorm [-> GELU unless last]. Convolutions pad by a
quarter of their kernel, so a layer divides the length by its stride exactly (the waveform
branch pads its input to a multiple of the stride first). Attribute names follow demucs
4.1.0's ``HEncLayer``/``HDecLayer``, so its weights load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepkit.blocks.dconv import DConv


class FrequencyEmbedding(nn.Module):
    """frequency indices (freqs,) -> (freqs, dim): a learnt embedding of each frequency row,
    its learning rate boosted by ``scale``; with ``smooth`` it starts as a normalised
    cumulative sum of Gaussians, so neighbouring frequencies start alike."""

    def __init__(
        self, num_embeddings: int, dim: int, scale: float = 10.0, smooth: bool = False
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim)
        with torch.no_grad():
            weight = self.embedding.weight
            if smooth:
                counts = torch.arange(1, num_embeddings + 1).to(weight).sqrt()[:, None]
                weight.copy_(torch.cumsum(weight, dim=0) / counts)
            weight.div_(scale)
        self.scale = scale

    def forward(self, indices: Tensor) -> Tensor:
        return self.embedding(indices) * self.scale


def _norm(enabled: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if enabled else nn.Identity()


def _over_rows(dconv: DConv, y: Tensor, freq: bool) -> Tensor:
    """DConv along time; for a spectrogram (batch, channels, freqs, frames) each frequency
    row on its own."""
    if not freq:
        return dconv(y)
    batch, channels, freqs, frames = y.shape
    y = dconv(y.permute(0, 2, 1, 3).reshape(-1, channels, frames))
    return y.view(batch, freqs, channels, frames).permute(0, 2, 1, 3)


class HEncLayer(nn.Module):
    """(batch, chin, freqs, frames) -> (batch, chout, freqs / stride, frames) when ``freq``;
    (batch, chin, time) -> (batch, chout, ceil(time / stride)) otherwise.

    ``empty`` keeps only the strided convolution (the waveform branch's last layer, whose
    output is injected into the spectrogram branch); ``pad=False`` convolves without
    padding (the last frequency layer, whose kernel covers all remaining frequencies).
    ``context`` widens the 1x1 rewrite convolution to 1 + 2 context taps; ``dconv_kw``
    configures the DConv branch.
    """

    def __init__(self, chin: int, chout: int, kernel_size: int = 8, stride: int = 4,
                 norm_groups: int = 1, empty: bool = False, freq: bool = True,
                 dconv: bool = True, norm: bool = True, context: int = 0,
                 dconv_kw: dict[str, Any] | None = None, pad: bool = True,
                 rewrite: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.freq = freq
        self.kernel_size = kernel_size
        self.stride = stride
        self.empty = empty
        self.norm = norm
        self.pad = kernel_size // 4 if pad else 0
        conv: type[nn.Module] = nn.Conv2d if freq else nn.Conv1d
        if freq:
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (self.pad, 0))
        else:
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, self.pad)
        if empty:
            return
        self.norm1 = _norm(norm, norm_groups, chout)
        self.rewrite = None
        if rewrite:
            self.rewrite = conv(chout, 2 * chout, 1 + 2 * context, 1, context)
            self.norm2 = _norm(norm, norm_groups, 2 * chout)
        self.dconv = DConv(chout, **(dconv_kw or {})) if dconv else None

    def forward(self, x: Tensor, inject: Tensor | None = None) -> Tensor:
        """``inject`` (the waveform branch's features, same frames) is added after the
        convolution."""
        if not self.freq:
            if x.dim() == 4:  # the spectrogram branch once its frequencies are gone
                x = x.flatten(1, 2)
            if x.shape[-1] % self.stride:
                x = F.pad(x, (0, self.stride - x.shape[-1] % self.stride))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            if inject.shape[-1] != y.shape[-1]:
                raise ValueError(f"branches out of step: {inject.shape} vs {y.shape}")
            y = y + (inject[:, :, None] if inject.dim() == 3 and y.dim() == 4 else inject)
        y = F.gelu(self.norm1(y))
        if self.dconv is not None:
            y = _over_rows(self.dconv, y, self.freq)
        if self.rewrite is None:
            return y
        return F.glu(self.norm2(self.rewrite(y)), dim=1)


class HDecLayer(nn.Module):
    """The mirror of :class:`HEncLayer`: (features, skip, length) -> (output, features before
    the transposed convolution). A waveform-branch layer crops its output to ``length``;
    a spectrogram-branch layer drops the padding rows. ``empty`` keeps only the transposed
    convolution (and its norm), fed by the spectrogram branch when the branches split."""

    def __init__(self, chin: int, chout: int, last: bool = False, kernel_size: int = 8,
                 stride: int = 4, norm_groups: int = 1, empty: bool = False, freq: bool = True,
                 dconv: bool = True, norm: bool = True, context: int = 1,
                 dconv_kw: dict[str, Any] | None = None, pad: bool = True,
                 context_freq: bool = True, rewrite: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.pad = kernel_size // 4 if pad else 0
        self.last = last
        self.freq = freq
        self.chin = chin
        self.empty = empty
        self.stride = stride
        self.kernel_size = kernel_size
        self.norm = norm
        self.context_freq = context_freq
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
        self.norm2 = _norm(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite = None
        if rewrite:
            if not freq:
                self.rewrite = nn.Conv1d(chin, 2 * chin, 1 + 2 * context, 1, context)
            elif context_freq:
                self.rewrite = nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
            else:
                self.rewrite = nn.Conv2d(chin, 2 * chin, (1, 1 + 2 * context), 1, (0, context))
            self.norm1 = _norm(norm, norm_groups, 2 * chin)
        self.dconv = DConv(chin, **(dconv_kw or {})) if dconv else None

    def forward(self, x: Tensor, skip: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
        if self.freq and x.dim() == 3:  # the waveform-shaped bottom back to one frequency
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
        y = x
        if not self.empty:
            y = x + skip
            if self.rewrite is not None:
                y = F.glu(self.norm1(self.rewrite(y)), dim=1)
            if self.dconv is not None:
                y = _over_rows(self.dconv, y, self.freq)
        z = self.norm2(self.conv_tr(y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad : -self.pad, :]
        else:
            z = z[..., self.pad : self.pad + length]
        if not self.last:
            z = F.gelu(z)
        return z, y
