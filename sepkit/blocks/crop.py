"""Cropping along time, for networks whose layers shorten their input."""

from __future__ import annotations

from torch import Tensor


def center_trim(signal: Tensor, length: int) -> Tensor:
    """Keep the middle ``length`` samples of ``signal`` (..., time).

    When the excess is odd, the extra sample is cut from the end.
    """
    excess = signal.shape[-1] - length
    if excess < 0:
        raise ValueError(f"cannot trim {signal.shape[-1]} samples to a longer {length}")
    start = excess // 2
    return signal[..., start : start + length]
