"""Conv-TasNet (Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude
Masking for Speech Separation", IEEE/ACM TASLP 2019).

A learned encoder turns the waveform into non-negative coefficients, a temporal
convolutional network estimates one mask per source on them, and a learned decoder turns
each masked representation back into a waveform. The state dicts of
``demucs.tasnet.ConvTasNet`` (demucs 2.0.3, Kaituo Xu's implementation) load with
``strict=True``: their parameter names are translated on loading.
"""

from __future__ import annotations

import re
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from sepkit.blocks.filterbank import LearnedEncoder, OverlapAddDecoder, covering_length
from sepkit.blocks.temporal_conv import TemporalConvNet
from sepkit.models.base import SeparationModel


class ConvTasNet(SeparationModel):
    """Conv-TasNet: mixture (batch, channels, time) -> waveforms (batch, sources, channels,
    time).

    Paper symbols: ``filters`` N, ``kernel_size`` L (encoder frames of L samples every
    L/2), ``bottleneck_channels`` B, ``skip_channels`` Sc (None: no skip path, the masks
    come from the last residual output as in Demucs's and Kaituo Xu's implementation),
    ``hidden_channels`` H, ``conv_kernel_size`` P, ``layers`` X (dilations 1 ... 2**(X-1)),
    ``repeats`` R. ``norm``: global (gLN), cumulative (cLN), channel or batch; a
    ``causal`` model needs one of the last three. ``mask``: sigmoid, softmax or relu.
    Several input channels share the encoder (a convolution over all of them) and the
    decoder writes every channel of every source.

    The defaults are the paper's best non-causal configuration (N 512, L 16, B 128, Sc
    128, H 512, P 3, X 8, R 3, gLN, sigmoid masks): 15.3 dB SI-SNRi on wsj0-2mix.
    """

    @property
    def training_segment(self) -> float:
        """Seconds of a training item where the dataset sets no segment (the music sets):
        the paper's 4 s excerpts at 8 kHz as a count of samples, which memory grows with."""
        return 32000 / self.sample_rate

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 8000,
        nb_channels: int = 1,
        filters: int = 512,
        kernel_size: int = 16,
        bottleneck_channels: int = 128,
        skip_channels: int | None = 128,
        hidden_channels: int = 512,
        conv_kernel_size: int = 3,
        layers: int = 8,
        repeats: int = 3,
        norm: str = "global",
        causal: bool = False,
        mask: str = "sigmoid",
        encoder_activation: str = "relu",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        if kernel_size < 2 or kernel_size % 2:
            raise ValueError(
                f"kernel_size={kernel_size}: the encoder hops by half a frame, so use an even "
                "kernel_size"
            )
        self.layers = layers
        self.causal = causal
        stride = kernel_size // 2
        self.encoder = LearnedEncoder(
            filters, kernel_size, stride, nb_channels, activation=encoder_activation
        )
        self.separator = TemporalConvNet(
            filters,
            len(self.targets),
            bottleneck_channels=bottleneck_channels,
            hidden_channels=hidden_channels,
            kernel_size=conv_kernel_size,
            layers=layers,
            repeats=repeats,
            norm=norm,
            causal=causal,
            skip_channels=skip_channels,
            mask=mask,
        )
        self.decoder = OverlapAddDecoder(filters, kernel_size, stride, nb_channels)
        self.register_load_state_dict_pre_hook(self._accept_demucs_names)

    def valid_length(self, length: int) -> int:
        """The smallest length >= ``length`` whose encoder frames cover every sample."""
        return covering_length(length, self.encoder.kernel_size, self.encoder.stride)

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        length = mixture.shape[-1]
        mixture = F.pad(mixture, (0, self.valid_length(length) - length))
        coefficients = self.encoder(mixture)  # (batch, filters, frames)
        masks = self.separator(coefficients)  # (batch, sources, filters, frames)
        waveforms = self.decoder(masks * coefficients.unsqueeze(1))
        return {"waveforms": waveforms[..., :length]}

    def _accept_demucs_names(self, module: Any, state_dict: dict, prefix: str, *_: Any) -> None:
        """Rename a ``demucs.tasnet.ConvTasNet`` state dict's keys to ours, in place."""
        if prefix + "encoder.conv1d_U.weight" not in state_dict:
            return
        for key in [key for key in state_dict if key.startswith(prefix)]:
            name = demucs_tasnet_key(key[len(prefix) :], self.layers, self.causal)
            state_dict[prefix + name] = state_dict.pop(key)


# demucs.tasnet's TemporalBlock is Sequential(conv1x1, PReLU, norm, DepthwiseSeparableConv)
# and DepthwiseSeparableConv is Sequential(depthwise, [Chomp1d,] PReLU, norm, pointwise)
_BLOCK_PARTS = {"0": "expand", "1": "expand_activation", "2": "expand_norm"}
_DEPTHWISE_PARTS = ["depthwise", "depthwise_activation", "depthwise_norm", "residual"]
_FIXED_NAMES = {
    "encoder.conv1d_U.weight": "encoder.conv.weight",
    "decoder.basis_signals.weight": "decoder.basis.weight",
    "separator.network.0.gamma": "separator.input_norm.weight",
    "separator.network.0.beta": "separator.input_norm.bias",
    "separator.network.1.weight": "separator.bottleneck.weight",
    "separator.network.3.weight": "separator.mask_conv.weight",
}
_BLOCK_KEY = re.compile(r"separator\.network\.2\.(\d+)\.(\d+)\.net\.(\d+)\.(.+)")


def demucs_tasnet_key(name: str, layers: int, causal: bool) -> str:
    """Our name for a parameter of ``demucs.tasnet.ConvTasNet`` (layers = its X)."""
    if name in _FIXED_NAMES:
        return _FIXED_NAMES[name]
    match = _BLOCK_KEY.fullmatch(name)
    if match is None:
        return name
    repeat, layer, part, rest = match.groups()
    block = f"separator.blocks.{int(repeat) * layers + int(layer)}"
    if part in _BLOCK_PARTS:
        return f"{block}.{_BLOCK_PARTS[part]}.{_norm_parameter(rest)}"
    # part "3": the depthwise-separable convolution, "net.<index>.<parameter>"
    index, parameter = rest.split(".")[1], rest.split(".", 2)[2]
    position = int(index) - (1 if causal and int(index) > 1 else 0)  # skip the Chomp1d
    return f"{block}.{_DEPTHWISE_PARTS[position]}.{_norm_parameter(parameter)}"


def _norm_parameter(name: str) -> str:
    return {"gamma": "weight", "beta": "bias"}.get(name, name)
