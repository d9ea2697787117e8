"""Band-limited resampling by small rational factors (windowed-sinc interpolation).

Demucs v2 (``demucs/model.py`` of demucs 2.0.3) upsamples its input by 2 before the
encoder and downsamples the decoder's output by 2 with julius's ``resample_frac``
(24 zero crossings, roll-off 0.945). ``SincResample`` computes the same filter, so a
Demucs built from sepkit's blocks gives the published models' output.

The method (J. O. Smith, "Digital Audio Resampling", ccrma.stanford.edu/~jos/resample):
an output sample at time t (in input samples) is the sum of input samples weighted by a
low-passed sinc centred on t, truncated to ``zeros`` zero crossings on each side and
tapered by a raised-cosine window. For a ratio ``new / old`` of small integers, the
output times repeat their fractional position every ``old`` input samples, so there are
only ``new`` distinct filters: one strided convolution per filter, interleaved.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SincResample(nn.Module):
    """Resample from ``old_rate`` to ``new_rate`` (integers, reduced by their gcd).

    ``zeros``: zero crossings of the sinc kept on each side. ``rolloff``: the low-pass
    cut-off as a fraction of the lower of the two Nyquist frequencies, leaving room for
    the finite filter's transition band. Input (..., time) -> output (..., floor(time *
    new / old)). The signal is extended by repeating its edge samples, so a constant
    stays constant up to the edges. The filters are a non-persistent buffer: they are not
    part of a model's state dict.
    """

    def __init__(
        self, old_rate: int, new_rate: int, zeros: int = 24, rolloff: float = 0.945
    ) -> None:
        super().__init__()
        if old_rate < 1 or new_rate < 1:
            raise ValueError(f"sample rates must be positive integers, got {old_rate}, {new_rate}")
        divisor = math.gcd(old_rate, new_rate)
        self.old_rate = old_rate // divisor
        self.new_rate = new_rate // divisor
        self.zeros = zeros
        self.rolloff = rolloff
        # cut-off in cycles per (reduced) time unit
        cutoff = min(self.old_rate, self.new_rate) * rolloff
        # input samples on each side of an output instant that the filter reaches
        self.half_width = math.ceil(zeros * self.old_rate / cutoff)
        offsets = torch.arange(-self.half_width, self.half_width + self.old_rate).float()
        filters = []
        for phase in range(self.new_rate):
            # distance in units of the cut-off period between each input sample and the
            # output instant phase / new_rate
            distance = (offsets / self.old_rate - phase / self.new_rate) * cutoff
            distance = distance.clamp(-zeros, zeros) * math.pi
            window = torch.cos(distance / zeros / 2) ** 2
            sinc = torch.where(
                distance == 0, torch.ones_like(distance), torch.sin(distance) / distance
            )
            taps = sinc * window
            filters.append(taps / taps.sum())  # unit DC gain
        self.register_buffer("filters", torch.stack(filters)[:, None, :], persistent=False)

    def output_length(self, length: int) -> int:
        return self.new_rate * length // self.old_rate

    def forward(self, signal: Tensor) -> Tensor:
        """(..., time) -> (..., floor(time * new_rate / old_rate))."""
        if self.old_rate == self.new_rate:
            return signal
        *leading, length = signal.shape
        flat = signal.reshape(-1, 1, length)
        padded = F.pad(flat, (self.half_width, self.half_width + self.old_rate), mode="replicate")
        # (batch, phases, positions): output sample position * new + phase
        phases = F.conv1d(padded, self.filters.to(signal.dtype), stride=self.old_rate)
        interleaved = phases.transpose(1, 2).reshape(*leading, -1)
        return interleaved[..., : self.output_length(length)]
