"""ISTFT gives torch.istft's output (its own overlap-add when the hop divides n_fft)."""

from __future__ import annotations

import pytest
import torch

from sepkit.blocks.stft import ISTFT, STFT


@pytest.mark.parametrize(
    "n_fft,hop,dtype",
    [(4096, 1024, torch.float32), (512, 128, torch.float64), (400, 160, torch.float32)],
)
@pytest.mark.parametrize("length", [None, "same", "shorter"])
def test_istft_matches_torch_istft(n_fft: int, hop: int, dtype: torch.dtype, length):
    signals = torch.randn(2, 3, 11025, dtype=dtype, generator=torch.Generator().manual_seed(0))
    spectrogram = STFT(n_fft, hop)(signals)
    length = {None: None, "same": 11025, "shorter": 10000}[length]

    ours = ISTFT(n_fft, hop)(spectrogram, length=length)

    window = torch.hann_window(n_fft, dtype=dtype)
    flat = spectrogram.reshape(-1, *spectrogram.shape[-2:])
    expected = torch.istft(flat, n_fft, hop, window=window, length=length)
    assert ours.shape == (2, 3, expected.shape[-1]) and ours.dtype == dtype
    torch.testing.assert_close(ours.reshape(expected.shape), expected, rtol=0, atol=1e-5)
    if length is not None:
        torch.testing.assert_close(ours, signals[..., :length], rtol=0, atol=1e-5)


def test_istft_of_no_signals_has_the_length_of_one():
    spectrogram = torch.zeros(0, 2, 257, 40, dtype=torch.complex64)
    assert ISTFT(512, 128)(spectrogram).shape == (0, 2, 128 * 39)
