"""Mel-Band RoFormer (Wang, Lu, Kong, Hung, Zhu, "Mel-Band RoFormer for Music Source
Separation", 2023): BS-RoFormer whose bands are the bins of overlapping mel filters.

Constructor arguments (with ``targets`` for ``num_stems``), state-dict keys and output
match ``mel_band_roformer.MelBandRoformer`` as audio-separator 0.47.1 ships it (the
layout of the community checkpoints), so those load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sepkit.blocks.band_split import BandSplit, MaskEstimator
from sepkit.blocks.mel import mel_band_membership
from sepkit.blocks.roformer import axial_transformers
from sepkit.models.bs_roformer import BandSplitRoformer, audio_channels


class MelBandRoformer(BandSplitRoformer):
    """Mel-Band RoFormer: ``num_bands`` mel filters (Slaney scale, 0 Hz to Nyquist, as
    ``librosa.filters.mel(sample_rate, stft_n_fft, num_bands)``) each take the bins where
    they are non-zero, so neighbouring bands share bins; every bin is covered. The bands
    go through BSRoformer's band split, ``depth`` time/frequency transformer pairs (each
    ending in an RMSNorm, with no final norm) and per-target mask estimators (per band an
    MLP of ``mask_estimator_depth`` hidden layers of ``4 * dim`` units: the reference
    never passes ``mlp_expansion_factor`` on); a bin's mask is the mean of the masks its
    bands give it.

    ``use_torch_checkpoint`` as for BSRoformer. Arguments the reference accepts for speed,
    for its own training loss or without reading them (``flash_attn``, ``sage_attention``,
    ``multi_stft_*``, ``zero_dc``, ``skip_connection``, ``dim_freqs_in``,
    ``mlp_expansion_factor``) are accepted and ignored; the output always has the input's
    length (the reference's ``match_input_audio_length=True``). ``stereo`` or
    ``nb_channels`` as for BSRoformer.
    """

    def __init__(
        self,
        targets: list[str],
        dim: int,
        depth: int,
        stereo: bool | None = None,
        time_transformer_depth: int = 2,
        freq_transformer_depth: int = 2,
        num_bands: int = 60,
        dim_head: int = 64,
        heads: int = 8,
        attn_dropout: float = 0.1,
        ff_dropout: float = 0.1,
        flash_attn: bool = True,
        mlp_expansion_factor: int = 4,
        sage_attention: bool = False,
        zero_dc: bool = True,
        use_torch_checkpoint: bool = False,
        skip_connection: bool = False,
        dim_freqs_in: int = 1025,
        sample_rate: int = 44100,
        stft_n_fft: int = 2048,
        stft_hop_length: int = 512,
        stft_win_length: int = 2048,
        stft_normalized: bool = False,
        stft_window_fn: Callable | None = None,
        mask_estimator_depth: int = 1,
        multi_stft_resolution_loss_weight: float = 1.0,
        multi_stft_resolutions_window_sizes: Sequence[int] = (4096, 2048, 1024, 512, 256),
        multi_stft_hop_size: int = 147,
        multi_stft_normalized: bool = False,
        multi_stft_window_fn: Callable | None = None,
        match_input_audio_length: bool = False,
        nb_channels: int | None = None,
    ) -> None:
        super().__init__(
            targets, sample_rate, audio_channels(stereo, nb_channels), stft_n_fft,
            stft_hop_length, stft_win_length, stft_normalized, stft_window_fn,
        )  # fmt: skip
        self.use_torch_checkpoint = use_torch_checkpoint
        membership = torch.from_numpy(mel_band_membership(sample_rate, stft_n_fft, num_bands))
        # band rows in order: each band's bins, each bin's channels (rows f * channels + c)
        bins = membership.nonzero()[:, 1]
        channels = torch.arange(self.nb_channels)
        freq_indices = (bins[:, None] * self.nb_channels + channels).flatten()
        bands_per_row = membership.sum(0).repeat_interleave(self.nb_channels)
        self.register_buffer("freq_indices", freq_indices, persistent=False)
        self.register_buffer("bands_per_row", bands_per_row.float()[:, None], persistent=False)

        dim_inputs = tuple(2 * int(count) * self.nb_channels for count in membership.sum(1))
        self.layers = axial_transformers(
            depth, time_transformer_depth, freq_transformer_depth, dim_head, dim=dim,
            heads=heads, attn_dropout=attn_dropout, ff_dropout=ff_dropout, norm_output=True,
        )  # fmt: skip
        self.final_norm = nn.Identity()  # each transformer ends in its own norm
        self.band_split = BandSplit(dim, dim_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(dim, dim_inputs, mask_estimator_depth) for _ in self.targets
        )

    def band_rows(self, rows: Tensor) -> Tensor:
        return rows[:, self.freq_indices]

    def row_masks(self, masks: Tensor) -> Tensor:
        batch, sources, _, frames = masks.shape
        rows = self.bands_per_row.shape[0]
        summed = masks.new_zeros((batch, sources, rows, frames))
        return summed.index_add_(2, self.freq_indices, masks) / self.bands_per_row
