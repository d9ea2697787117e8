"""Hybrid Transformer Demucs, Demucs v4 (Rouard, Massa, Défossez, "Hybrid Transformers for
Music Source Separation", ICASSP 2023): Hybrid Demucs's spectrogram and waveform U-Nets
(``sepkit.models.hdemucs``), kept apart down to their innermost layer, with a cross-domain
transformer between encoders and decoders: self-attention within each branch alternating
with cross-attention from each branch to the other.

Constructor arguments, state-dict keys and outputs match demucs 4.1.0's ``HTDemucs`` (with
``targets`` for its ``sources``), so the published htdemucs, htdemucs_ft and htdemucs_6s
weights load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.cross_transformer import CrossTransformerEncoder
from sepkit.models.hdemucs import HybridDemucs

# demucs's t_* arguments that only its sparse attention kernels or its optimiser read
_NOT_TRANSFORMER_ARGUMENTS = {
    "weight_decay", "lr", "sparse_self_attn", "sparse_cross_attn", "mask_type",
    "mask_random_seed", "sparse_attn_window", "global_window", "sparsity", "auto_sparsity",
}  # fmt: skip


def cross_transformer(width: int, options: dict[str, Any]) -> CrossTransformerEncoder | None:
    """The transformer of ``width`` channels that demucs's ``t_*`` arguments (``options``,
    without the prefix) describe; None for no layers."""
    if options["sparse_self_attn"] or options["sparse_cross_attn"] or options["auto_sparsity"]:
        raise ValueError("sparse attention (t_sparse_*, t_auto_sparsity) is not supported")
    if options["layers"] <= 0:
        return None
    renamed = {"layers": "num_layers", "heads": "num_heads"}
    settings = {
        renamed.get(name, name): value
        for name, value in options.items()
        if name not in _NOT_TRANSFORMER_ARGUMENTS
    }
    return CrossTransformerEncoder(dim=width, **settings)


class HTDemucs(HybridDemucs):
    """Hybrid Transformer Demucs (v4): mixture waveform in, one waveform per target out.

    Both branches have ``depth`` layers (``channels`` growing by ``growth``; STFT of
    ``nfft`` points) as in :class:`~sepkit.models.hdemucs.HDemucs`; at the bottom, a
    transformer of ``t_layers`` layers per branch, ``t_heads`` heads and feed-forward width
    ``t_hidden_scale`` times its own, on ``bottom_channels`` channels when set (1x1
    convolutions in and out) or else the innermost layer's. ``t_*`` arguments configure
    it as demucs's do (sparse attention is not supported; ``t_weight_decay`` and ``t_lr``
    are kept for an optimiser that wants them).

    The model is trained on excerpts of ``segment`` seconds; with ``use_train_segment``
    separation gives it inputs of that length (a shorter one is zero-padded and the output
    trimmed), since the transformer has only seen that many positions. (demucs sets
    ``segment`` from each training batch's length; here it is a setting, which the model
    config takes from the dataset's training segment.) The defaults are
    demucs 4.1.0's; the published htdemucs sets ``dconv_mode`` 3, ``bottom_channels`` 512
    and ``segment`` 7.8 (42M weights).
    """

    def __init__(
        self, targets: list[str], audio_channels: int = 2, channels: int = 48,
        channels_time: int | None = None, growth: float = 2, nfft: int = 4096,
        wiener_iters: int = 0, end_iters: int = 0, wiener_residual: bool = False,
        cac: bool = True, depth: int = 4, rewrite: bool = True,
        multi_freqs: list[float] | None = None, multi_freqs_depth: int = 3,
        freq_emb: float = 0.2, emb_scale: float = 10, emb_smooth: bool = True,
        kernel_size: int = 8, time_stride: int = 2, stride: int = 4, context: int = 1,
        context_enc: int = 0, norm_starts: int = 4, norm_groups: int = 4, dconv_mode: int = 1,
        dconv_depth: int = 2, dconv_comp: float = 8, dconv_init: float = 1e-3,
        bottom_channels: int = 0, t_layers: int = 5, t_emb: str = "sin",
        t_hidden_scale: float = 4.0, t_heads: int = 8, t_dropout: float = 0.0,
        t_max_positions: int = 10000, t_norm_in: bool = True, t_norm_in_group: bool = False,
        t_group_norm: bool = False, t_norm_first: bool = True, t_norm_out: bool = True,
        t_max_period: float = 10000.0, t_weight_decay: float = 0.0, t_lr: float | None = None,
        t_layer_scale: bool = True, t_gelu: bool = True, t_weight_pos_embed: float = 1.0,
        t_sin_random_shift: int = 0, t_cape_mean_normalize: bool = True,
        t_cape_augment: bool = True,
        t_cape_glob_loc_scale: list[float] = (5000.0, 1.0, 1.4),  # type: ignore[assignment]
        t_sparse_self_attn: bool = False, t_sparse_cross_attn: bool = False,
        t_mask_type: str = "diag", t_mask_random_seed: int = 42,
        t_sparse_attn_window: int = 500, t_global_window: int = 100, t_sparsity: float = 0.95,
        t_auto_sparsity: bool = False, t_cross_first: bool = False, rescale: float = 0.1,
        samplerate: int = 44100, segment: float = 10, use_train_segment: bool = True,
    ) -> None:  # fmt: skip
        arguments = dict(locals())
        super().__init__(targets, samplerate, audio_channels)
        self.use_train_segment = use_train_segment
        self.bottom_channels = bottom_channels
        self.t_weight_decay, self.t_lr = t_weight_decay, t_lr
        self._build_hybrid(arguments)  # rescales the weights, before the transformer as demucs

        width = int(channels * growth ** (depth - 1))
        if bottom_channels:
            self.channel_upsampler = nn.Conv1d(width, bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(bottom_channels, width, 1)
            self.channel_upsampler_t = nn.Conv1d(width, bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom_channels, width, 1)
            width = bottom_channels
        transformer = {name[2:]: value for name, value in arguments.items() if name[:2] == "t_"}
        self.crosstransformer = cross_transformer(width, transformer)

    @property
    def training_segment(self) -> float:
        """Seconds of a training excerpt when the dataset sets none: ``segment``, the
        length separation pads to."""
        return float(self.segment)

    def training_length(self) -> int:
        """Samples in a training excerpt: ``segment`` seconds."""
        return int(self.segment * self.samplerate)

    def valid_length(self, length: int) -> int:
        """With ``use_train_segment``, at least the training length: shorter inputs are
        padded to it. Longer inputs are accepted whole (demucs 4.1.0 refuses them)."""
        if not self.use_train_segment:
            return length
        return max(length, self.training_length())

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> waveforms (batch, sources, channels, time)."""
        length = mixture.shape[-1]
        if self.use_train_segment and not self.training:
            mixture = F.pad(mixture, (0, self.valid_length(length) - length))
        sources = self._separate(mixture, self._transform)
        return {"waveforms": sources[..., :length]}

    def _transform(self, x: Tensor, xt: Tensor) -> tuple[Tensor, Tensor]:
        """The cross-domain transformer on the bottom of both branches: spectrogram
        features (batch, C, freqs, frames) and waveform features (batch, C, time frames)."""
        if self.crosstransformer is None:
            return x, xt
        if self.bottom_channels:
            freqs, frames = x.shape[-2:]
            x = self.channel_upsampler(x.flatten(2)).unflatten(2, (freqs, frames))
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if self.bottom_channels:
            x = self.channel_downsampler(x.flatten(2)).unflatten(2, (freqs, frames))
            xt = self.channel_downsampler_t(xt)
        return x, xt
