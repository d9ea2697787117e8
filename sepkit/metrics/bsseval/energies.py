"""The energies of BSSEval's decomposition in every window, from the filters' spectra.

museval projects each window with one FFT convolution per source, channel pair and filter
set. Here each window is transformed once, the projections are products of spectra, and
their energies follow from Parseval's theorem, with no inverse transform.
"""

from __future__ import annotations

import math

import numpy as np

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array
from sepkit.metrics.bsseval.correlations import FREQUENCIES_PER_CHUNK

__all__ = ["WORKING_MEMORY_BYTES", "window_energies"]

# Memory for one batch of windows' spectra: the windows of a long track are transformed a
# batch at a time, so that memory stays bounded whatever the track's length; small enough
# that the pages touched stay few (each first touch is a page fault).
WORKING_MEMORY_BYTES = 64 * 2**20
# what each projection energy is, in the order _add_projection_energies sums them
PROJECTION_ENERGIES = ("spatial", "own", "interference", "all", "artifacts")


def _fast_fft_size(minimum: int) -> int:
    """Smallest 2^k or 3 * 2^k >= minimum: sizes FFT libraries transform fastest."""
    power_of_two = 1 << max(0, math.ceil(math.log2(minimum)))
    three_times = 3 * (power_of_two // 4)
    return three_times if three_times >= minimum else power_of_two


def _windows_per_batch(num_windows: int, num_signals: int, fft_size: int) -> int:
    """Windows transformed together: WORKING_MEMORY_BYTES of float64 windows of the 2 *
    num_signals signals and their spectra, at least one."""
    windows_per_batch = WORKING_MEMORY_BYTES // (2 * 2 * num_signals * fft_size * 8)
    return int(max(1, min(num_windows, windows_per_batch)))


def _bin_weights(fft_size: int, like: Array) -> Array:
    """(fft_size // 2 + 1,) Parseval's weights of a real signal's half spectrum: bins other
    than DC and Nyquist count twice."""
    num_freqs = fft_size // 2 + 1
    bin_weights = np.full(num_freqs, 2.0 / fft_size)
    bin_weights[0] = 1.0 / fft_size
    if fft_size % 2 == 0:
        bin_weights[-1] = 1.0 / fft_size
    return arrays.on_device_of(like, bin_weights)


def _projection_spectra(
    all_sources_filters: Array, own_source_filters: Array, num_channels: int, fft_size: int
) -> Array:
    """(F, S*C, 2*S*C) complex: per frequency, the matrix that maps the spectrum of a
    window's references s to those of P_j (block-diagonal: each source's own filters) and
    P_all; the five differences whose energies are needed follow from them, s and e."""
    num_signals = all_sources_filters.shape[0]
    all_filters = arrays.permuted(all_sources_filters, (1, 0, 2))  # (L, in, out)
    own_filters = arrays.permuted(own_source_filters, (2, 0, 1, 3))  # (L, S, in, out)
    all_spectra = arrays.rfft(all_filters, n=fft_size, axis=0)
    own_spectra = arrays.rfft(own_filters, n=fft_size, axis=0)
    num_freqs = fft_size // 2 + 1
    shape = (num_freqs, num_signals, 2 * num_signals)
    projections = arrays.zeros(all_sources_filters, shape, "complex128")
    for source in range(own_source_filters.shape[0]):
        channels = slice(source * num_channels, (source + 1) * num_channels)
        projections[:, channels, channels] = own_spectra[:, source]
    projections[:, :, num_signals:] = all_spectra
    return projections


def _add_projection_energies(
    spectra: Array, projections: Array, bin_weights: Array, energies: Array
) -> None:
    """Add the energies of |P_j - s|^2, |P_j|^2, |P_all - P_j|^2, |P_all|^2, |e - P_all|^2
    of a batch of windows to ``energies`` (5, b, S, C), from their spectra (b, 2*S*C, F)."""
    num_signals = spectra.shape[1] // 2
    for low in range(0, spectra.shape[2], FREQUENCIES_PER_CHUNK):
        band = slice(low, low + FREQUENCIES_PER_CHUNK)
        chunk = arrays.permuted(spectra[:, :, band], (2, 0, 1))  # (f, b, 2*S*C)
        references, estimates = chunk[..., :num_signals], chunk[..., num_signals:]
        projected = references @ projections[band]  # (f, b, 2*S*C)
        own, every = projected[..., :num_signals], projected[..., num_signals:]
        weights = bin_weights[band]
        parts = (own - references, own, every - own, every, estimates - every)
        for index, part in enumerate(parts):
            squared = part.real**2 + part.imag**2  # (f, b, S*C)
            band_energies = weights @ squared.reshape(len(weights), -1)
            energies[index] += band_energies.reshape(energies.shape[1:])


def window_energies(
    signals: Array,
    num_sources: int,
    all_sources_filters: Array,
    own_source_filters: Array,
    num_windows: int,
    window_len: int,
    hop: int,
) -> dict[str, Array]:
    """Energies of the BSSEval decomposition in every window.

    Args:
        signals: (2 * S * C, N): the references' S * C channels, then the estimates'.
        num_sources: S.
        all_sources_filters: (S * C_in, L, S * C_out), from distortion_filters.
        own_source_filters: (S, C_in, L, C_out), from distortion_filters.
        num_windows, window_len, hop: the framing, in samples.

    Returns:
        (S, windows) float64 arrays: "true" |s|^2, "distortion" |e - s|^2, "spatial"
        |P_j - s|^2, "own" |P_j|^2, "interference" |P_all - P_j|^2, "all" |P_all|^2 and
        "artifacts" |e - P_all|^2, summed over channels and over the window followed by
        L - 1 zeros, as museval sums them.
    """
    num_signals, num_samples = signals.shape[0] // 2, signals.shape[1]
    num_channels = num_signals // num_sources
    filters_len = all_sources_filters.shape[1]
    # every signal below is zero outside the window and the filters' tail, so a transform of
    # this size holds it whole (linear, not circular, convolution)
    fft_size = _fast_fft_size(window_len + filters_len - 1)
    bin_weights = _bin_weights(fft_size, signals)
    projections = _projection_spectra(
        all_sources_filters, own_source_filters, num_channels, fft_size
    )
    windows_per_batch = _windows_per_batch(num_windows, num_signals, fft_size)
    # zeros after each window: the filters' tail; the windows are copied in below
    buffer = arrays.zeros(signals, (windows_per_batch, 2 * num_signals, fft_size))
    # the PROJECTION_ENERGIES per (window, channel)
    projection_energies = arrays.zeros(signals, (5, num_windows, num_sources, num_channels))
    true_energy = arrays.zeros(signals, (num_windows, num_sources))
    distortion_energy = arrays.zeros(signals, (num_windows, num_sources))
    for first in range(0, num_windows, windows_per_batch):
        count = min(windows_per_batch, num_windows - first)
        batch = slice(first, first + count)
        buffer[:count, :, :window_len] = arrays.strided(
            signals, (count, 2 * num_signals, window_len), (hop, num_samples, 1), first * hop
        )
        frames = buffer[:count, :, :window_len].reshape(count, 2, num_sources, num_channels, -1)
        true, estimate = frames[:, 0], frames[:, 1]
        true_energy[batch] = (true**2).sum(axis=(2, 3))
        distortion_energy[batch] = ((estimate - true) ** 2).sum(axis=(2, 3))
        spectra = arrays.rfft(buffer[:count])  # (b, 2*S*C, F)
        _add_projection_energies(spectra, projections, bin_weights, projection_energies[:, batch])
    projection_energies = projection_energies.sum(axis=-1).swapaxes(1, 2)  # (5, S, windows)
    return {
        "true": true_energy.T,
        "distortion": distortion_energy.T,
        **dict(zip(PROJECTION_ENERGIES, projection_energies)),
    }
