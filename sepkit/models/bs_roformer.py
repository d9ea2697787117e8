"""BS-RoFormer (Lu, Wang, Kong, Hung, "Music Source Separation with Band-Split RoPE
Transformer", 2023): the STFT cut into bands of bins, each band projected to features,
interleaved time and frequency transformers with rotary embeddings, and one complex mask
per target and bin estimated from its band's features.

Constructor arguments (with ``targets`` for ``num_stems``), state-dict keys and output
match ``bs_roformer.BSRoformer`` as audio-separator 0.47.1 ships it (the layout of the
Music-Source-Separation-Training project's community checkpoints), so those load with
``strict=True``; ``sepkit.models.pretrained.msst`` reads their YAML.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sepkit.blocks.band_split import (
    BandSplit,
    MaskEstimator,
    band_features,
    complex_masks,
    deinterleave_channels,
    interleave_channels,
)
from sepkit.blocks.roformer import RMSNorm, apply_axial_transformers, axial_transformers
from sepkit.blocks.stft import ISTFT, STFT, frequency_bins
from sepkit.models.base import SeparationModel

# the reference's 62 bands of a 2048-point STFT (the paper's split, about 60 bands): 24 of
# 2 bins, 12 of 4, 8 each of 12, 24 and 48, then 128 and 129
DEFAULT_FREQS_PER_BANDS = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)  # fmt: skip


class BandSplitRoformer(SeparationModel):
    """What the band-split RoFormers share: the STFT, the spectrogram's rows in and masked
    rows out, and the checks of reference arguments sepkit does not implement.

    Subclasses build ``band_split``, ``layers``, ``final_norm`` and ``mask_estimators``
    and say which spectrogram rows feed the bands (``band_rows``) and how the masks of
    those rows become one mask per row (``row_masks``).

    Separation cuts long inputs into 8 s segments (the community checkpoints'
    ``chunk_size`` of 352800 samples at 44.1 kHz) overlapping by half (their
    ``num_overlap: 2``), weighed and padded as MSST's ``demix`` does.
    """

    use_torch_checkpoint: bool = False  # subclasses set the reference's argument

    segment_seconds = 8.0
    segment_overlap = 0.5
    # MSST's musdb18 recipes train on 131584-sample chunks (2.98 s at 44.1 kHz)
    training_segment = 2.9837
    segment_weighting = "edge_fade"

    def __init__(
        self,
        targets: Sequence[str],
        sample_rate: int,
        channels: int,
        stft_n_fft: int,
        stft_hop_length: int,
        stft_win_length: int,
        stft_normalized: bool,
        stft_window_fn: Callable | None,
    ) -> None:
        super().__init__(list(targets), sample_rate, channels)
        unsupported = {
            "stft_win_length": (stft_win_length, stft_n_fft),
            "stft_normalized": (stft_normalized, False),
            "stft_window_fn": (stft_window_fn, None),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(
                    f"{type(self).__name__}: {name}={value!r} is not supported "
                    f"(use {supported!r}: a Hann window of stft_n_fft samples, not normalised)"
                )
        self.stft = STFT(stft_n_fft, stft_hop_length, window="hann", center=True)
        self.istft = ISTFT(stft_n_fft, stft_hop_length, window="hann", center=True)

    def band_rows(self, rows: Tensor) -> Tensor:
        """Spectrogram rows (batch, freq * channels, frames) -> the rows the bands take in
        order (batch, band rows, frames)."""
        return rows

    def row_masks(self, masks: Tensor) -> Tensor:
        """Masks of the band rows (batch, sources, band rows, frames) -> one mask per
        spectrogram row (batch, sources, freq * channels, frames)."""
        return masks

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> waveforms (batch, sources, channels, time)."""
        rows = interleave_channels(self.stft(mixture))  # (batch, freq * channels, frames)
        x = band_features(self.band_rows(rows))  # (batch, frames, band rows * 2)
        x = self.band_split(x.to(self.feature_dtype()))  # (batch, frames, bands, dim)
        checkpointed = self.use_torch_checkpoint and self.training and torch.is_grad_enabled()
        x = self.final_norm(apply_axial_transformers(self.layers, x, checkpointed))
        masks = torch.stack([estimate(x) for estimate in self.mask_estimators], dim=1)
        masks = self.row_masks(complex_masks(masks))  # (batch, sources, rows, frames)
        sources = deinterleave_channels(rows.unsqueeze(1) * masks, self.nb_channels)
        return {"waveforms": self.istft(sources, length=mixture.shape[-1])}

    def feature_dtype(self) -> torch.dtype:
        """The dtype of the band projections' weights (float32 unless the model was cast)."""
        return self.band_split.to_features[0][1].weight.dtype


class BSRoformer(BandSplitRoformer):
    """BS-RoFormer: the STFT's bins (2 * channels real values each) cut into consecutive
    bands of ``freqs_per_bands`` bins, each projected to ``dim`` features; ``depth``
    blocks of a time transformer (``time_transformer_depth`` layers, across frames) and a
    frequency transformer (``freq_transformer_depth`` layers, across bands), ``heads``
    heads of ``dim_head``, rotary embeddings; an RMSNorm; per target a mask estimator
    (per band an MLP of ``mask_estimator_depth`` layers, hidden width
    ``dim * mlp_expansion_factor``, and a GLU) giving a complex mask per bin, applied to
    the mixture's STFT and inverted to the input's length.

    ``stereo`` (the reference's switch) or ``nb_channels`` (sepkit's, from a dataset) say
    whether the audio has 2 channels or 1 (the default). ``freqs_per_bands`` must add up
    to ``stft_n_fft // 2 + 1``. ``use_torch_checkpoint`` recomputes each transformer's
    activations in the backward pass instead of keeping them (training memory for time).
    Arguments that change nothing but speed or the reference's own training loss
    (``flash_attn``, ``sage_attention``, ``multi_stft_*``) and those its forward never reads
    (``zero_dc``, ``skip_connection``, ``dim_freqs_in``) are accepted so that a community
    YAML's ``model:`` section loads, and ignored: sepkit trains with a loss from
    configs/loss. ``linear_transformer_depth`` > 0 (linear attention, which no
    published checkpoint uses) is refused.
    """

    def __init__(
        self,
        targets: list[str],
        dim: int,
        depth: int,
        stereo: bool | None = None,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        linear_transformer_depth: int = 0,
        freqs_per_bands: Sequence[int] = DEFAULT_FREQS_PER_BANDS,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        flash_attn: bool = True,
        mlp_expansion_factor: int = 4,
        sage_attention: bool = False,
        zero_dc: bool = True,
        use_torch_checkpoint: bool = False,
        skip_connection: bool = False,
        dim_freqs_in: int = 1025,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: Callable | None = None,
        mask_estimator_depth: int = 2,
        multi_stft_resolution_loss_weight: float = 1.0,
        multi_stft_resolutions_window_sizes: Sequence[int] = (4096, 2048, 1024, 512, 256),
        multi_stft_hop_size: int = 147,
        multi_stft_normalized: bool = False,
        multi_stft_window_fn: Callable | None = None,
        sample_rate: int = 44100,
        nb_channels: int | None = None,
    ) -> None:
        super().__init__(
            targets, sample_rate, audio_channels(stereo, nb_channels), stft_n_fft,
            stft_hop_length, stft_win_length, stft_normalized, stft_window_fn,
        )  # fmt: skip
        if linear_transformer_depth:
            raise ValueError(
                f"BSRoformer: linear_transformer_depth={linear_transformer_depth} is not "
                "supported (use 0: no published checkpoint has linear attention layers)"
            )
        _check_bands(freqs_per_bands, stft_n_fft)
        self.use_torch_checkpoint = use_torch_checkpoint
        dim_inputs = tuple(2 * bins * self.nb_channels for bins in freqs_per_bands)
        self.layers = axial_transformers(
            depth, time_transformer_depth, freq_transformer_depth, dim_head, dim=dim,
            heads=heads, attn_dropout=attn_dropout, ff_dropout=ff_dropout, norm_output=False,
        )  # fmt: skip
        self.final_norm = RMSNorm(dim)
        self.band_split = BandSplit(dim, dim_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, dim_inputs, max(mask_estimator_depth - 1, 0), mlp_expansion_factor)
            for _ in self.targets
        )


def _check_bands(freqs_per_bands: Sequence[int], n_fft: int) -> None:
    bins = frequency_bins(n_fft)
    if len(freqs_per_bands) < 2 or sum(freqs_per_bands) != bins:
        raise ValueError(
            f"BSRoformer: freqs_per_bands adds up to {sum(freqs_per_bands)} bins in "
            f"{len(freqs_per_bands)} bands; use two or more bands adding up to {bins} "
            f"(stft_n_fft={n_fft})"
        )


def audio_channels(stereo: bool | None, nb_channels: int | None) -> int:
    """Audio channels from the reference's ``stereo`` and/or sepkit's ``nb_channels``:
    2 or 1, mono when neither is given; the two must agree when both are."""
    implied = None if stereo is None else 2 if stereo else 1
    disagree = None not in (implied, nb_channels) and implied != nb_channels
    if nb_channels not in (None, 1, 2) or disagree:
        raise ValueError(
            f"stereo={stereo}, nb_channels={nb_channels}: give nb_channels 1 or 2, or stereo, "
            "or both alike (stereo true with nb_channels 2)"
        )
    return nb_channels or implied or 1
