"""Demucs's shift trick: separate copies of the input delayed by random offsets and average.

A convolutional network with strides is not exactly time-equivariant: its output depends
on where a sound falls on the stride grid. Averaging several separations of randomly
delayed inputs, each delay undone on the output, makes it nearly so; Défossez et al.
report up to 0.2 dB SDR with 10 shifts of up to 0.5 s.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_MAX_SHIFT_SECONDS = 0.5  # demucs 2.0.3 apply_model


def apply_shifts(
    separate: Callable[[Tensor], Tensor],
    mixture: Tensor,
    shifts: int,
    max_shift: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The mean of ``shifts`` separations of ``mixture`` delayed by random offsets.

    ``separate``: mixture (batch, channels, time) -> sources (batch, sources, channels,
    time), the same length in and out. ``max_shift``: the largest delay in samples (half
    a second in Demucs). Each pass puts a delay of silence, uniform in [0, max_shift]
    samples and drawn from ``generator`` (a CPU generator; None: torch's global one),
    before the mixture, separates, and drops the delay from the output. ``shifts`` 0
    separates once, undelayed. (Demucs takes the delay's samples from the audio before
    the segment where there is some; a caller wanting that passes the segment with its
    preceding context and trims the result.)
    """
    if shifts <= 0 or max_shift <= 0:
        return separate(mixture)
    length = mixture.shape[-1]
    total: Tensor | None = None
    for _ in range(shifts):
        delay = int(torch.randint(0, max_shift + 1, (1,), generator=generator))
        estimate = separate(F.pad(mixture, (delay, 0)))[..., delay : delay + length]
        total = estimate if total is None else total + estimate
    assert total is not None
    return total / shifts
