"""Transformer layers with rotary position embeddings (RoFormer), as the band-split
RoFormers use them (Lu et al. 2023; Wang et al. 2023).

Module attribute names follow the layout of the community checkpoints (the copies of
``bs_roformer.py`` / ``mel_band_roformer.py`` that audio-separator 0.47.1 and the
Music-Source-Separation-Training project ship), so their state dicts load with
``strict=True``: ``norm.gamma``, ``to_qkv``, ``to_gates``, ``to_out.0``, ``net.{0,1,4}``,
``rotary_embed.freqs``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma over the last dimension (features).

    Half-precision inputs are normalised in float32: their squared norm overflows.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype in _LOW_PRECISION:
            normalized = F.normalize(x.float(), dim=-1).to(x.dtype)
        else:
            normalized = F.normalize(x, dim=-1)
        return normalized * self.scale * self.gamma


class FeedForward(nn.Module):
    """RMSNorm, Linear(dim -> mult * dim), GELU, Linear back to dim, with dropout:
    (..., dim) -> (..., dim)."""

    def __init__(self, dim: int, mult: float = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(
            RMSNorm(dim),
            nn.Linear(dim, inner),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(inner, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al., RoFormer 2021) over a head's ``dim`` features.

    Feature pairs (2i, 2i + 1) of the token at position p are rotated by the angle
    p * freqs[i], freqs[i] = theta ** (-2i / dim). ``freqs`` is stored in the state dict
    (as rotary-embedding-torch keeps it) but never trained. The rotation is computed in
    float32 whatever the input dtype, as the reference does, and cast back.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("freqs", freqs)

    def rotations(self, length: int, device: torch.device) -> Tensor:
        """(length, dim / 2) complex64: exp(i * p * freqs[i]) for each position and pair."""
        positions = torch.arange(length, device=device, dtype=torch.float32)
        angles = positions[:, None] * self.freqs.to(device=device, dtype=torch.float32)
        return torch.polar(torch.ones_like(angles), angles)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., positions, dim) rotated by position, same shape and dtype."""
        # a pair (a, b) rotated by t is the complex product (a + ib) e^{it}: one pass over
        # x, where cos/sin products of x and its swapped halves would take five
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        rotated = torch.view_as_real(pairs * self.rotations(x.shape[-2], x.device))
        return rotated.flatten(-2).to(x.dtype)


class Attention(nn.Module):
    """Pre-normalised multi-head self-attention with rotary embeddings and a sigmoid gate
    per head: (batch, positions, dim) -> (batch, positions, dim).

    ``rotary_embed`` may be shared by several layers (the band-split models share one per
    axis). ``flash`` is accepted for the reference's signature; attention always goes
    through ``scaled_dot_product_attention``, which picks the fastest kernel itself.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        rotary_embed: RotaryEmbedding | None = None,
        flash: bool = True,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.rotary_embed = rotary_embed
        inner = heads * dim_head
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm(x)
        batch, positions, _ = x.shape
        # (batch, positions, 3 * heads * dim_head) -> 3 x (batch, heads, positions, dim_head)
        qkv = self.to_qkv(x).reshape(batch, positions, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rotary_embed is not None:
            q, k = self.rotary_embed(q), self.rotary_embed(k)
        dropout = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        gates = self.to_gates(x).transpose(1, 2).unsqueeze(-1)  # (batch, heads, positions, 1)
        out = out * gates.sigmoid()
        return self.to_out(out.transpose(1, 2).reshape(batch, positions, -1))


class Transformer(nn.Module):
    """``depth`` residual pairs of attention and feed-forward, then an optional RMSNorm:
    (batch, positions, dim) -> (batch, positions, dim)."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        ff_mult: float = 4,
        norm_output: bool = True,
        rotary_embed: RotaryEmbedding | None = None,
        flash_attn: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    Attention(dim, heads, dim_head, attn_dropout, rotary_embed, flash_attn),
                    FeedForward(dim, ff_mult, ff_dropout),
                ]
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return self.norm(x)


def axial_transformers(
    depth: int,
    time_transformer_depth: int,
    freq_transformer_depth: int,
    dim_head: int,
    **transformer_options,
) -> nn.ModuleList:
    """``depth`` pairs (time transformer, frequency transformer), each axis's layers sharing
    one rotary embedding, as the band-split RoFormers' ``layers``."""
    time_rotary = RotaryEmbedding(dim_head)
    freq_rotary = RotaryEmbedding(dim_head)
    options = dict(dim_head=dim_head, **transformer_options)
    return nn.ModuleList(
        nn.ModuleList(
            [
                Transformer(depth=time_transformer_depth, rotary_embed=time_rotary, **options),
                Transformer(depth=freq_transformer_depth, rotary_embed=freq_rotary, **options),
            ]
        )
        for _ in range(depth)
    )


# Tokens per group when the axial transformers run without gradients. Sequences are
# independent, so running them a group at a time gives the same output while the
# activations (the feed-forward's 4x-wide hidden layer above all) are those of one group,
# small enough to stay in cache, not those of every band and frame of a segment at once.
INFERENCE_GROUP_TOKENS = 2048


def apply_axial_transformers(
    layers: nn.ModuleList, x: Tensor, checkpointed: bool = False
) -> Tensor:
    """Band features (batch, frames, bands, dim) through ``axial_transformers``: each time
    transformer attends across frames within a band, each frequency transformer across
    bands within a frame. Same shape out.

    ``checkpointed``: keep only each transformer's input for the backward pass and run it
    again there (activation checkpointing), so training memory holds one transformer's
    activations instead of all of them, for a second forward pass. Without gradients the
    sequences go through in groups of about ``INFERENCE_GROUP_TOKENS`` tokens."""
    if not torch.is_grad_enabled():
        return _apply_in_groups(layers, x, INFERENCE_GROUP_TOKENS)
    batch, frames, bands, dim = x.shape

    def run(transformer: nn.Module, x: Tensor) -> Tensor:
        if checkpointed:
            return torch.utils.checkpoint.checkpoint(transformer, x, use_reentrant=False)
        return transformer(x)

    for time_transformer, freq_transformer in layers:
        x = x.transpose(1, 2).reshape(batch * bands, frames, dim)
        x = run(time_transformer, x)
        x = x.reshape(batch, bands, frames, dim).transpose(1, 2).reshape(batch * frames, bands, dim)
        x = run(freq_transformer, x)
        x = x.reshape(batch, frames, bands, dim)
    return x


def _apply_in_groups(layers: nn.ModuleList, x: Tensor, tokens: int) -> Tensor:
    """``apply_axial_transformers`` without gradients, a group of sequences at a time: a
    time transformer's group is a few bands (all frames), read from and written back to
    the (batch, frames, bands, dim) layout directly; a frequency transformer's is a few
    frames, updated in place."""
    batch, frames, bands, dim = x.shape
    bands_per_group = max(1, tokens // frames)
    frames_per_group = max(1, tokens // bands)
    for time_transformer, freq_transformer in layers:
        out = None
        for start in range(0, bands, bands_per_group):
            group = x[:, :, start : start + bands_per_group].transpose(1, 2)
            count = group.shape[1]
            y = time_transformer(group.reshape(batch * count, frames, dim))
            if out is None:  # the transformer's dtype (autocast may lower it)
                out = x.new_empty(x.shape, dtype=y.dtype)
            out[:, :, start : start + count] = y.reshape(batch, count, frames, dim).transpose(1, 2)
        rows = out.view(batch * frames, bands, dim)
        for start in range(0, batch * frames, frames_per_group):
            rows[start : start + frames_per_group] = freq_transformer(
                rows[start : start + frames_per_group]
            )
        x = out
    return x
