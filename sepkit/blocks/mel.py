"""Mel filter banks on the Slaney mel scale, computed with numpy.

``mel_filter_bank(sample_rate, n_fft, n_mels)`` equals ``librosa.filters.mel`` with its
defaults (fmin 0, fmax sample_rate / 2, Slaney scale, Slaney area normalisation,
float32), bit for bit, without librosa at run time.
"""

from __future__ import annotations

import numpy as np

# Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above (6.4 per 27 mels)
_HZ_PER_MEL = 200.0 / 3
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: np.ndarray | float) -> np.ndarray:
    """Frequencies (Hz) to Slaney mels, same shape."""
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    linear = frequencies / _HZ_PER_MEL
    above = frequencies >= _LOG_START_HZ
    logarithmic = _LOG_START_MEL + np.log(np.where(above, frequencies, 1.0) / _LOG_START_HZ) / (
        _LOG_STEP
    )
    return np.where(above, logarithmic, linear)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Slaney mels to frequencies (Hz), same shape."""
    mels = np.asanyarray(mels, dtype=np.float64)
    linear = _HZ_PER_MEL * mels
    logarithmic = _LOG_START_HZ * np.exp(_LOG_STEP * (mels - _LOG_START_MEL))
    return np.where(mels >= _LOG_START_MEL, logarithmic, linear)


def mel_filter_bank(sample_rate: float, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32: triangular filters with centres evenly spaced in
    mels from 0 Hz to Nyquist, each scaled to unit area (2 / its width in Hz)."""
    bin_frequencies = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, bin_frequencies)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling)).astype(np.float32)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


def mel_band_membership(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """(num_bands, n_fft // 2 + 1) bool: the STFT bins each mel band covers (bins where its
    filter is non-zero; overlapping neighbours share bins). The first band also takes the
    0 Hz bin and the last the Nyquist bin, which no filter reaches, as the Mel-Band
    RoFormer does."""
    weights = mel_filter_bank(sample_rate, n_fft, num_bands)
    weights[0, 0] = 1.0
    weights[-1, -1] = 1.0
    return weights > 0
