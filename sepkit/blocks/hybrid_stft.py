"""The STFT framing of the hybrid Demucs models (Défossez, "Hybrid Spectrogram and Waveform
Source Separation", 2021; Rouard, Massa, Défossez, "Hybrid Transformers for Music Source
Separation", 2023).

The spectrogram branch and the waveform branch of a hybrid model must line up: after the
convolutions that divide time by the hop, both must hold the same number of frames. So the
signal is padded (by reflection) with 3/2 of a hop on the left and enough on the right to
reach a whole number of hops, the transform is centred as usual, and the two extra frames on
each side are dropped: ``ceil(time / hop)`` frames, frame ``t`` centred on sample
``t * hop + hop / 2``. The Nyquist bin is dropped too, leaving ``n_fft / 2`` bins that halve
cleanly through strided convolutions. The transform is normalised (divided by
``sqrt(n_fft)``), the hop is ``n_fft / 4`` and the window a Hann window, as in demucs 4.1.0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sepkit.blocks.stft import STFT


def reflect_pad(signal: Tensor, left: int, right: int) -> Tensor:
    """Pad (..., time) by reflection; a signal too short to reflect is first zero-padded
    (on the right, then on the left) until it is one sample longer than the larger pad, so
    the original samples stay at ``left:left + time``."""
    leading, length = signal.shape[:-1], signal.shape[-1]
    signal = signal.reshape(-1, length)  # reflection padding takes 2-D or 3-D inputs
    longest = max(left, right)
    if length <= longest:
        extra = longest - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        signal = F.pad(signal, (extra_left, extra_right))
        left, right = left - extra_left, right - extra_right
    return F.pad(signal, (left, right), mode="reflect").reshape(*leading, -1)


class HybridSTFT(nn.Module):
    """(..., time) <-> complex (..., n_fft / 2, ceil(time / hop)), hop = n_fft / 4.

    ``framing`` is ``"hybrid"`` (the alignment above), ``"hybrid_old"`` (the same frames
    but zero padding, a quirk some Demucs v3 MDX models were trained with) or ``"plain"``
    (a centred STFT of ``time // hop + 1`` frames, for a spectrogram-only model).
    """

    def __init__(self, n_fft: int = 4096, framing: str = "hybrid") -> None:
        super().__init__()
        if framing not in ("hybrid", "hybrid_old", "plain"):
            raise ValueError(f"framing={framing!r}: use 'hybrid', 'hybrid_old' or 'plain'")
        self.n_fft = n_fft
        self.hop_length = n_fft // 4
        self.framing = framing
        self.stft = STFT(n_fft, self.hop_length, center=True)

    def forward(self, signal: Tensor) -> Tensor:
        """(..., time) -> complex (..., n_fft / 2, frames)."""
        hop = self.hop_length
        if self.framing == "plain":
            return self.stft(signal)[..., :-1, :] / math.sqrt(self.n_fft)
        frames = math.ceil(signal.shape[-1] / hop)
        pad = hop // 2 * 3
        right = pad + frames * hop - signal.shape[-1]
        if self.framing == "hybrid":
            signal = reflect_pad(signal, pad, right)
        else:
            signal = F.pad(signal, (pad, right))
        spectrogram = self.stft(signal)[..., :-1, 2 : 2 + frames]
        return spectrogram / math.sqrt(self.n_fft)

    def inverse(self, spectrogram: Tensor, length: int) -> Tensor:
        """complex (..., n_fft / 2, frames) -> (..., length)."""
        hop = self.hop_length
        if self.framing == "plain":
            return self._istft(F.pad(spectrogram, (0, 0, 0, 1)), length)
        spectrogram = F.pad(spectrogram, (2, 2, 0, 1))  # the two outer frames, Nyquist
        pad = hop // 2 * 3
        whole = hop * math.ceil(length / hop)
        if self.framing == "hybrid_old":
            return self._istft(spectrogram, whole)[..., :length]
        return self._istft(spectrogram, whole + 2 * pad)[..., pad : pad + length]

    def _istft(self, spectrogram: Tensor, length: int) -> Tensor:
        # torch.istft on all signals at once: a model's input is a segment of seconds, for
        # which sepkit's ISTFT (signal by signal, to keep whole songs small) is slower
        leading = spectrogram.shape[:-2]
        flat = spectrogram.reshape(-1, *spectrogram.shape[-2:])
        window = self.stft.window.to(flat.real.dtype)
        signal = torch.istft(
            flat, self.n_fft, self.hop_length, window=window, normalized=True, length=length
        )
        return signal.reshape(*leading, length)
