"""The Spleeter U-Net (Hennequin et al., JOSS 2020; after Jansson et al., ISMIR 2017).

``UNet`` is one network with the layers of Spleeter's ``apply_unet``
(``spleeter/model/functions/unet.py``): six 5x5 stride-2 convolutions (16 to 512 channels)
with batch norm and leaky ReLU 0.2, whose outputs before batch norm feed the decoder's
skip connections; six 5x5 stride-2 transposed convolutions with ReLU then batch norm,
dropout 0.5 on the first three; a 4x4 convolution of dilation 2 and a sigmoid giving the
mask. Keras geometry ("same" padding) and Keras batch-norm settings throughout.

``UNetSeparator`` is the sepkit model: STFT 4096/1024, the first 1024 bins (about 11 kHz
at 44.1 kHz) cut into patches of 512 frames, one U-Net per target (or one U-Net with a
mask per target), bins above set to zero. Trained with L1 on the masked magnitudes
(``loss=spectrogram_l1``); separation applies Spleeter's ratio masks across stems
(``niter=0``) or the multichannel Wiener filter (``niter>0``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sepkit.blocks.convolution import SameConv2d, SameConvTranspose2d, keras_batch_norm
from sepkit.models.base import InferenceOptions, SpectrogramModel

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),  # Spleeter's default encoder activation
    "relu": nn.ReLU,  # Spleeter's default decoder activation
    "elu": nn.ELU,  # both, in Spleeter's released 4- and 5-stem configs
}
SPLEETER_CHANNELS = [16, 32, 64, 128, 256, 512]
# Spleeter adds this to the sum of the stems' powers in its ratio masks
RATIO_MASK_EPSILON = 1e-10


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown U-Net activation {name!r}: use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class EncoderLayer(nn.Module):
    """Convolution (5x5, stride 2, "same"), batch norm, activation. ``forward`` returns
    (convolution output, activation output): the first feeds the skip connection."""

    def __init__(self, in_channels: int, out_channels: int, activation: str) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel_size=5, stride=2)
        self.norm = keras_batch_norm(out_channels)
        self.activation = _activation(activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        convolved = self.conv(x)
        return convolved, self.activation(self.norm(convolved))


class DecoderLayer(nn.Module):
    """Transposed convolution (5x5, stride 2, "same"), activation, batch norm, dropout."""

    def __init__(
        self, in_channels: int, out_channels: int, activation: str, dropout: float
    ) -> None:
        super().__init__()
        self.deconv = SameConvTranspose2d(in_channels, out_channels, kernel_size=5, stride=2)
        self.activation = _activation(activation)
        self.norm = keras_batch_norm(out_channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.norm(self.activation(self.deconv(x))))


class UNet(nn.Module):
    """Spleeter's U-Net: magnitude patches to masks in (0, 1).

    Input (batch, in_channels, frames, bins) with frames and bins multiples of
    2^len(channels) (512 x 1024 in Spleeter); output (batch, out_channels, frames, bins).
    ``channels``: encoder widths, the decoder mirrors them down to 1 channel before the
    final convolution to ``out_channels``. ``dropout`` applies after the first
    ``dropout_layers`` decoder layers.
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 2,
        channels: list[int] | None = None,
        encoder_activation: str = "leaky_relu",
        decoder_activation: str = "relu",
        dropout: float = 0.5,
        dropout_layers: int = 3,
    ) -> None:
        super().__init__()
        channels = list(channels or SPLEETER_CHANNELS)
        self.stride_product = 2 ** len(channels)
        widths = [in_channels, *channels]
        self.encoder = nn.ModuleList(
            EncoderLayer(widths[i], widths[i + 1], encoder_activation) for i in range(len(channels))
        )
        # decoder layer i outputs the width of encoder layer -(i + 2), then 1 channel; its
        # input is the previous decoder output concatenated with that encoder's skip
        decoder_widths = [*reversed(channels[:-1]), 1]
        inputs = [channels[-1], *(2 * width for width in decoder_widths[:-1])]
        self.decoder = nn.ModuleList(
            DecoderLayer(
                inputs[i],
                decoder_widths[i],
                decoder_activation,
                dropout if i < dropout_layers else 0.0,
            )
            for i in range(len(decoder_widths))
        )
        self.output_conv = SameConv2d(1, out_channels, kernel_size=4, dilation=2)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for layer in self.encoder:
            convolved, x = layer(x)
            skips.append(convolved)
        # The decoder starts from the last convolution's output before its batch norm:
        # Spleeter computes that layer's batch norm and activation but never uses them.
        x = skips.pop()
        for layer in self.decoder:
            x = layer(x)
            if skips:
                x = torch.cat([skips.pop(), x], dim=1)
        return torch.sigmoid(self.output_conv(x))


class UNetSeparator(SpectrogramModel):
    """Spleeter: U-Net masks on patches of the mixture magnitude.

    The magnitude (``n_fft`` 4096, ``hop_length`` 1024, Hann) is cut to its first
    ``max_bin`` bins (1024: ~11 kHz at 44.1 kHz; zero bins are added if the STFT has
    fewer), split into patches of ``patch_frames`` frames (512; the last one zero-padded;
    null: the whole input, padded to a multiple of 2^layers) and masked by one ``UNet`` per
    target, or by one U-Net giving a mask per target with ``multi_stem``. Bins above
    ``max_bin`` are zero in the estimates (Spleeter's "zeros" mask extension).

    ``encoder_activation``/``decoder_activation``: ``leaky_relu``/``relu`` (Spleeter's
    default, 2 stems) or ``elu``/``elu`` (the released 4- and 5-stem models).
    ``separation_exponent``: the power of Spleeter's ratio masks across stems,
    (y_i^p + eps/N) / (sum_j y_j^p + eps), used when separating with ``niter=0``.
    """

    training_segment = 11.87  # Spleeter's 512-frame patches of a 4096/1024 STFT at 44.1 kHz

    outputs = ("magnitudes", "mixture_spectrogram")

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 44100,
        nb_channels: int = 2,
        n_fft: int = 4096,
        hop_length: int = 1024,
        max_bin: int = 1024,
        patch_frames: int | None = 512,
        channels: list[int] | None = None,
        encoder_activation: str = "leaky_relu",
        decoder_activation: str = "relu",
        dropout: float = 0.5,
        multi_stem: bool = False,
        separation_exponent: float = 2.0,
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels, n_fft, hop_length)
        channels = list(channels or SPLEETER_CHANNELS)
        multiple = 2 ** len(channels)
        for name, value in (("max_bin", max_bin), ("patch_frames", patch_frames)):
            if value is not None and (value <= 0 or value % multiple):
                raise ValueError(
                    f"model.{name}={value} is not a multiple of {multiple} (2 ^ {len(channels)} "
                    f"stride-2 layers): use e.g. {max(1, round(value / multiple)) * multiple}"
                )
        self.max_bin = max_bin
        self.patch_frames = patch_frames
        self.frame_multiple = multiple
        self.multi_stem = multi_stem
        self.separation_exponent = separation_exponent
        unet = lambda outputs: UNet(  # noqa: E731
            nb_channels, outputs, channels, encoder_activation, decoder_activation, dropout
        )
        if multi_stem:
            self.unet = unet(nb_channels * len(self.targets))
        else:
            self.target_models = nn.ModuleDict({target: unet(nb_channels) for target in targets})

    def _patches(self, magnitude: Tensor) -> Tensor:
        """(batch, channels, bins, frames) -> (batch * patches, channels, patch, max_bin):
        Spleeter's (time, frequency) images, zero-padded."""
        batch, channels, bins, frames = magnitude.shape
        x = magnitude[:, :, : self.max_bin].transpose(2, 3)  # (batch, channels, frames, bins)
        patch = self.patch_frames or -(-frames // self.frame_multiple) * self.frame_multiple
        nb_patches = max(1, -(-frames // patch))
        x = nn.functional.pad(x, (0, self.max_bin - x.shape[-1], 0, nb_patches * patch - frames))
        x = x.reshape(batch, channels, nb_patches, patch, self.max_bin)
        return x.transpose(1, 2).reshape(batch * nb_patches, channels, patch, self.max_bin)

    def _unpatch(self, patches: Tensor, batch: int, bins: int, frames: int) -> Tensor:
        """(batch * patches, sources, channels, patch, max_bin) -> (batch, sources,
        channels, bins, frames): patches joined, padding cut, bins above max_bin zero."""
        _, sources, channels, patch, _ = patches.shape
        x = patches.reshape(batch, -1, sources, channels, patch, self.max_bin)
        x = x.permute(0, 2, 3, 1, 4, 5).reshape(batch, sources, channels, -1, self.max_bin)
        x = x[:, :, :, :frames, :bins].transpose(3, 4)
        return nn.functional.pad(x, (0, 0, 0, bins - x.shape[3]))

    def estimate(self, mixture_spectrogram: Tensor) -> dict[str, Tensor]:
        magnitude = mixture_spectrogram.abs()
        batch, channels, bins, frames = magnitude.shape
        patches = self._patches(magnitude)  # (batch * patches, channels, patch, max_bin)
        if self.multi_stem:
            masks = self.unet(patches).unflatten(1, (len(self.targets), channels))
        else:
            masks = torch.stack([unet(patches) for unet in self.target_models.values()], dim=1)
        estimates = masks * patches.unsqueeze(1)
        return {"magnitudes": self._unpatch(estimates, batch, bins, frames)}

    def separation_magnitudes(
        self, mixture_spectrogram: Tensor, options: InferenceOptions
    ) -> Tensor:
        """With ``niter=0``: Spleeter's ratio masks across stems times the mixture
        magnitude (zero above ``max_bin``); otherwise the U-Net estimates, which the
        Wiener filter refines."""
        estimates = self.estimate(mixture_spectrogram)["magnitudes"]
        if options.niter > 0:
            return estimates
        powers = estimates.float() ** self.separation_exponent
        nb_sources = estimates.shape[1]
        masks = (powers + RATIO_MASK_EPSILON / nb_sources) / (
            powers.sum(1, keepdim=True) + RATIO_MASK_EPSILON
        )
        masks[..., self.max_bin :, :] = 0.0
        return masks * mixture_spectrogram.abs().unsqueeze(1)
