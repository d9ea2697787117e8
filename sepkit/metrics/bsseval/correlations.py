"""Correlations of the references with themselves and with the estimates at every lag of the
distortion filters, and the Gram matrix of the delayed references built from them.

museval computes every correlation with full-length FFTs; here the lags 0..filters_len-1
are accumulated over short blocks (a batched matrix product of their cross-spectra), then
one short inverse FFT gives every lag: the same sums, with FFTs of a few thousand points.
"""

from __future__ import annotations

import math

import numpy as np

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array

__all__ = [
    "EPS",
    "FREQUENCIES_PER_CHUNK",
    "gram_matrix",
    "lagged_correlations",
]

# Size of the FFT of the block-wise correlations; blocks are CORRELATION_FFT_SIZE -
# (filters_len - 1) samples long, so that no lag wraps around.
CORRELATION_FFT_SIZE = 8192
# Blocks transformed together and frequencies contracted together (here and in the window
# energies): large enough for few, big operations (each one a synchronisation of torch's
# threads on a GPU or a busy machine), small enough for the transposes to stay in cache.
BLOCKS_PER_BATCH = 32
FREQUENCIES_PER_CHUNK = 2048
# museval adds the float64 machine epsilon to the Gram matrix's diagonal
EPS = float(np.finfo(np.float64).eps)


def lagged_correlations(signals: Array, num_x: int, num_lags: int) -> Array:
    """Cross-correlations of the first num_x signals with every signal, over the whole length.

    Args:
        signals: (R, N); x = signals[:num_x].
        num_x: P, how many leading signals to correlate with all R.
        num_lags: lags 0..num_lags-1 are returned.

    Returns:
        (P, R, num_lags) with out[p, r, k] = sum_n x[p, n] * signals[r, n + k] (zero beyond N).

    Each block of B samples of x, and the same block of every signal extended by
    num_lags - 1 samples, are transformed at size B + num_lags - 1, so that their circular
    correlation holds every lag without wrapping. The cross-spectra are summed over blocks
    (frequency by frequency, a matrix product over blocks) and one inverse FFT of that size
    gives all lags of all pairs.
    """
    num_signals, num_samples = signals.shape
    fft_size = max(CORRELATION_FFT_SIZE, 1 << math.ceil(math.log2(4 * num_lags)))
    block = fft_size - (num_lags - 1)
    extended = block + num_lags - 1
    num_blocks = -(-num_samples // block)
    # blocks whose extended span lies inside the signal are read as strided views
    num_inner_blocks = max(0, (num_samples - extended) // block + 1)
    num_freqs = fft_size // 2 + 1

    x_buffer = arrays.zeros(signals, (BLOCKS_PER_BATCH, num_x, fft_size))
    y_buffer = arrays.zeros(signals, (BLOCKS_PER_BATCH, num_signals, fft_size))
    cross_spectrum = arrays.zeros(signals, (num_freqs, num_x, num_signals), "complex128")
    for first in range(0, num_blocks, BLOCKS_PER_BATCH):
        count = min(BLOCKS_PER_BATCH, num_blocks - first)
        inner = max(0, min(count, num_inner_blocks - first))
        strides = (block, num_samples, 1)
        if inner > 0:
            x_buffer[:inner, :, :block] = arrays.strided(
                signals, (inner, num_x, block), strides, first * block
            )
            y_buffer[:inner, :, :extended] = arrays.strided(
                signals, (inner, num_signals, extended), strides, first * block
            )
        for index in range(inner, count):  # the last blocks, cut by the end of the signal
            start = (first + index) * block
            x_part = signals[:num_x, start : start + block]
            y_part = signals[:, start : start + extended]
            x_buffer[index] = 0
            y_buffer[index] = 0
            x_buffer[index, :, : x_part.shape[1]] = x_part
            y_buffer[index, :, : y_part.shape[1]] = y_part
        x_spectra = arrays.rfft(x_buffer[:count])  # (b, P, F)
        y_spectra = arrays.rfft(y_buffer[:count])  # (b, R, F)
        for low in range(0, num_freqs, FREQUENCIES_PER_CHUNK):
            band = slice(low, low + FREQUENCIES_PER_CHUNK)
            # sum over blocks of conj(X_p) Y_r: (f, P, b) @ (f, b, R)
            x_band = arrays.permuted(x_spectra[:, :, band], (2, 1, 0), conjugate=True)
            cross_spectrum[band] += x_band @ arrays.permuted(y_spectra[:, :, band], (2, 0, 1))
    correlations = arrays.irfft(cross_spectrum, n=fft_size, axis=0)[:num_lags]
    return arrays.permute(correlations, (1, 2, 0))


def gram_matrix(reference_correlations: Array) -> Array:
    """Gram matrix of the delayed references, in museval's (source, channel, lag) order.

    Args:
        reference_correlations: (P, P, L), out[p, q, k] = sum_n r_p[n] r_q[n + k], with
            P = sources * channels.

    Returns:
        (P * L, P * L) with G[(p, a), (q, b)] = <r_p delayed by a, r_q delayed by b>, the
        correlation of p and q at lag a - b: a symmetric block-Toeplitz matrix.
    """
    num_signals, _, num_lags = reference_correlations.shape
    # lag 0 of (p, q) and of (q, p) are two roundings of one number: take one
    lag_zero = reference_correlations[:, :, 0]
    reference_correlations = arrays.copy(reference_correlations)
    reference_correlations[:, :, 0] = (lag_zero + lag_zero.T) / 2
    # lags L-1, ..., 1, 0, -1, ..., -(L-1); a negative lag of (p, q) is a positive one of (q, p)
    descending_lags = arrays.library(reference_correlations).concatenate(
        [arrays.flip(reference_correlations, -1), reference_correlations.swapaxes(0, 1)[..., 1:]],
        axis=-1,
    )
    # G[(p, a), (q, b)] = descending_lags[p, q, (L - 1) - (a - b)]: a Hankel view in (L-1-a, b)
    span = 2 * num_lags - 1
    hankel = arrays.strided(
        descending_lags,
        (num_signals, num_lags, num_signals, num_lags),
        (num_signals * span, 1, span, 1),
        0,
    )
    return arrays.flip(hankel, 1).reshape(num_signals * num_lags, num_signals * num_lags)
