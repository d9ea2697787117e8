"""Short-time Fourier transform layers.

Both layers keep their window as a non-persistent buffer: it follows the module to the
device but never enters a state dict, so weights of reference models (which hold no
window) load with ``strict=True``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def frequency_bins(n_fft: int) -> int:
    """Bins of a one-sided spectrum of ``n_fft`` points: 0 Hz to Nyquist."""
    return n_fft // 2 + 1


def make_window(kind: str, length: int) -> Tensor:
    """A periodic analysis window of ``length`` samples: ``hann`` or ``sqrt_hann``."""
    if kind == "hann":
        return torch.hann_window(length)
    if kind == "sqrt_hann":
        return torch.hann_window(length).sqrt()
    raise ValueError(f"unknown window {kind!r}: use 'hann' or 'sqrt_hann'")


class _FourierLayer(nn.Module):
    """What the STFT and its inverse share: frames of ``n_fft`` samples every
    ``hop_length``, a ``window`` (a non-persistent buffer), and centring."""

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

    @property
    def nb_bins(self) -> int:
        """Frequency bins of the spectrogram (``freq``)."""
        return frequency_bins(self.n_fft)


class STFT(_FourierLayer):
    """Waveform to complex spectrogram.

    Input (..., time) in any number of leading dimensions; output (..., freq, frames),
    complex, with ``freq = nb_bins = n_fft // 2 + 1`` and, when ``center`` is true,
    ``frames = time // hop_length + 1`` (the signal is padded by ``n_fft // 2`` on both
    sides by reflection; inputs too short to reflect, by zeros). Not normalised,
    one-sided: the convention of ``torch.stft`` and Open-Unmix.
    """

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
        center = self.center
        if center and flat.shape[-1] <= self.n_fft // 2:
            # reflect padding needs more samples than the pad; zero-pad very short inputs
            flat = nn.functional.pad(flat, (self.n_fft // 2, self.n_fft // 2))
            center = False
        spectrogram = torch.stft(
            flat,
            self.n_fft,
            self.hop_length,
            window=self.window.to(flat.dtype),
            center=center,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return spectrogram.reshape(*leading, *spectrogram.shape[-2:])


class ISTFT(_FourierLayer):
    """Complex spectrogram (..., freq, frames) back to a waveform (..., time).

    The exact inverse of :class:`STFT` with the same settings (overlap-add with the
    squared-window normalisation of ``torch.istft``); ``length`` trims or pads the output.

    When the hop divides ``n_fft`` (Open-Unmix: 4096 / 1024) the overlap-add is done here
    as ``n_fft / hop_length`` shifted additions of frame pieces, and signal by signal: the
    frames of every source and channel of a long input at once would be the largest
    allocation of a whole separation (four times the output for Open-Unmix). Other hops go
    through ``torch.istft``, also signal by signal.
    """

    def forward(self, spectrogram: Tensor, length: int | None = None) -> Tensor:
        leading = spectrogram.shape[:-2]
        flat = spectrogram.reshape(-1, *spectrogram.shape[-2:])
        if flat.dtype not in (torch.complex64, torch.complex128):
            flat = flat.to(torch.complex64)
        window = self.window.to(flat.real.dtype)
        frames = flat.shape[-1]
        start = self.n_fft // 2 if self.center else 0
        full_length = self.n_fft + self.hop_length * (frames - 1)
        if length is None:
            length = full_length - 2 * start
        envelope = None
        if self.n_fft % self.hop_length == 0 and frames > 0:
            envelope = self._window_envelope(window, frames)[start : start + length]
            if envelope.numel() and envelope.min() < 1e-11:
                envelope = None  # not invertible: torch.istft says so
        waveforms = flat.real.new_zeros((flat.shape[0], length))
        for index, signal in enumerate(flat):
            if envelope is None:
                waveforms[index] = self._torch_istft(signal, window, length)
            else:
                waveform = self._overlap_add(signal, window)[start : start + length]
                waveforms[index, : waveform.shape[-1]] = waveform
        if envelope is not None:
            waveforms[:, : envelope.shape[-1]] /= envelope
        return waveforms.reshape(*leading, length)

    def _torch_istft(self, signal: Tensor, window: Tensor, length: int) -> Tensor:
        return torch.istft(
            signal,
            self.n_fft,
            self.hop_length,
            window=window,
            center=self.center,
            normalized=False,
            onesided=True,
            length=length,
        )

    def _overlap_add(self, signal: Tensor, window: Tensor) -> Tensor:
        """(freq, frames) -> (n_fft + hop_length * (frames - 1),): the frames' inverse FFTs,
        windowed and added up."""
        return self._add_frames(torch.fft.irfft(signal.T, n=self.n_fft).mul_(window))

    def _window_envelope(self, window: Tensor, frames: int) -> Tensor:
        """The squared window added up at every frame position: what the overlap-add of
        windowed frames is divided by."""
        return self._add_frames(window.square().expand(frames, -1))

    def _add_frames(self, frame_signals: Tensor) -> Tensor:
        """(frames, n_fft) -> (n_fft + hop_length * (frames - 1),): frame t starts at
        t * hop_length, so its piece p (of hop_length samples) lands in hop block t + p."""
        frames = frame_signals.shape[0]
        pieces_per_frame = self.n_fft // self.hop_length
        pieces = frame_signals.reshape(frames, pieces_per_frame, self.hop_length)
        blocks = frame_signals.new_zeros((frames + pieces_per_frame - 1, self.hop_length))
        for piece in range(pieces_per_frame):
            blocks[piece : piece + frames] += pieces[:, piece]
        return blocks.view(-1)


def bandwidth_to_max_bin(sample_rate: float, n_fft: int, bandwidth: float) -> int:
    """Number of STFT bins up to and including ``bandwidth`` Hz.

    Open-Unmix crops its input to 16 kHz this way: 1487 bins at 44.1 kHz, n_fft 4096.
    """
    frequencies = np.linspace(0, sample_rate / 2, frequency_bins(n_fft), endpoint=True)
    return int(np.flatnonzero(frequencies <= bandwidth).max()) + 1
