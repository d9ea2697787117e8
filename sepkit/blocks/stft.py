"""Short-time Fourier transform layers.

Both layers keep their window as a non-persistent buffer: it follows the module to the
device but never enters a state dict, so weights of reference models (which hold no
window) load with ``strict=True``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def make_window(kind: str, length: int) -> Tensor:
    """A periodic analysis window of ``length`` samples: ``hann`` or ``sqrt_hann``."""
    if kind == "hann":
        return torch.hann_window(length)
    if kind == "sqrt_hann":
        return torch.hann_window(length).sqrt()
    raise ValueError(f"unknown window {kind!r}: use 'hann' or 'sqrt_hann'")


class STFT(nn.Module):
    """Waveform to complex spectrogram.

    Input (..., time) in any number of leading dimensions; output (..., freq, frames),
    complex, with ``freq = n_fft // 2 + 1`` and, when ``center`` is true,
    ``frames = time // hop_length + 1`` (the signal is padded by ``n_fft // 2`` on both
    sides with ``pad_mode``). Not normalised, one-sided: the convention of
    ``torch.stft`` and Open-Unmix.
    """

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        window: str = "hann",
        center: bool = True,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.center = center
        self.pad_mode = pad_mode
        self.register_buffer("window", make_window(window, n_fft), persistent=False)

    @property
    def nb_bins(self) -> int:
        return self.n_fft // 2 + 1

    def num_frames(self, length: int) -> int:
        """Frames produced for a signal of ``length`` samples."""
        if self.center:
            return length // self.hop_length + 1
        return max(0, (length - self.n_fft) // self.hop_length + 1)

    def forward(self, waveform: Tensor) -> Tensor:
        leading = waveform.shape[:-1]
        flat = waveform.reshape(-1, waveform.shape[-1])
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        if self.center and self.pad_mode == "reflect" and flat.shape[-1] <= self.n_fft // 2:
            # reflect padding needs more samples than the pad; zero-pad very short inputs
            pad = self.n_fft // 2
            flat = nn.functional.pad(flat, (pad, pad))
            spectrogram = torch.stft(
                flat,
                self.n_fft,
                self.hop_length,
                window=self.window.to(flat.dtype),
                center=False,
                return_complex=True,
            )
        else:
            spectrogram = torch.stft(
                flat,
                self.n_fft,
                self.hop_length,
                window=self.window.to(flat.dtype),
                center=self.center,
                pad_mode=self.pad_mode,
                normalized=False,
                onesided=True,
                return_complex=True,
            )
        return spectrogram.reshape(*leading, *spectrogram.shape[-2:])


class ISTFT(nn.Module):
    """Complex spectrogram (..., freq, frames) back to a waveform (..., time).

    The exact inverse of :class:`STFT` with the same settings (overlap-add with the
    squared-window normalisation of ``torch.istft``); ``length`` trims or pads the output.
    """

    def __init__(
        self,
        n_fft: int = 4096,
        hop_length: int = 1024,
        window: str = "hann",
        center: bool = True,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.center = center
        self.register_buffer("window", make_window(window, n_fft), persistent=False)

    def forward(self, spectrogram: Tensor, length: int | None = None) -> Tensor:
        leading = spectrogram.shape[:-2]
        flat = spectrogram.reshape(-1, *spectrogram.shape[-2:])
        if flat.dtype not in (torch.complex64, torch.complex128):
            flat = flat.to(torch.complex64)
        real_dtype = torch.float64 if flat.dtype == torch.complex128 else torch.float32
        window = self.window.to(real_dtype)
        # One signal at a time: torch.istft holds every frame's n_fft samples before adding
        # them up, n_fft / hop_length times the output's size (4x for Open-Unmix); for all
        # sources and channels of a long input at once that would be the largest allocation
        # of a whole separation.
        if flat.shape[0] == 0:  # no signals: an empty batch of the length istft gives
            flat = flat.new_zeros((1, *flat.shape[1:]))
        waveforms = None
        for index, signal in enumerate(flat):
            waveform = torch.istft(
                signal,
                self.n_fft,
                self.hop_length,
                window=window,
                center=self.center,
                normalized=False,
                onesided=True,
                length=length,
            )
            if waveforms is None:
                waveforms = waveform.new_empty((flat.shape[0], waveform.shape[-1]))
            waveforms[index] = waveform
        waveforms = waveforms[: math.prod(leading)]
        return waveforms.reshape(*leading, waveforms.shape[-1])


def bandwidth_to_max_bin(sample_rate: float, n_fft: int, bandwidth: float) -> int:
    """Number of STFT bins up to and including ``bandwidth`` Hz.

    Open-Unmix crops its input to 16 kHz this way: 1487 bins at 44.1 kHz, n_fft 4096.
    """
    frequencies = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, endpoint=True)
    return int(np.flatnonzero(frequencies <= bandwidth).max()) + 1
