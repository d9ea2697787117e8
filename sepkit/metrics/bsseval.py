"""BSSEval v4 in torch: the metrics of museval 0.4.1, computed much faster.

BSSEval v4 (Liutkus, Stöter and Ito, "The 2018 Signal Separation Evaluation Campaign",
LVA/ICA 2018) decomposes each estimate into the filtered true source image, spatial
distortion, interference and artifacts, with distortion filters of `filters_len` taps solved
once over the whole track, and reports four energy ratios per window:

    SDR = 10 log10(|s|^2 / |e - s|^2)                   source to distortion
    ISR = 10 log10(|s|^2 / |P_j - s|^2)                 image to spatial distortion
    SIR = 10 log10(|P_j|^2 / |P_all - P_j|^2)           source to interference
    SAR = 10 log10(|P_all|^2 / |e - P_all|^2)           source to artifacts

where, in each window, s is the reference image, e the estimate, P_j the projection of e on
delayed copies of its own reference and P_all the projection on delayed copies of all
references (the filters are those of the whole track, applied to the window's samples; every
signal is zero-padded by filters_len - 1 samples after the window).

What museval does, and what this module does instead to get the same numbers faster:

- museval computes every reference/estimate correlation with full-length FFTs (2^21 points
  for 30 s, about 125 of them per 4-source stereo track). Here the correlations at lags
  0..filters_len-1 are accumulated over short blocks: the cross-spectra of all blocks are
  summed by one batched matrix product per frequency, then a single short inverse FFT gives
  the lags.
- museval factorises the (sources*channels*filters_len)^2 Gram matrix once per estimated
  source (4 LU factorisations of a 4096^2 matrix for 4 stereo sources). Here it is
  factorised once and solved for all estimates together; the per-source systems (the
  diagonal blocks) are factorised as one batch.
- museval projects every window with one FFT convolution per (source, channel, channel,
  filter set); here each window's references are transformed once and all projections are
  products in the frequency domain, batched over windows.

The solver is museval's: LU with partial pivoting of G + eps I (eps = float64 machine
epsilon), not Cholesky. References band-limited like MUSDB18's (AAC, nothing above 16 kHz)
make G nearly singular; Cholesky then fails where LU still gives the same projections as
museval.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["bss_eval_v4", "number_of_windows", "silent_sources"]

# Length of the FFT used to accumulate block-wise correlations; the blocks are
# CORRELATION_FFT_SIZE - (filters_len - 1) samples long so that no lag wraps around.
CORRELATION_FFT_SIZE = 8192
# Upper bound on the size of the intermediate tensors of one batch of windows or blocks.
WORKING_MEMORY_BYTES = 256 * 2**20


def _next_fast_fft_size(minimum: int) -> int:
    """Smallest 2^a 3^b 5^c 7^d >= minimum (sizes FFT libraries transform quickly)."""
    size = minimum
    while True:
        remainder = size
        for factor in (2, 3, 5, 7):
            while remainder % factor == 0:
                remainder //= factor
        if remainder == 1:
            return size
        size += 1


def _as_sources_tensor(audio: Any, name: str, device: torch.device) -> torch.Tensor:
    """Array-like -> float64 tensor (sources, samples, channels), as np.atleast_3d does."""
    tensor = torch.as_tensor(np.asarray(audio) if not torch.is_tensor(audio) else audio)
    tensor = tensor.to(device=device, dtype=torch.float64)
    if tensor.ndim == 1:
        tensor = tensor[None, :, None]
    elif tensor.ndim == 2:
        tensor = tensor[:, :, None]
    elif tensor.ndim != 3:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}: expected (sources, samples, channels)"
        )
    return tensor


def _pad_or_truncate(estimates: torch.Tensor, num_samples: int) -> torch.Tensor:
    """museval.pad_or_truncate: cut estimates to the references' length or pad with zeros."""
    if estimates.shape[1] >= num_samples:
        return estimates[:, :num_samples]
    return torch.nn.functional.pad(estimates, (0, 0, 0, num_samples - estimates.shape[1]))


def _silent_samples_mask(sources: torch.Tensor) -> torch.Tensor:
    """(sources, samples, channels) -> bool (sources, samples), True where silent.

    museval calls a sample silent when the sum over channels is zero (so a stereo sample
    (x, -x) counts as silent too); this follows it exactly.
    """
    return sources.sum(dim=2) == 0


def _framing(num_samples: int, window: int, hop: int) -> tuple[int, int]:
    """museval.metrics.Framing: (number of windows, samples per window)."""
    if window < num_samples:
        return (num_samples - window + hop) // hop, window
    # one window covering the whole (shorter) signal
    return 1, num_samples


def number_of_windows(num_samples: int, window: int, hop: int) -> int:
    """How many windows BSSEval scores: floor((N - window + hop) / hop), at least one."""
    return _framing(num_samples, window, hop)[0]


def silent_sources(sources: Any) -> list[int]:
    """Indices of the sources that museval calls silent over the whole signal.

    Args:
        sources: (sources, samples, channels) array or tensor.

    A source is silent when its sum over channels is zero at every sample (museval's rule,
    under which a stereo source (x, -x) is silent too). bss_eval_v4 raises on such sources.
    """
    tensor = _as_sources_tensor(sources, "sources", torch.device("cpu"))
    return _silent_samples_mask(tensor).all(dim=1).nonzero().flatten().tolist()


def _lagged_correlations(signals: torch.Tensor, num_x: int, num_lags: int) -> torch.Tensor:
    """Cross-correlations of the first num_x signals with every signal, over the whole length.

    Args:
        signals: (N, R) signals, time first; x = signals[:, :num_x].
        num_x: P, how many leading signals to correlate with all R.
        num_lags: lags 0..num_lags-1 are returned.

    Returns:
        (P, R, num_lags) with out[p, r, k] = sum_n x[n, p] * signals[n + k, r] (zero beyond N).

    The signals are cut into blocks of B samples. Each block of x, and the same block of
    the signals extended by num_lags - 1 samples, are transformed at size B + num_lags - 1,
    so that their circular correlation holds every lag without wrapping; the cross-spectra
    are summed over blocks (a batched matrix product over blocks, frequency by frequency)
    and one inverse FFT of that size gives all lags of all pairs.
    """
    num_samples, num_signals = signals.shape
    fft_size = max(CORRELATION_FFT_SIZE, 1 << math.ceil(math.log2(4 * num_lags)))
    block = fft_size - (num_lags - 1)
    extended = block + num_lags - 1
    num_blocks = -(-num_samples // block)
    # blocks whose extended span lies inside the signal are read as strided views
    num_inner_blocks = max(0, (num_samples - extended) // block + 1)

    num_freqs = fft_size // 2 + 1
    # small batches of blocks keep the transposes below in cache
    blocks_per_batch = 16
    x_buffer = signals.new_zeros(blocks_per_batch, fft_size, num_x)
    y_buffer = signals.new_zeros(blocks_per_batch, fft_size, num_signals)
    cross_spectrum = signals.new_zeros(num_freqs, num_x, num_signals, dtype=torch.complex128)
    for first in range(0, num_blocks, blocks_per_batch):
        count = min(blocks_per_batch, num_blocks - first)
        inner = max(0, min(count, num_inner_blocks - first))
        strides = (block * num_signals, num_signals, 1)
        offset = first * block * num_signals
        x_buffer[:inner, :block] = signals.as_strided((inner, block, num_x), strides, offset)
        y_buffer[:inner, :extended] = signals.as_strided(
            (inner, extended, num_signals), strides, offset
        )
        for index in range(inner, count):  # the last blocks, cut by the end of the signal
            start = (first + index) * block
            x_part = signals[start : start + block, :num_x]
            y_part = signals[start : start + extended]
            x_buffer[index].zero_()[: len(x_part)] = x_part
            y_buffer[index].zero_()[: len(y_part)] = y_part
        x_spectra = torch.fft.rfft(x_buffer[:count], dim=1)  # (b, F, P)
        y_spectra = torch.fft.rfft(y_buffer[:count], dim=1)  # (b, F, R)
        # sum over blocks of conj(X_p) Y_r: (F, P, b) @ (F, b, R)
        cross_spectrum.baddbmm_(
            x_spectra.permute(1, 2, 0).conj().contiguous(), y_spectra.transpose(0, 1).contiguous()
        )
    correlations = torch.fft.irfft(cross_spectrum, n=fft_size, dim=0)[:num_lags]
    return correlations.permute(1, 2, 0)


def _gram_matrix(reference_correlations: torch.Tensor) -> torch.Tensor:
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
    reference_correlations = reference_correlations.clone()
    reference_correlations[:, :, 0] = (lag_zero + lag_zero.T) / 2
    # lags L-1, ..., 1, 0, -1, ..., -(L-1); a negative lag of (p, q) is a positive one of (q, p)
    descending_lags = torch.cat(
        [reference_correlations.flip(-1), reference_correlations.transpose(0, 1)[..., 1:]], dim=-1
    ).contiguous()
    # G[(p, a), (q, b)] = descending_lags[p, q, (L - 1) - (a - b)]: a Hankel view in (L-1-a, b)
    stride_p, stride_q, _ = descending_lags.stride()
    hankel = descending_lags.as_strided(
        (num_signals, num_lags, num_signals, num_lags), (stride_p, 1, stride_q, 1)
    )
    gram = hankel.flip(1).reshape(num_signals * num_lags, num_signals * num_lags)
    return gram


def _solve_shifted_gram(
    shifted_matrix: torch.Tensor, right_hand_sides: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve (G + eps I) X = B for symmetric positive semi-definite G, batched.

    Args:
        shifted_matrix: (..., n, n) G + eps I, eps the float64 machine epsilon (museval's).
        right_hand_sides: (..., n, k).

    Returns:
        solution: (..., n, k).
        condition: (...,) estimated condition number of G + eps I (inf when singular).

    museval calls np.linalg.solve (LU) and, on an exactly singular matrix, means to fall back
    to np.linalg.lstsq(G, D) (its except clause names np.linalg.linalg, which numpy 2
    removed, so museval 0.4.1 raises AttributeError there instead). G is a Gram matrix, so
    Cholesky gives the same solution at half the cost of LU; where rounding makes it fail
    (numerically singular G) LU takes over as in museval, then least squares as museval
    intends.
    """
    cholesky_factor, info = torch.linalg.cholesky_ex(shifted_matrix)
    if not bool((info != 0).any()):

        def solve(rhs: torch.Tensor) -> torch.Tensor:
            # two triangular solves: torch.cholesky_solve copies the factor on every call
            lower = torch.linalg.solve_triangular(cholesky_factor, rhs, upper=False)
            return torch.linalg.solve_triangular(cholesky_factor.mT, lower, upper=True)

        singular = info != 0
    else:
        lu_factors, pivots, info = torch.linalg.lu_factor_ex(shifted_matrix)
        singular = info != 0

        def solve(rhs: torch.Tensor) -> torch.Tensor:
            return torch.linalg.lu_solve(lu_factors, pivots, rhs)

    solution = solve(right_hand_sides)
    condition = _condition_estimate(shifted_matrix, solve)
    if bool(singular.any()):
        eps = torch.finfo(torch.float64).eps
        matrix = shifted_matrix[singular].cpu()
        matrix.diagonal(dim1=-2, dim2=-1).sub_(eps)
        # gelsd (SVD; numpy's driver and default rcond) exists on CPU only
        fallback = torch.linalg.lstsq(matrix, right_hand_sides[singular].cpu(), driver="gelsd")
        solution[singular] = fallback.solution.to(solution.device)
        condition[singular] = math.inf
    return solution, condition


def _condition_estimate(matrix: torch.Tensor, solve: Any, iterations: int = 4) -> torch.Tensor:
    """Rough condition number of symmetric (..., n, n) matrices from their factorisation.

    The largest eigenvalue is bounded by the largest absolute row sum; the smallest is
    estimated by a few steps of inverse iteration (cheap: the factorisation exists).
    """
    generator = torch.Generator(device=matrix.device).manual_seed(0)
    vector = torch.randn(
        (*matrix.shape[:-1], 1), generator=generator, dtype=matrix.dtype, device=matrix.device
    )
    growth = torch.ones(matrix.shape[:-2], dtype=matrix.dtype, device=matrix.device)
    for _ in range(iterations):
        vector = vector / vector.norm(dim=(-2, -1), keepdim=True)
        vector = solve(vector)
        growth = vector.norm(dim=(-2, -1))
    largest = torch.linalg.vector_norm(matrix, ord=1, dim=-1).amax(dim=-1)
    return largest * growth


def _distortion_filters(
    signals: torch.Tensor, filters_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The v4 distortion filters, solved once over the whole signals.

    Args:
        signals: (N, 2, S, C), time first; [:, 0] the references, [:, 1] the estimates.
        filters_len: L, number of filter taps.

    Returns:
        all_sources_filters: (S_ref * C_in, L, S_est * C_out), the least-squares filters that
            project each estimate on all delayed references.
        own_source_filters: (S, C_in, L, C_out), the filters that project estimate j on the
            delayed copies of reference j alone.
    """
    num_samples, _, num_sources, num_channels = signals.shape
    num_signals = num_sources * num_channels
    correlations = _lagged_correlations(
        signals.view(num_samples, 2 * num_signals), num_signals, filters_len
    )
    shifted_gram = _gram_matrix(correlations[:, :num_signals])
    shifted_gram.diagonal().add_(torch.finfo(torch.float64).eps)
    # D[(p, tau), (j, c)] = <r_p delayed by tau, e_(j, c)>
    reference_estimate = correlations[:, num_signals:].permute(0, 2, 1)
    reference_estimate = reference_estimate.reshape(num_signals * filters_len, num_signals)

    # one factorisation for all estimates (museval factorises once per estimate)
    all_sources_filters, all_condition = _solve_shifted_gram(shifted_gram, reference_estimate)

    # each estimate on its own reference: the diagonal blocks, factorised as one batch
    size = num_channels * filters_len
    own_gram = torch.stack(
        [
            shifted_gram[j * size : (j + 1) * size, j * size : (j + 1) * size]
            for j in range(num_sources)
        ]
    )
    own_rhs = torch.stack(
        [
            reference_estimate[j * size : (j + 1) * size, j * num_channels : (j + 1) * num_channels]
            for j in range(num_sources)
        ]
    )
    own_source_filters, own_condition = _solve_shifted_gram(own_gram, own_rhs)
    _warn_if_singular(all_condition, own_condition)
    return (
        all_sources_filters.view(num_signals, filters_len, num_signals),
        own_source_filters.view(num_sources, num_channels, filters_len, num_channels),
    )


# Above this condition number, float64 rounding (eps ~ 2e-16) moves the filters' components
# along near-null directions of G by more than 1 %. These components barely change the
# projection over the whole track, but they do change it inside 1 s windows, so ISR, SIR
# and SAR become rounding noise: museval's own values then move by several dB when the
# sources are merely listed in another order.
ILL_CONDITIONED = 1e14


def _warn_if_singular(all_condition: torch.Tensor, own_condition: torch.Tensor) -> None:
    """Warn that ISR/SIR/SAR are not reproducible when a filter system is nearly singular."""
    affected = []
    if float(all_condition) > ILL_CONDITIONED:
        affected.append("all references")
    bad_sources = (own_condition > ILL_CONDITIONED).nonzero().flatten().tolist()
    if bad_sources:
        affected.append(f"reference(s) {bad_sources} alone")
    if affected:
        worst = max(float(all_condition), float(own_condition.max()))
        warnings.warn(
            f"BSSEval: the filter systems of {' and of '.join(affected)} are numerically "
            f"singular (condition number ~{worst:.0e}): ISR, SIR and SAR depend on float "
            "rounding here, museval's too. References band-limited or empty in part of the "
            "spectrum and stored without noise cause this; 16-bit PCM references such as "
            "MUSDB18's do not.",
            stacklevel=4,
        )


def _window_energies(
    signals: torch.Tensor,
    all_sources_filters: torch.Tensor,
    own_source_filters: torch.Tensor,
    num_windows: int,
    window_len: int,
    hop: int,
) -> dict[str, torch.Tensor]:
    """Energies of the BSSEval decomposition in every window.

    Args:
        signals: (N, 2, S, C), time first; [:, 0] the references, [:, 1] the estimates.
        all_sources_filters: (S * C_in, L, S * C_out), from _distortion_filters.
        own_source_filters: (S, C_in, L, C_out), from _distortion_filters.
        num_windows, window_len, hop: the framing, in samples.

    Returns:
        dict of (S, windows) float64 tensors: "true" |s|^2, "distortion" |e - s|^2,
        "spatial" |P_j - s|^2, "own" |P_j|^2, "interference" |P_all - P_j|^2,
        "all" |P_all|^2 and "artifacts" |e - P_all|^2, each summed over channels and over
        the window followed by L - 1 zeros (the filters' tail), as museval sums them.

    Every window is transformed once at a size that holds the full linear convolution with
    the filters; projections are products of spectra, and the energies of signals that are
    zero outside that span follow from Parseval's theorem without any inverse transform.
    """
    num_samples, _, num_sources, num_channels = signals.shape
    num_signals = num_sources * num_channels
    filters_len = all_sources_filters.shape[1]
    fft_size = _next_fast_fft_size(window_len + filters_len - 1)
    num_freqs = fft_size // 2 + 1
    # Parseval for a real signal's half spectrum: bins other than DC and Nyquist count twice
    bin_weights = torch.full((num_freqs,), 2.0 / fft_size, dtype=torch.float64)
    bin_weights[0] = 1.0 / fft_size
    if fft_size % 2 == 0:
        bin_weights[-1] = 1.0 / fft_size
    bin_weights = bin_weights.to(signals.device)

    # (F, S*C_in, S*C_out) and (F, S, C_in, C_out): filter spectra, frequency first
    all_spectra = torch.fft.rfft(all_sources_filters, n=fft_size, dim=1).permute(1, 0, 2)
    all_spectra = all_spectra.contiguous()
    own_spectra = torch.fft.rfft(own_source_filters, n=fft_size, dim=2).permute(2, 0, 1, 3)
    own_spectra = own_spectra.contiguous()

    flat_signals = signals.view(num_samples, 2 * num_signals)
    bytes_per_window = 10 * fft_size * 2 * num_signals * 8
    windows_per_batch = int(max(1, min(num_windows, WORKING_MEMORY_BYTES // bytes_per_window)))
    buffer = signals.new_zeros(windows_per_batch, fft_size, 2 * num_signals)

    def energy(spectra: torch.Tensor) -> torch.Tensor:
        """(F, b, S, C) complex spectra -> (b, S) energies of the time signals."""
        squared_parts = torch.view_as_real(spectra).square().reshape(num_freqs, -1)
        return (bin_weights @ squared_parts).view(*spectra.shape[1:], 2).sum(dim=(-1, -2))

    parts = {key: [] for key in ENERGY_NAMES}
    for first in range(0, num_windows, windows_per_batch):
        count = min(windows_per_batch, num_windows - first)
        frames = flat_signals.as_strided(
            (count, window_len, 2 * num_signals),
            (hop * 2 * num_signals, 2 * num_signals, 1),
            first * hop * 2 * num_signals,
        )
        buffer[:count, :window_len] = frames
        frames = frames.view(count, window_len, 2, num_sources, num_channels)
        true, estimate = frames[:, :, 0], frames[:, :, 1]
        parts["true"].append(true.square().sum(dim=(1, 3)))
        parts["distortion"].append((estimate - true).square().sum(dim=(1, 3)))

        # (F, b, 2, S*C) spectra of the zero-padded windows
        spectra = torch.fft.rfft(buffer[:count], dim=1).transpose(0, 1)
        spectra = spectra.view(num_freqs, count, 2, num_signals)
        true_spectra, estimate_spectra = spectra[:, :, 0], spectra[:, :, 1]
        projection_all = torch.matmul(true_spectra, all_spectra)  # (F, b, S*C_out)
        spectra_shape = (num_freqs, count, num_sources, num_channels)
        true_spectra = true_spectra.reshape(spectra_shape)
        projection_own = torch.matmul(true_spectra.transpose(1, 2), own_spectra).transpose(1, 2)
        projection_all = projection_all.view(spectra_shape)
        estimate_spectra = estimate_spectra.reshape(spectra_shape)

        parts["spatial"].append(energy(projection_own - true_spectra))
        parts["own"].append(energy(projection_own))
        parts["interference"].append(energy(projection_all - projection_own))
        parts["all"].append(energy(projection_all))
        parts["artifacts"].append(energy(estimate_spectra - projection_all))
    return {key: torch.cat(values).T for key, values in parts.items()}


ENERGY_NAMES = ("true", "distortion", "spatial", "own", "interference", "all", "artifacts")


def _ratio_db(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """museval's _safe_db: +inf where the denominator is exactly zero."""
    ratio = 10 * torch.log10(numerator / denominator)
    return torch.where(denominator == 0, torch.full_like(ratio, math.inf), ratio)


def bss_eval_v4(
    references: Any,
    estimates: Any,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
    device: torch.device | str | None = None,
) -> dict[str, np.ndarray]:
    """BSSEval v4 (images mode, time-invariant filters), equal to museval.evaluate(mode="v4").

    Args:
        references: true source images, array or tensor (sources, samples, channels), as
            museval takes them; (sources, samples) is read as mono, (samples,) as one mono
            source. No reference may be silent over the whole signal.
        estimates: estimated images (sources, samples', channels), same sources and channels
            as `references`. Like museval.evaluate they are cut to the references' length
            or padded with zeros at the end. No estimate may be silent over the whole signal.
        window: window length in samples (44100 = museval's 1 s at 44.1 kHz).
        hop: hop between windows in samples.
        filters_len: taps of the distortion filters (museval: 512).
        device: where to compute (float64); CPU when None.

    Returns:
        {"SDR", "ISR", "SIR", "SAR"}: float64 numpy arrays (sources, windows) in dB. There are
        floor((samples - window + hop) / hop) windows (one if window >= samples); the samples
        after the last window are scored nowhere but do shape the filters. A window in which
        any reference or any estimate is all zeros is NaN for every source; a ratio whose
        error energy is exactly zero is +inf, as in museval.

    Raises:
        ValueError: shapes that do not match, or a source silent over the whole signal
            (museval raises too: BSSEval is undefined there).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    references = _as_sources_tensor(references, "references", device)
    estimates = _as_sources_tensor(estimates, "estimates", device)
    num_sources, num_samples, num_channels = references.shape
    if estimates.shape[0] != num_sources or estimates.shape[2] != num_channels:
        raise ValueError(
            f"estimates have shape {tuple(estimates.shape)} but references "
            f"{tuple(references.shape)}: sources and channels must match "
            "(both are (sources, samples, channels))"
        )
    if num_samples == 0 or num_sources == 0:
        raise ValueError(f"references have shape {tuple(references.shape)}: nothing to score")
    if int(window) != window or int(hop) != hop or window <= 0 or hop <= 0:
        raise ValueError(f"window={window}, hop={hop}: both must be positive sample counts")
    if int(filters_len) != filters_len or filters_len <= 0:
        raise ValueError(f"filters_len={filters_len}: must be a positive number of taps")
    window, hop, filters_len = int(window), int(hop), int(filters_len)
    estimates = _pad_or_truncate(estimates, num_samples)

    silent_references = _silent_samples_mask(references)
    silent_estimates = _silent_samples_mask(estimates)
    for name, silent in (("reference", silent_references), ("estimate", silent_estimates)):
        silent_sources = silent.all(dim=1).nonzero().flatten().tolist()
        if silent_sources:
            raise ValueError(
                f"{name} source(s) {silent_sources} are silent (all zeros) over the whole "
                "signal: BSSEval is undefined for them; leave them out of the call"
            )

    num_windows, window_len = _framing(num_samples, window, hop)
    # a window in which any reference or estimate is all zeros is NaN for every source
    active = ~(silent_references | silent_estimates)  # (S, N)
    window_active = active.unfold(1, window_len, hop)[:, :num_windows].any(dim=2)
    nan_windows = ~window_active.all(dim=0)  # (windows,)

    # (N, 2, S, C), time first, so that blocks and windows are contiguous runs of memory
    signals = torch.stack([references, estimates]).permute(2, 0, 1, 3).contiguous()
    del references, estimates
    all_filters, own_filters = _distortion_filters(signals, filters_len)
    energies = _window_energies(signals, all_filters, own_filters, num_windows, window_len, hop)
    scores = {
        "SDR": _ratio_db(energies["true"], energies["distortion"]),
        "ISR": _ratio_db(energies["true"], energies["spatial"]),
        "SIR": _ratio_db(energies["own"], energies["interference"]),
        "SAR": _ratio_db(energies["all"], energies["artifacts"]),
    }
    return {
        name: torch.where(nan_windows, math.nan, values).cpu().numpy()
        for name, values in scores.items()
    }
