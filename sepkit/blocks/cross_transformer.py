"""The cross-domain transformer of Hybrid Transformer Demucs (Rouard, Massa, Défossez,
"Hybrid Transformers for Music Source Separation", 2023).

Two stacks of layers run side by side, one on the spectrogram branch's (channels, freq,
frames) map flattened to a sequence of freq x frames tokens, one on the waveform branch's
frames. Layers alternate self-attention within a branch and cross-attention to the other
branch. Positions enter once, as sinusoidal embeddings added after the input norm (2-D
over frames and frequencies for the spectrogram tokens). Pre-norm layers with LayerScale
on both residuals and a GroupNorm over each whole sequence at the end of each layer.

Module names follow demucs 4.1.0's ``transformer.py`` (and torch's
``nn.TransformerEncoderLayer``), so its weights load unchanged. Sparse attention (which
needs xformers' kernels and no published model uses) is not supported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepkit.blocks.dconv import LayerScale


def sin_embedding(length: int, dim: int, shift: int = 0, max_period: float = 10000.0) -> Tensor:
    """(length, 1, dim): cosines then sines of position / max_period^(i / (dim / 2 - 1))."""
    positions = shift + torch.arange(length).view(-1, 1, 1)
    half = dim // 2
    phase = positions / (max_period ** (torch.arange(half).view(1, 1, -1) / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding_2d(dim: int, height: int, width: int, max_period: float = 10000.0) -> Tensor:
    """(1, dim, height, width): the first half of the channels alternates sine and cosine of
    the column (frame) position, the second half of the row (frequency) position."""
    if dim % 4:
        raise ValueError(f"a 2-D sinusoidal embedding needs channels divisible by 4, got {dim}")
    half = dim // 2
    frequencies = torch.exp(torch.arange(0.0, half, 2) * -(math.log(max_period) / half))
    columns = (torch.arange(0.0, width).unsqueeze(1) * frequencies).T  # (half / 2, width)
    rows = (torch.arange(0.0, height).unsqueeze(1) * frequencies).T  # (half / 2, height)
    embedding = torch.zeros(dim, height, width)
    embedding[0:half:2] = torch.sin(columns)[:, None, :]
    embedding[1:half:2] = torch.cos(columns)[:, None, :]
    embedding[half::2] = torch.sin(rows)[:, :, None]
    embedding[half + 1 :: 2] = torch.cos(rows)[:, :, None]
    return embedding[None]


def cape_embedding(
    length: int,
    dim: int,
    batch: int,
    mean_normalize: bool = True,
    augment: bool = False,
    glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
    max_period: float = 10000.0,
) -> Tensor:
    """(length, batch, dim): continuous augmented positional embeddings (Likhomanenko et
    al., "CAPE", 2021): sinusoids of positions centred on the sequence and, with ``augment``
    (training), shifted globally and locally and rescaled at random per item."""
    positions = torch.arange(length, dtype=torch.float32).view(-1, 1, 1).repeat(1, batch, 1)
    if mean_normalize:
        positions = positions - positions.mean(dim=0, keepdim=True)
    if augment:
        global_shift, local_shift, max_scale = glob_loc_scale
        delta = (torch.rand(1, batch, 1) * 2 - 1) * global_shift
        delta_local = (torch.rand(length, batch, 1) * 2 - 1) * local_shift
        log_scale = (torch.rand(1, batch, 1) * 2 - 1) * math.log(max_scale)
        positions = (positions + delta + delta_local) * torch.exp(log_scale)
    half = dim // 2
    phase = positions / (max_period ** (torch.arange(half).view(1, 1, -1) / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class ScaledEmbedding(nn.Module):
    """A learnt embedding table whose output is multiplied by ``boost`` (and whose initial
    weights are divided by it, times ``scale``): its learning rate is boosted."""

    def __init__(
        self, num_embeddings: int, dim: int, scale: float = 1.0, boost: float = 3.0
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim)
        with torch.no_grad():
            self.embedding.weight.mul_(scale / boost)
        self.boost = boost

    def forward(self, indices: Tensor) -> Tensor:
        return self.embedding(indices) * self.boost


class SequenceGroupNorm(nn.GroupNorm):
    """GroupNorm of (batch, time, channels): with one group, over a whole sequence."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _TransformerLayer(nn.Module):
    """What both layer kinds share: the feed-forward block, norms, LayerScales and dropouts.
    Inputs are (batch, tokens, dim)."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float, gelu: bool,
                 group_norm: int, norm_first: bool, norm_out: bool, layer_scale: bool,
                 norms: int) -> None:  # fmt: skip
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm_first = norm_first
        for index in range(1, norms + 1):
            norm = SequenceGroupNorm(group_norm, dim) if group_norm else nn.LayerNorm(dim)
            setattr(self, f"norm{index}", norm)
        self.norm_out = SequenceGroupNorm(int(norm_out), dim) if norm_first and norm_out else None
        self.gamma_1 = LayerScale(dim, 1e-4, True) if layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim, 1e-4, True) if layer_scale else nn.Identity()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = F.gelu if gelu else F.relu

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _attend(self, attention: nn.MultiheadAttention, query: Tensor, key: Tensor) -> Tensor:
        # the keys as a view: when query, key and value are one tensor, torch takes its fused
        # self-attention path, which on CPU forms whole attention matrices and is about twice
        # slower than the general path's scaled_dot_product_attention
        key = key.view_as(key)
        return self.dropout1(attention(query, key, key, need_weights=False)[0])


class SelfAttentionLayer(_TransformerLayer):
    """(batch, tokens, dim) -> same: self-attention then feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, hidden: int, **options) -> None:
        super().__init__(dim, heads, hidden, norms=2, **options)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=self.dropout.p, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.norm_first:
            x = self.norm1(x + self.gamma_1(self._attend(self.self_attn, x, x)))
            return self.norm2(x + self.gamma_2(self._feed_forward(x)))
        normed = self.norm1(x)
        x = x + self.gamma_1(self._attend(self.self_attn, normed, normed))
        x = x + self.gamma_2(self._feed_forward(self.norm2(x)))
        return self.norm_out(x) if self.norm_out is not None else x


class CrossAttentionLayer(_TransformerLayer):
    """(batch, tokens, dim), (batch, other tokens, dim) -> (batch, tokens, dim): attention
    from the first sequence to the second, then feed-forward, each residual."""

    def __init__(self, dim: int, heads: int, hidden: int, **options) -> None:
        super().__init__(dim, heads, hidden, norms=3, **options)
        self.cross_attn = nn.MultiheadAttention(
            dim, heads, dropout=self.dropout.p, batch_first=True
        )

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        if not self.norm_first:
            x = self.norm1(query + self.gamma_1(self._attend(self.cross_attn, query, key)))
            return self.norm2(x + self.gamma_2(self._feed_forward(x)))
        x = query + self.gamma_1(self._attend(self.cross_attn, self.norm1(query), self.norm2(key)))
        x = x + self.gamma_2(self._feed_forward(self.norm3(x)))
        return self.norm_out(x) if self.norm_out is not None else x


class CrossTransformerEncoder(nn.Module):
    """(batch, dim, freq, frames) spectrogram features and (batch, dim, time frames)
    waveform features -> the same shapes, after ``num_layers`` layers per branch: even
    layers self-attention, odd layers cross-attention (the other way with ``cross_first``).

    ``emb`` picks the waveform branch's positions: ``"sin"``, ``"cape"`` or ``"scaled"``
    (learnt, up to ``max_positions``), weighted by ``weight_pos_embed``; the spectrogram
    branch always has the 2-D sinusoids. ``hidden_scale`` sizes the feed-forward blocks.
    """

    def __init__(
        self,
        dim: int,
        emb: str = "sin",
        hidden_scale: float = 4.0,
        num_heads: int = 8,
        num_layers: int = 6,
        cross_first: bool = False,
        dropout: float = 0.0,
        max_positions: int = 1000,
        norm_in: bool = True,
        norm_in_group: bool = False,
        group_norm: int = False,
        norm_first: bool = False,
        norm_out: bool = False,
        max_period: float = 10000.0,
        layer_scale: bool = False,
        gelu: bool = True,
        sin_random_shift: int = 0,
        weight_pos_embed: float = 1.0,
        cape_mean_normalize: bool = True,
        cape_augment: bool = True,
        cape_glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer width {dim} is not a multiple of {num_heads} heads")
        if emb not in ("sin", "cape", "scaled"):
            raise ValueError(f"t_emb={emb!r}: use 'sin', 'cape' or 'scaled'")
        self.num_layers = num_layers
        # layers of this parity attend within their branch, the others across
        self.classic_parity = 1 if cross_first else 0
        self.emb = emb
        self.max_period = max_period
        self.weight_pos_embed = weight_pos_embed
        self.sin_random_shift = sin_random_shift
        self.cape_mean_normalize = cape_mean_normalize
        self.cape_augment = cape_augment
        self.cape_glob_loc_scale = list(cape_glob_loc_scale)
        if emb == "scaled":
            self.position_embeddings = ScaledEmbedding(max_positions, dim, scale=0.2)
        if norm_in:
            self.norm_in, self.norm_in_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        elif norm_in_group:
            self.norm_in = SequenceGroupNorm(int(norm_in_group), dim)
            self.norm_in_t = SequenceGroupNorm(int(norm_in_group), dim)
        else:
            self.norm_in, self.norm_in_t = nn.Identity(), nn.Identity()
        options = dict(
            dropout=dropout, gelu=gelu, group_norm=int(group_norm), norm_first=norm_first,
            norm_out=norm_out, layer_scale=layer_scale,
        )  # fmt: skip
        hidden = int(dim * hidden_scale)
        self.layers = nn.ModuleList()  # spectrogram branch
        self.layers_t = nn.ModuleList()  # waveform branch
        for index in range(num_layers):
            kind = SelfAttentionLayer if index % 2 == self.classic_parity else CrossAttentionLayer
            self.layers.append(kind(dim, num_heads, hidden, **options))
            self.layers_t.append(kind(dim, num_heads, hidden, **options))

    def forward(self, x: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        batch, dim, freqs, frames = x.shape
        position = sin_embedding_2d(dim, freqs, frames, self.max_period).to(x)
        # tokens ordered frame by frame, frequencies within a frame: (batch, frames * freqs, dim)
        x = x.permute(0, 3, 2, 1).reshape(batch, frames * freqs, dim)
        position = position.permute(0, 3, 2, 1).reshape(1, frames * freqs, dim)
        x = self.norm_in(x) + self.weight_pos_embed * position
        xt = xt.transpose(1, 2)  # (batch, time frames, dim)
        position_t = self._time_positions(xt.shape[1], batch, dim, xt.device).to(xt)
        xt = self.norm_in_t(xt) + self.weight_pos_embed * position_t.transpose(0, 1)

        for index in range(self.num_layers):
            if index % 2 == self.classic_parity:
                x, xt = self.layers[index](x), self.layers_t[index](xt)
            else:
                x, xt = self.layers[index](x, xt), self.layers_t[index](xt, x)

        x = x.reshape(batch, frames, freqs, dim).permute(0, 3, 2, 1)
        return x, xt.transpose(1, 2)

    def _time_positions(self, length: int, batch: int, dim: int, device: torch.device) -> Tensor:
        """(length, batch or 1, dim) positional embeddings of the waveform branch."""
        if self.emb == "scaled":
            return self.position_embeddings(torch.arange(length, device=device))[:, None]
        if self.emb == "cape":
            return cape_embedding(
                length, dim, batch, self.cape_mean_normalize,
                augment=self.training and self.cape_augment,
                glob_loc_scale=self.cape_glob_loc_scale, max_period=self.max_period,
            )  # fmt: skip
        shift = int(torch.randint(self.sin_random_shift + 1, ())) if self.sin_random_shift else 0
        return sin_embedding(length, dim, shift, self.max_period)
