"""Wave-U-Net (Stoller, Ewert, Dixon, "Wave-U-Net: A Multi-Scale Neural Network for
End-to-End Audio Source Separation", ISMIR 2018).

A 1-D U-Net on the waveform: ``levels`` downsampling blocks (valid convolution, LeakyReLU,
decimation), one more convolution, ``levels`` upsampling blocks (interpolation, cropped
skip, valid convolution), then the cropped input mixture joined to the features and a
1x1 convolution per source.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.blocks.unet1d import DownsamplingBlock, UpsamplingBlock
from sepkit.models.base import SeparationModel

OUTPUTS = ("difference", "direct")
OUTPUT_ACTIVATIONS = ("tanh", "linear")


class WaveUNet(SeparationModel):
    """Wave-U-Net: mixture (batch, channels, time) -> waveforms (batch, sources, channels,
    time).

    Level i (from 1) has ``extra_filters * i`` channels; downsampling convolutions have
    ``down_kernel_size`` taps, upsampling ones ``up_kernel_size``. ``upsampling``: linear
    interpolation or the paper's learned interpolation. ``output``: ``direct`` gives every
    source its own 1x1 convolution and ``output_activation``; ``difference`` does so for
    all but the last target, which is the mixture minus the others (the paper's best
    models). All convolutions are valid: the network sees context on both sides of what
    it predicts. ``forward`` pads the input with that context (zeros beyond the signal)
    and returns exactly the input's length.

    Defaults are the paper's (12 levels, 24 extra filters, kernels 15 and 5, difference
    output, tanh); its best multi-instrument model uses linear upsampling, its best
    vocals model learned upsampling.
    """

    # the paper's 147443-sample inputs at 22.05 kHz (6.69 s); forward adds the context
    training_segment = 6.69

    def __init__(
        self,
        targets: list[str],
        sample_rate: int = 44100,
        nb_channels: int = 2,
        levels: int = 12,
        extra_filters: int = 24,
        down_kernel_size: int = 15,
        up_kernel_size: int = 5,
        upsampling: str = "linear",
        output: str = "difference",
        output_activation: str = "tanh",
    ) -> None:
        super().__init__(targets, sample_rate, nb_channels)
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r}: use one of {list(OUTPUTS)}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation={output_activation!r}: use one of {list(OUTPUT_ACTIVATIONS)}"
            )
        for name, size in {
            "down_kernel_size": down_kernel_size,
            "up_kernel_size": up_kernel_size,
        }.items():
            if size % 2 == 0:
                raise ValueError(f"{name}={size}: use an odd size so outputs stay centred")
        self.levels = levels
        self.down_kernel_size = down_kernel_size
        self.up_kernel_size = up_kernel_size
        self.output = output
        self.output_activation = output_activation

        widths = [extra_filters * (level + 1) for level in range(levels + 1)]
        self.down = nn.ModuleList(
            DownsamplingBlock(
                nb_channels if level == 0 else widths[level - 1], widths[level], down_kernel_size
            )
            for level in range(levels)
        )
        self.bottleneck = nn.Conv1d(widths[levels - 1], widths[levels], down_kernel_size)
        self.up = nn.ModuleList(
            UpsamplingBlock(
                widths[level + 1], widths[level], widths[level], up_kernel_size, upsampling
            )
            for level in reversed(range(levels))
        )
        estimated = len(self.targets) - (1 if output == "difference" else 0)
        self.source_outputs = nn.Conv1d(
            widths[0] + nb_channels, estimated * nb_channels, 1
        )  # one 1x1 convolution per source, side by side

    # -- geometry: everything follows from the length of the bottleneck ----------------------

    def _output_length(self, bottleneck: int) -> int:
        length = bottleneck
        for _ in range(self.levels):
            length = 2 * length - 1 - (self.up_kernel_size - 1)
        return length

    def _input_length(self, bottleneck: int) -> int:
        length = bottleneck + self.down_kernel_size - 1
        for _ in range(self.levels):
            length = 2 * length - 1 + self.down_kernel_size - 1
        return length

    def _bottleneck_for(self, length: int) -> int:
        """The shortest bottleneck whose output has at least ``length`` samples (and whose
        every upsampling level keeps at least one)."""
        smallest = 1
        while not self._all_positive(smallest):
            smallest += 1
        # invert output = 2 * input - up_kernel_size level by level; rounding up once at the
        # end suffices because the output grows with the bottleneck
        needed = float(length)
        for _ in range(self.levels):
            needed = (needed + self.up_kernel_size) / 2
        return max(smallest, math.ceil(needed))

    def _all_positive(self, bottleneck: int) -> bool:
        length = bottleneck
        for _ in range(self.levels):
            length = 2 * length - 1 - (self.up_kernel_size - 1)
            if length < 1:
                return False
        return True

    def valid_length(self, length: int) -> int:
        """The output length the network computes for at least ``length`` samples."""
        return self._output_length(self._bottleneck_for(length))

    def context(self, length: int) -> tuple[int, int]:
        """Samples of context the network reads before and after ``length`` samples."""
        bottleneck = self._bottleneck_for(length)
        extra = self._input_length(bottleneck) - self._output_length(bottleneck)
        return extra // 2, extra - extra // 2 + self._output_length(bottleneck) - length

    # -- the network -----------------------------------------------------------------------

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        batch, channels, length = mixture.shape
        before, after = self.context(length)
        x = F.pad(mixture, (before, after))

        skips = []
        for block in self.down:
            x, skip = block(x)
            skips.append(skip)
        x = F.leaky_relu(self.bottleneck(x), 0.2)
        for block in self.up:
            x = block(x, skips.pop())

        # the mixture samples the output is aligned with
        aligned_mixture = mixture.new_zeros(batch, channels, x.shape[-1])
        aligned_mixture[..., :length] = mixture
        estimates = self.source_outputs(torch.cat([aligned_mixture, x], dim=1))
        if self.output_activation == "tanh":
            estimates = torch.tanh(estimates)
        estimates = estimates.reshape(batch, -1, channels, x.shape[-1])
        if self.output == "difference":
            rest = aligned_mixture.unsqueeze(1) - estimates.sum(dim=1, keepdim=True)
            estimates = torch.cat([estimates, rest], dim=1)
        return {"waveforms": estimates[..., :length]}
