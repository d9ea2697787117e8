"""BSSEval v4: the metrics of museval 0.4.1, much faster, with numpy or torch on GPUs.

BSSEval v4 (Liutkus, Stöter and Ito, "The 2018 Signal Separation Evaluation Campaign",
LVA/ICA 2018) decomposes each estimate into the filtered true source image, spatial
distortion, interference and artifacts, with distortion filters of `filters_len` taps solved
once over the whole track, and reports four energy ratios per window:

    SDR = 10 log10(|s|^2 / |e - s|^2)                   source to distortion
    ISR = 10 log10(|s|^2 / |P_j - s|^2)                 image to spatial distortion
    SIR = 10 log10(|P_j|^2 / |P_all - P_j|^2)           source to interference
    SAR = 10 log10(|P_all|^2 / |e - P_all|^2)           source to artifacts

where, in each window, s is the reference image, e the estimate, P_j the projection of e on
delayed copies of its own reference and P_all its projection on delayed copies of all
references (filters solved over the whole track, applied to the window's samples; every
signal is followed by filters_len - 1 zeros, the filters' tail).

What museval does, and what is done here instead to get the same numbers faster:

- museval computes every reference/reference and reference/estimate correlation with
  full-length FFTs (2^21 points for 30 s, some 125 of them for 4 stereo sources). Here the
  lags 0..filters_len-1 are accumulated over short blocks: the blocks' cross-spectra are
  summed by a batched matrix product, then one short inverse FFT gives every lag.
- museval solves its (sources * channels * filters_len)^2 Gram matrix by LU once per
  estimate (4 factorisations of a 4096^2 matrix for 4 stereo sources, ~90 GFLOP). Here
  each source's own system (a diagonal block) is factorised once for all estimates, and the
  block-Toeplitz system of all sources is solved by the block Levinson recursion in
  O(filters_len^2) small steps, refined twice by solving again for its residual with the
  predictors the recursion kept. It is kept where its residual is small and the systems
  well conditioned (references stored with 16 bits, as MUSDB18's, are); elsewhere one
  dense Cholesky factorisation (LU and least squares as museval's where it fails) serves
  all estimates.
- museval projects each window with one FFT convolution per source, channel pair and
  filter set. Here each window is transformed once, projections are products of spectra
  and their energies follow from Parseval's theorem, with no inverse transform.
- On the CPU everything is computed with numpy and scipy's LAPACK, and torch is not even
  imported (that takes over a second, more than scoring a short track). On the 2-core AMD
  EPYC the benchmarks ran on, numpy's FFTs and OpenBLAS also take a half to a quarter of
  the time of torch 2.13's MKL kernels (an (8, 2048) by (2048, 8) product 7 us against
  27 us; the FFTs of 10 windows of 16 signals 28 ms against 69 ms). On a GPU (``device``)
  the arrays are torch tensors; the code is one, written in what numpy arrays and tensors
  share, with small helpers where they differ.

Agreement with museval is limited by the conditioning of the filter systems, not by this
implementation: on references like MUSDB18's (16-bit, band-limited at 16 kHz) the scores
agree to ~1e-6 dB. References with little noise below the signal (float stems of synthetic
or band-limited audio) make the systems ill-conditioned: ISR, SIR and SAR then depend on
float rounding, museval's own too (they move when the sources are merely listed in another
order: by ~0.002 dB at a condition number of 1e14, by tens of dB when numerically singular).
bss_eval_v4 warns where they may exceed 1e-3 dB.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["bss_eval_v4", "number_of_windows", "silent_sources"]

# Arrays below are numpy arrays on the CPU and torch tensors on other devices (see the
# module's docstring); the code is written in what both share, with the helpers that follow
# where they differ.
Array = Any

# Size of the FFT of the block-wise correlations; blocks are CORRELATION_FFT_SIZE -
# (filters_len - 1) samples long, so that no lag wraps around.
CORRELATION_FFT_SIZE = 8192
# Blocks transformed together, memory for a batch of windows, and frequencies contracted
# together: large enough for few, big operations (each one a synchronisation of torch's
# threads, costly on a busy machine), small enough for the transposes to stay in cache.
# Every page a process touches for the first time is a fault, several microseconds on the
# virtual machines benchmarked: with 64 MB instead of 256 MB per batch of windows the first
# 60 s song of a `sepkit eval` process took 2.2-2.7 s instead of 3.0-3.4 s (10 s songs, whose
# windows fit either way: the same).
BLOCKS_PER_BATCH = 32
WORKING_MEMORY_BYTES = 64 * 2**20
# samples looked at a time when checking for sources silent over the whole signal
SILENCE_SCAN_SAMPLES = 2**16
FREQUENCIES_PER_CHUNK = 2048
# museval adds the float64 machine epsilon to the Gram matrix's diagonal
EPS = float(np.finfo(np.float64).eps)


def _fast_fft_size(minimum: int) -> int:
    """Smallest 2^k or 3 * 2^k >= minimum: sizes FFT libraries transform fastest."""
    power_of_two = 1 << max(0, math.ceil(math.log2(minimum)))
    three_times = 3 * (power_of_two // 4)
    return three_times if three_times >= minimum else power_of_two


def _is_tensor(value: Any) -> bool:
    """Whether value is a torch tensor (without importing torch: none exists before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(value)


def _library(array: Array) -> Any:
    """numpy for a numpy array, torch for a tensor: the functions both spell alike."""
    return np if isinstance(array, np.ndarray) else sys.modules["torch"]


def _torch_device(device: Any) -> torch.device | None:
    """The device bss_eval_v4 computes on: None for numpy on the CPU, else a torch device."""
    if device is None or str(device) == "cpu":
        return None
    import torch

    device = torch.device(device)
    return None if device.type == "cpu" else device


def _as_sources(audio: Any, name: str, device: torch.device | None) -> Array:
    """Array-like -> float64 (sources, samples, channels), as np.atleast_3d reads it: a numpy
    array when device is None, else a tensor on it."""
    if device is None:
        array = np.asarray(_to_numpy(audio), dtype=np.float64)
    else:
        import torch

        array = audio if torch.is_tensor(audio) else torch.as_tensor(np.asarray(audio))
        array = array.to(device=device, dtype=torch.float64)
    if array.ndim == 1:
        array = array[None, :, None]
    elif array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim != 3:
        raise ValueError(
            f"{name} has shape {tuple(array.shape)}: expected (sources, samples, channels)"
        )
    return array


def _to_numpy(value: Any) -> np.ndarray:
    """A tensor (any device, with or without gradient) as a numpy array; anything else as
    np.asarray reads it (a numpy array itself)."""
    if _is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _zeros(like: Array, shape: tuple[int, ...], dtype: str = "float64") -> Array:
    """Zeros of a numpy or torch dtype name, where `like` is."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=dtype)
    return like.new_zeros(shape, dtype=getattr(sys.modules["torch"], dtype))


def _on_device_of(like: Array, array: np.ndarray) -> Array:
    """A numpy array where `like` is: itself, or a tensor on like's device."""
    if isinstance(like, np.ndarray):
        return array
    return sys.modules["torch"].as_tensor(array, device=like.device)


def _random_normal(like: Array, shape: tuple[int, ...]) -> Array:
    """Standard normal float64 values from a fixed seed, where `like` is."""
    if isinstance(like, np.ndarray):
        return np.random.default_rng(0).standard_normal(shape)
    torch = sys.modules["torch"]
    generator = torch.Generator(device=like.device).manual_seed(0)
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=like.device)


def _strided(array: Array, shape: tuple[int, ...], strides: tuple[int, ...], offset: int) -> Array:
    """Tensor.as_strided for both: a view of a C-contiguous array, strides in elements."""
    if isinstance(array, np.ndarray):
        start = array.reshape(-1)[offset:]
        byte_strides = tuple(stride * array.itemsize for stride in strides)
        return np.lib.stride_tricks.as_strided(start, shape, byte_strides, writeable=False)
    return array.as_strided(shape, strides, offset)


def _flip(array: Array, axis: int) -> Array:
    """A C-contiguous copy with the order along `axis` reversed (torch.flip always copies)."""
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(np.flip(array, axis))
    return array.flip(axis)


def _permute(array: Array, axes: tuple[int, ...]) -> Array:
    """A view with the axes in the given order."""
    return array.transpose(axes) if isinstance(array, np.ndarray) else array.permute(axes)


def _copy(array: Array) -> Array:
    return array.copy() if isinstance(array, np.ndarray) else array.clone()


def _add_to_diagonal(matrix: Array, value: float) -> None:
    """matrix += value * I, in place, for one (n, n) matrix."""
    if isinstance(matrix, np.ndarray):
        np.einsum("ii->i", matrix)[...] += value  # a writable view of the diagonal
    else:
        matrix.diagonal().add_(value)


def _rfft(signal: Array, n: int | None = None, axis: int = -1) -> Array:
    if isinstance(signal, np.ndarray):
        return np.fft.rfft(signal, n=n, axis=axis)
    return sys.modules["torch"].fft.rfft(signal, n=n, dim=axis)


def _irfft(spectrum: Array, n: int, axis: int = -1) -> Array:
    if isinstance(spectrum, np.ndarray):
        return np.fft.irfft(spectrum, n=n, axis=axis)
    return sys.modules["torch"].fft.irfft(spectrum, n=n, dim=axis)


def _permuted(array: Array, axes: tuple[int, ...], conjugate: bool = False) -> Array:
    """A contiguous copy of an array with its axes permuted (and its values conjugated):
    the layout batched matrix products take without copying again."""
    if isinstance(array, np.ndarray):
        view = array.transpose(axes)
        if conjugate:
            return np.conjugate(view, out=np.empty(view.shape, view.dtype))
        return np.ascontiguousarray(view)
    view = array.permute(axes)
    return (view.conj() if conjugate else view).contiguous()


def _framing(num_samples: int, window: int, hop: int) -> tuple[int, int]:
    """museval.metrics.Framing: (number of windows, samples per window)."""
    if window < num_samples:
        return (num_samples - window + hop) // hop, window
    # one window covering the whole (shorter) signal
    return 1, num_samples


def number_of_windows(num_samples: int, window: int, hop: int) -> int:
    """How many windows BSSEval scores: floor((N - window + hop) / hop), at least one."""
    return _framing(num_samples, window, hop)[0]


def _silent_samples(signals: Array) -> Array:
    """(..., channels, samples) -> bool (..., samples), True where museval sees silence.

    museval calls a sample silent when the sum over channels is zero, so a stereo sample
    (x, -x) counts as silent too; this follows it exactly.
    """
    return signals.sum(axis=-2) == 0


def silent_sources(sources: Any) -> list[int]:
    """Indices of the sources museval calls silent over the whole signal (it raises on them).

    Args:
        sources: (sources, samples, channels) array or tensor, or a sequence of (samples,
            channels) arrays (looked at one by one, not stacked).
    """
    if _is_tensor(sources) or isinstance(sources, np.ndarray):
        sources = _as_sources(sources, "sources", None)
    silent = []
    for index, source in enumerate(sources):
        source = _to_numpy(source)
        source = source.reshape(len(source), -1)  # (samples, channels), also from mono
        # a sounding source is told apart by its first samples: look at a stretch at a time
        for start in range(0, source.shape[0], SILENCE_SCAN_SAMPLES):
            if not _silent_samples(source[start : start + SILENCE_SCAN_SAMPLES].T).all():
                break
        else:
            silent.append(index)
    return silent


def _lagged_correlations(signals: Array, num_x: int, num_lags: int) -> Array:
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

    x_buffer = _zeros(signals, (BLOCKS_PER_BATCH, num_x, fft_size))
    y_buffer = _zeros(signals, (BLOCKS_PER_BATCH, num_signals, fft_size))
    cross_spectrum = _zeros(signals, (num_freqs, num_x, num_signals), "complex128")
    for first in range(0, num_blocks, BLOCKS_PER_BATCH):
        count = min(BLOCKS_PER_BATCH, num_blocks - first)
        inner = max(0, min(count, num_inner_blocks - first))
        strides = (block, num_samples, 1)
        if inner > 0:
            x_buffer[:inner, :, :block] = _strided(
                signals, (inner, num_x, block), strides, first * block
            )
            y_buffer[:inner, :, :extended] = _strided(
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
        x_spectra = _rfft(x_buffer[:count])  # (b, P, F)
        y_spectra = _rfft(y_buffer[:count])  # (b, R, F)
        for low in range(0, num_freqs, FREQUENCIES_PER_CHUNK):
            band = slice(low, low + FREQUENCIES_PER_CHUNK)
            # sum over blocks of conj(X_p) Y_r: (f, P, b) @ (f, b, R)
            x_band = _permuted(x_spectra[:, :, band], (2, 1, 0), conjugate=True)
            cross_spectrum[band] += x_band @ _permuted(y_spectra[:, :, band], (2, 0, 1))
    correlations = _irfft(cross_spectrum, n=fft_size, axis=0)[:num_lags]
    return _permute(correlations, (1, 2, 0))


def _gram_matrix(reference_correlations: Array) -> Array:
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
    reference_correlations = _copy(reference_correlations)
    reference_correlations[:, :, 0] = (lag_zero + lag_zero.T) / 2
    # lags L-1, ..., 1, 0, -1, ..., -(L-1); a negative lag of (p, q) is a positive one of (q, p)
    descending_lags = _library(reference_correlations).concatenate(
        [_flip(reference_correlations, -1), reference_correlations.swapaxes(0, 1)[..., 1:]],
        axis=-1,
    )
    # G[(p, a), (q, b)] = descending_lags[p, q, (L - 1) - (a - b)]: a Hankel view in (L-1-a, b)
    span = 2 * num_lags - 1
    hankel = _strided(
        descending_lags,
        (num_signals, num_lags, num_signals, num_lags),
        (num_signals * span, 1, span, 1),
        0,
    )
    return _flip(hankel, 1).reshape(num_signals * num_lags, num_signals * num_lags)


def _cholesky_solver(matrix: Array) -> Callable[[Array], Array] | None:
    """Cholesky factorisation of one symmetric (n, n) matrix -> its solver, or None when it
    fails (the matrix is not numerically positive definite).

    On CPU LAPACK's potrf is called through scipy with ``clean=0``: numpy's and torch's
    Cholesky also zero the factor's other triangle, which at n = 4096 costs a third of the
    factorisation itself; potrs never reads that triangle.
    """
    if not isinstance(matrix, np.ndarray):
        torch = sys.modules["torch"]
        factor, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            return None

        def solve(rhs: Array) -> Array:
            # two triangular solves: torch.cholesky_solve copies the factor on every call
            lower = torch.linalg.solve_triangular(factor, rhs, upper=False)
            return torch.linalg.solve_triangular(factor.mT, lower, upper=True)

        return solve

    from scipy.linalg import lapack

    # the transpose of a C-ordered symmetric matrix is itself in Fortran order: no copy
    factor, info = lapack.dpotrf(matrix.T, lower=1, clean=0)
    if info != 0:
        return None

    def solve(rhs: np.ndarray) -> np.ndarray:
        solution, _ = lapack.dpotrs(factor, np.asfortranarray(rhs), lower=1)
        return np.ascontiguousarray(solution)

    return solve


def _solve_shifted_gram(shifted_matrix: Array, right_hand_sides: Array) -> tuple[Array, Array]:
    """Solve (G + eps I) X = B for symmetric positive semi-definite G, batched.

    Args:
        shifted_matrix: (..., n, n) G + eps I, eps the float64 machine epsilon (museval's).
        right_hand_sides: (..., n, k).

    Returns:
        solution: (..., n, k).
        condition: (...,) estimated condition number of G + eps I (inf when singular).

    museval calls np.linalg.solve (LU) and, on an exactly singular matrix, means to fall
    back to np.linalg.lstsq(G, D) (its except clause names np.linalg.linalg, which numpy 2
    removed, so museval 0.4.1 raises AttributeError there instead). G is a Gram matrix, so
    Cholesky gives the same solution at half the cost of LU; where rounding makes it fail
    LU takes over as in museval, then least squares as museval intends.
    """
    if shifted_matrix.ndim > 2:
        # one matrix at a time: batched LU of torch 2.13's MKL hangs on some of these
        # nearly singular matrices when it runs on more than one thread (DLASWP errors)
        solutions, conditions = zip(
            *(_solve_shifted_gram(*pair) for pair in zip(shifted_matrix, right_hand_sides))
        )
        library = _library(shifted_matrix)
        return library.stack(solutions), library.stack(conditions)
    solve = _cholesky_solver(shifted_matrix)
    singular = False
    if solve is None:
        solve, singular = _lu_solver(shifted_matrix)
    solution = solve(right_hand_sides)
    condition = _condition_estimate(shifted_matrix, solve)
    if singular:
        # gelsd (SVD) with numpy's default rcond, on the CPU, as museval means to
        matrix = _to_numpy(shifted_matrix).copy()
        _add_to_diagonal(matrix, -EPS)
        fallback = np.linalg.lstsq(matrix, _to_numpy(right_hand_sides), rcond=None)[0]
        solution = _on_device_of(solution, fallback)
        condition = _library(condition).full_like(condition, math.inf)
    return solution, condition


def _lu_solver(matrix: Array) -> tuple[Callable[[Array], Array], bool]:
    """LU factorisation with partial pivoting (museval's np.linalg.solve) of one (n, n)
    matrix -> its solver, and whether the matrix is exactly singular."""
    if isinstance(matrix, np.ndarray):
        from scipy.linalg import lapack

        factors, pivots, info = lapack.dgetrf(matrix)
        return (lambda rhs: lapack.dgetrs(factors, pivots, rhs)[0]), info != 0
    torch = sys.modules["torch"]
    factors, pivots, info = torch.linalg.lu_factor_ex(matrix)
    return (lambda rhs: torch.linalg.lu_solve(factors, pivots, rhs)), int(info) != 0


def _condition_estimate(
    matrix: Array, solve: Callable[[Array], Array], iterations: int = 4
) -> Array:
    """Rough condition number of one symmetric (n, n) matrix from its factorisation.

    The largest eigenvalue is bounded by the largest absolute row sum; the smallest is
    estimated by a few steps of inverse iteration (cheap: the factorisation exists).
    """
    library = _library(matrix)
    vector = _random_normal(matrix, (matrix.shape[-1], 1))
    for _ in range(iterations):
        vector = solve(vector / library.linalg.vector_norm(vector))
    largest = library.abs(matrix).sum(axis=-1).max()
    return largest * library.linalg.vector_norm(vector)


@contextlib.contextmanager
def _one_thread(array: Array) -> Iterator[None]:
    """Run torch (when `array` is a tensor) on one intra-op thread inside the block, then
    restore the setting.

    The Levinson recursion is ~10 operations on P x P matrices per order: threads cannot
    speed them up, and on a busy machine their synchronisation made it 10x slower.
    """
    if isinstance(array, np.ndarray):
        yield
        return
    torch = sys.modules["torch"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Solver:
    """Batched solves of (..., P, P) systems for _block_levinson, on numpy arrays or tensors.

    numpy raises LinAlgError on a singular matrix; torch records it without waiting for the
    device, in `infos`, checked once the recursion is over.
    """

    def __init__(self) -> None:
        self.infos: list[Array] = []

    def __call__(self, matrices: Array, rhs: Array) -> Array:
        if isinstance(matrices, np.ndarray):
            return np.linalg.solve(matrices, rhs)
        solution, info = sys.modules["torch"].linalg.solve_ex(matrices, rhs)
        self.infos.append(info.reshape(-1, info.shape[-1]))
        return solution

    def solved(self, batch: int) -> np.ndarray:
        """(batch,) bool: False where one of the torch solves met a singular matrix."""
        if not self.infos:
            return np.ones(batch, dtype=bool)
        return _to_numpy((sys.modules["torch"].cat(self.infos) == 0).all(dim=0))


def _block_levinson(lags: Array, rhs: Array) -> tuple[Array, np.ndarray, Callable[[Array], Array]]:
    """Solve symmetric block-Toeplitz systems by the block Levinson recursion, batched.

    Solves sum_b R(a - b) x(b) = g(a) for a, b = 0..L-1, with R(-k) = R(k)^T: the normal
    equations of multichannel least-squares FIR filters (Whittle; Wiggins and Robinson,
    1965). O(L^2 P^3) operations instead of the O(L^3 P^3) of a dense factorisation.

    Args:
        lags: (batch, L, P, P), lags[:, k] = R(k) for k = 0..L-1.
        rhs: (batch, L, P, K), rhs[:, a] = g(a).

    Returns:
        solution: (batch, L, P, K).
        solved: (batch,) bool, False where a prediction-error matrix was singular.
        resolve: solves the same systems for other right-hand sides (batch, L, P, K') with
            the backward predictors and error matrices kept from this recursion: only the
            solution's update is repeated, about a third of the work.

    The forward and backward predictors F_n, B_n of order n satisfy T_n F_n = [E_f; 0...0]
    with F_n(0) = I, and T_n B_n = [0...0; E_b] with B_n(n) = I. Each order adds one block
    to both and to the solution: ~10 products of matrices of P rows or columns, which on
    CPU are numpy's (the recursion is written in what numpy arrays and tensors share:
    products, slices and in-place arithmetic).
    """
    batch, length, size, _ = lags.shape
    width = length * size
    # column block i of lags_descending is R(L-1-i); of lags_transposed, R(i+1)^T
    library = _library(lags)
    lags_descending = _permute(_flip(lags, 1), (0, 2, 1, 3)).reshape(batch, size, width)
    lags_transposed = _permute(lags[:, 1:].swapaxes(2, 3), (0, 2, 1, 3))
    lags_transposed = lags_transposed.reshape(batch, size, width - size)
    rhs = rhs.reshape(batch, width, -1)
    lag_zero = lags[:, 0]
    diagonal = list(range(size))
    forward = _zeros(lags, (batch, width, size))  # F_n(j) in block j
    forward[:, diagonal, diagonal] = 1  # F_0 = I
    backward = _zeros(lags, (batch, width, size))  # B_n(j) in block L-1-n+j
    backward[:, [width - size + i for i in diagonal], diagonal] = 1
    errors = library.stack([lag_zero, lag_zero])  # E_b, E_f: (2, batch, P, P)
    mismatches = library.empty_like(errors)  # what [F; 0] and [0; B] leave at the new block
    solution = library.zeros_like(rhs)
    solve = _Solver()
    kept = []  # (B_(n+1), E_b) of every order n, for resolve
    singular = False
    try:
        solution[:, :size] = solve(lag_zero, rhs[:, :size])
        for order in range(length - 1):
            rows = (order + 1) * size  # blocks 0..order
            descending = lags_descending[:, :, width - size - rows : width - size]  # R(n+1..1)
            library.matmul(descending, forward[:, :rows], out=mismatches[0])
            library.matmul(
                lags_transposed[:, :, :rows], backward[:, width - rows :], out=mismatches[1]
            )
            # E_b^-1 (forward mismatch), E_f^-1 (backward mismatch)
            reflections = solve(errors, mismatches)
            # order n + 1: blocks 0..n+1 of F; B shifted one block later, which its storage does
            forward_view = forward[:, : rows + size]
            backward_view = backward[:, width - rows - size :]
            new_forward = forward_view - backward_view @ reflections[0]
            backward_view -= forward_view @ reflections[1]
            forward_view[...] = new_forward
            # E_b -= (forward mismatch) E_f^-1 (backward mismatch), and the other way round
            errors[0] -= mismatches[0] @ reflections[1]
            errors[1] -= mismatches[1] @ reflections[0]
            mismatch = rhs[:, rows : rows + size] - descending @ solution[:, :rows]
            solution[:, : rows + size] += backward_view @ solve(errors[0], mismatch)
            kept.append((_copy(backward_view), _copy(errors[0])))
    except np.linalg.LinAlgError:
        singular = True
    solved = solve.solved(batch) & _to_numpy(library.isfinite(solution).all(axis=(1, 2)))
    if singular:
        solved[:] = False

    def resolve(other_rhs: Array) -> Array:
        other_rhs = other_rhs.reshape(batch, width, -1)
        other = library.zeros_like(other_rhs)
        other[:, :size] = solve(lag_zero, other_rhs[:, :size])
        for order, (backward_then, error) in enumerate(kept):
            rows = (order + 1) * size
            descending = lags_descending[:, :, width - size - rows : width - size]
            mismatch = other_rhs[:, rows : rows + size] - descending @ other[:, :rows]
            other[:, : rows + size] += backward_then @ solve(error, mismatch)
        return other.reshape(batch, length, size, -1)

    return solution.reshape(batch, length, size, -1), solved, resolve


def _block_toeplitz_product(lags: Array, vectors: Array) -> Array:
    """sum_b R(a - b) x(b) for the systems of _block_levinson, by FFT.

    Args:
        lags: (batch, L, P, P), R(k) for k >= 0 (R(-k) = R(k)^T).
        vectors: (batch, L, P, K).

    Returns:
        (batch, L, P, K).
    """
    length = lags.shape[1]
    # R(-(L-1)), ..., R(0), ..., R(L-1): a linear convolution with x gives T x at a + L - 1
    all_lags = _library(lags).concatenate([_flip(lags[:, 1:], 1).swapaxes(2, 3), lags], axis=1)
    fft_size = 1 << math.ceil(math.log2(3 * length - 2))
    product = _rfft(all_lags, n=fft_size, axis=1) @ _rfft(vectors, n=fft_size, axis=1)
    return _irfft(product, n=fft_size, axis=1)[:, length - 1 : 2 * length - 1]


def _distortion_filters(signals: Array, num_sources: int, filters_len: int) -> tuple[Array, Array]:
    """The v4 distortion filters, solved once over the whole signals.

    Args:
        signals: (2 * S * C, N): the references' S * C channels, then the estimates'.
        num_sources: S.
        filters_len: L, number of filter taps.

    Returns:
        all_sources_filters: (S * C_in, L, S * C_out), the least-squares filters that project
            each estimate on all delayed references.
        own_source_filters: (S, C_in, L, C_out), those that project estimate j on the delayed
            copies of reference j alone.

    museval solves (G + eps I) C = D with G the Gram matrix of the delayed references and D
    their correlations with the estimates, by LU, once per estimate. Here each reference's
    own system (a diagonal block of G, C * L unknowns) is factorised once for all
    estimates. G is block-Toeplitz: the block Levinson recursion solves the system of all
    references in O(L^2 (S C)^3) small steps instead of O(L^3 (S C)^3). It is used where it
    pays (S * C * L above DENSE_MAX_UNKNOWNS) and can be trusted: the diagonal blocks'
    condition numbers are lower bounds of G's (Cauchy's interlacing theorem), so an
    ill-conditioned block sends G straight to a dense factorisation, as does a large
    residual or condition estimate after the recursion.
    """
    num_signals = signals.shape[0] // 2
    num_channels = num_signals // num_sources
    library = _library(signals)
    correlations = _lagged_correlations(signals, num_signals, filters_len)
    # g(a)[p, (j, c)] = D[(p, a), (j, c)] = <r_p delayed by a, e_(j, c)>
    reference_estimate = _permute(correlations[:, num_signals:], (2, 0, 1))

    own_grams, own_rhs = [], []
    for source in range(num_sources):
        channels = slice(source * num_channels, (source + 1) * num_channels)
        gram = _gram_matrix(correlations[channels, channels])
        _add_to_diagonal(gram, EPS)
        own_grams.append(gram)
        rhs = reference_estimate[:, channels, channels]  # (L, C_in, C_out)
        own_rhs.append(rhs.swapaxes(0, 1).reshape(num_channels * filters_len, num_channels))
    own_filters, own_condition = _solve_shifted_gram(
        library.stack(own_grams), library.stack(own_rhs)
    )
    own_filters = own_filters.reshape(num_sources, num_channels, filters_len, num_channels)

    all_filters = None
    if (
        num_signals * filters_len > DENSE_MAX_UNKNOWNS
        and float(own_condition.max()) <= LEVINSON_MAX_CONDITION
    ):
        all_filters, all_condition = _levinson_filters(correlations, reference_estimate)
    if all_filters is None:
        gram = _gram_matrix(correlations[:, :num_signals])
        _add_to_diagonal(gram, EPS)
        rhs = reference_estimate.swapaxes(0, 1).reshape(num_signals * filters_len, num_signals)
        all_filters, all_condition = _solve_shifted_gram(gram, rhs)
        all_filters = all_filters.reshape(num_signals, filters_len, num_signals)
    _warn_if_singular(float(all_condition), _to_numpy(own_condition))
    return all_filters, own_filters


def _levinson_filters(correlations: Array, reference_estimate: Array) -> tuple[Array | None, Array]:
    """The filters on all references by the block Levinson recursion, or None where its
    solution cannot be trusted (the caller then factorises G densely).

    Args:
        correlations: (P, 2P, L) from _lagged_correlations, P = S * C.
        reference_estimate: (L, P, P) right-hand sides g(a).

    Returns:
        filters (P, L, P) or None, and the estimated condition number of G.
    """
    num_signals, _, filters_len = correlations.shape
    # R(k)[p, q] = G[(p, a), (q, a - k)]: the correlation of references p and q at lag k
    library = _library(correlations)
    lags = _copy(_permute(correlations[:, :num_signals], (2, 0, 1)))
    # lag 0 of (p, q) and of (q, p) are two roundings of one number: take one
    lags[0] = (lags[0] + lags[0].T) / 2
    _add_to_diagonal(lags[0], EPS)
    # random columns solved alongside D estimate how much the system amplifies errors
    probes = _random_normal(lags, (filters_len, num_signals, 1))
    rhs = library.concatenate([reference_estimate, probes], axis=2)[None]
    lags = lags[None]
    with _one_thread(lags):
        solution, solved, resolve = _block_levinson(lags, rhs)
    # condition ~ largest eigenvalue (bounded by the largest row sum) times the growth
    # of the random probe
    magnitudes = library.abs(lags[0])
    row_sum = (magnitudes.sum(axis=(0, 2)) + magnitudes[1:].sum(axis=(0, 1))).max()
    growth = library.linalg.vector_norm(solution[0, ..., num_signals:])
    condition = row_sum * growth / library.linalg.vector_norm(probes)
    # the recursion is only weakly stable: on ill-conditioned systems its rounding errors
    # outgrow those of a dense factorisation (0.05 dB instead of museval's own 0.002 dB at a
    # condition of 1e14), so it is kept for well-conditioned ones only
    if not bool(solved[0]) or float(condition) > LEVINSON_MAX_CONDITION:
        return None, condition
    # Iterative refinement: the recursion's rounding errors grow with the condition number
    # faster than a dense factorisation's, and at conditions of ~1e11 (16-bit references of
    # sparse synthetic stems) they moved SIR and SAR by ~0.01 dB. Solving again for the
    # residual brings them to ~1e-4 dB of museval's, twice to where the dense solution is
    # (~1e-6 dB; see REFINEMENT_STEPS).
    filters = solution[..., :num_signals]
    target = rhs[..., :num_signals]
    with _one_thread(lags):
        for _ in range(REFINEMENT_STEPS):
            residual = target - _block_toeplitz_product(lags, filters)
            filters += resolve(residual)
    residual = float(library.linalg.vector_norm(_block_toeplitz_product(lags, filters) - target))
    # also when not finite
    if not residual <= RESIDUAL_TOLERANCE * float(library.linalg.vector_norm(target)):
        return None, condition
    return _permute(filters[0], (1, 0, 2)), condition


# Rounding errors of float64 (eps ~ 2e-16) move the filters' components along near-null
# directions of G in proportion to its condition number. Those components barely change
# the projection over the whole track but do change it inside 1 s windows, so ISR, SIR and
# SAR carry errors of about ROUNDING_DB_PER_CONDITION * condition dB: measured on generated
# stems as the spread between museval, museval with its sources reordered and this module,
# from 1e-6 dB at 3e10 (16-bit references) through 2e-3 dB at 8e13 (float32 stems) to tens
# of dB at 1e18. Beyond ILL_CONDITIONED that exceeds 1e-3 dB, and bss_eval_v4 warns.
ROUNDING_DB_PER_CONDITION = 3e-17
ILL_CONDITIONED = 3e13
# The block Levinson solution is kept when |G x - D| <= RESIDUAL_TOLERANCE |D| (a dense
# factorisation reaches ~1e-14 on MUSDB18-like references, Levinson ~1e-13) and the
# estimated condition number is at most LEVINSON_MAX_CONDITION (16-bit references give
# ~1e10 and the same scores either way, to ~1e-6 dB).
RESIDUAL_TOLERANCE = 1e-10
# Refinement steps after the recursion. On a mono mixdown of two toy songs (four sources,
# 2048 unknowns, condition 7e10) the largest difference to museval was 1.2e-4 dB after one
# step, 5e-7 dB after two (the dense solution: 9e-7 dB); on the stereo songs 3.8e-6 dB after
# one, 1.8e-6 dB after two (dense: 1.8e-6 dB). A step costs about a third of the recursion.
REFINEMENT_STEPS = 2
LEVINSON_MAX_CONDITION = 1e12
# Systems of at most this many unknowns are factorised densely: there the recursion's ~10
# small operations per lag cost as much as a Cholesky factorisation or more (one core,
# 512 taps, benchmarks/eval_solvers.py, two runs: n = 1024, one stereo source, 16-17 ms
# dense against 19-20 ms for the recursion and its refinement steps; n = 2048, 99-106 ms
# against 41 ms; n = 4096, 680-750 ms against 94-95 ms).
DENSE_MAX_UNKNOWNS = 1024


def _warn_if_singular(all_condition: float, own_condition: np.ndarray) -> None:
    """Warn that ISR/SIR/SAR are not reproducible when a filter system is nearly singular."""
    affected = []
    if all_condition > ILL_CONDITIONED:
        affected.append("all references")
    bad_sources = np.flatnonzero(own_condition > ILL_CONDITIONED).tolist()
    if bad_sources:
        affected.append(f"reference(s) {bad_sources} alone")
    if affected:
        worst = max(all_condition, float(own_condition.max()))
        warnings.warn(
            f"BSSEval: the filter systems of {' and of '.join(affected)} are ill-conditioned "
            f"(condition number ~{worst:.0e}): ISR, SIR and SAR carry float rounding errors "
            f"of ~{worst * ROUNDING_DB_PER_CONDITION:.0e} dB here, museval's as well. "
            "References with little noise under the signal (float stems of synthetic or "
            "band-limited audio) cause this; 16-bit PCM references such as MUSDB18's do not.",
            stacklevel=4,
        )


def _window_energies(
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
        all_sources_filters: (S * C_in, L, S * C_out), from _distortion_filters.
        own_source_filters: (S, C_in, L, C_out), from _distortion_filters.
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
    num_freqs = fft_size // 2 + 1
    # Parseval for a real signal's half spectrum: bins other than DC and Nyquist count twice
    bin_weights = np.full(num_freqs, 2.0 / fft_size)
    bin_weights[0] = 1.0 / fft_size
    if fft_size % 2 == 0:
        bin_weights[-1] = 1.0 / fft_size
    bin_weights = _on_device_of(signals, bin_weights)

    # Per frequency, one (S*C, 2*S*C) matrix maps the spectrum of a window's references s
    # to those of P_j (block-diagonal: each source's own filters) and P_all; the five
    # differences whose energies are needed follow from them, s and e.
    all_filters = _permuted(all_sources_filters, (1, 0, 2))  # (L, in, out)
    own_filters = _permuted(own_source_filters, (2, 0, 1, 3))  # (L, S, in, out)
    all_spectra = _rfft(all_filters, n=fft_size, axis=0)
    own_spectra = _rfft(own_filters, n=fft_size, axis=0)
    projections = _zeros(signals, (num_freqs, num_signals, 2 * num_signals), "complex128")
    for source in range(num_sources):
        channels = slice(source * num_channels, (source + 1) * num_channels)
        projections[:, channels, channels] = own_spectra[:, source]
    projections[:, :, num_signals:] = all_spectra
    del all_spectra, own_spectra

    windows_per_batch = WORKING_MEMORY_BYTES // (2 * 2 * num_signals * fft_size * 8)
    windows_per_batch = int(max(1, min(num_windows, windows_per_batch)))
    # zeros after each window: the filters' tail; the windows are copied in below
    buffer = _zeros(signals, (windows_per_batch, 2 * num_signals, fft_size))
    # |P_j - s|^2, |P_j|^2, |P_all - P_j|^2, |P_all|^2, |e - P_all|^2 per (window, channel)
    projection_energies = _zeros(signals, (5, num_windows, num_sources, num_channels))
    true_energy = _zeros(signals, (num_windows, num_sources))
    distortion_energy = _zeros(signals, (num_windows, num_sources))
    for first in range(0, num_windows, windows_per_batch):
        count = min(windows_per_batch, num_windows - first)
        batch = slice(first, first + count)
        buffer[:count, :, :window_len] = _strided(
            signals, (count, 2 * num_signals, window_len), (hop, num_samples, 1), first * hop
        )
        frames = buffer[:count, :, :window_len]
        frames = frames.reshape(count, 2, num_sources, num_channels, window_len)
        true, estimate = frames[:, 0], frames[:, 1]
        true_energy[batch] = (true**2).sum(axis=(2, 3))
        distortion_energy[batch] = ((estimate - true) ** 2).sum(axis=(2, 3))

        spectra = _rfft(buffer[:count])  # (b, 2*S*C, F)
        for low in range(0, num_freqs, FREQUENCIES_PER_CHUNK):
            band = slice(low, low + FREQUENCIES_PER_CHUNK)
            chunk = _permuted(spectra[:, :, band], (2, 0, 1))  # (f, b, 2*S*C)
            references, estimates = chunk[..., :num_signals], chunk[..., num_signals:]
            projected = references @ projections[band]  # (f, b, 2*S*C)
            own, every = projected[..., :num_signals], projected[..., num_signals:]
            weights = bin_weights[band]
            parts = (own - references, own, every - own, every, estimates - every)
            for index, part in enumerate(parts):
                squared = part.real**2 + part.imag**2  # (f, b, S*C)
                energies = weights @ squared.reshape(len(weights), -1)
                projection_energies[index, batch] += energies.reshape(
                    count, num_sources, num_channels
                )
    projection_energies = projection_energies.sum(axis=-1).swapaxes(1, 2)  # (5, S, windows)
    return {
        "true": true_energy.T,
        "distortion": distortion_energy.T,
        **dict(zip(("spatial", "own", "interference", "all", "artifacts"), projection_energies)),
    }


def _ratio_db(numerator: Array, denominator: Array) -> Array:
    """museval's _safe_db: +inf where the denominator is exactly zero."""
    library = _library(numerator)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 10 * library.log10(numerator / denominator)
    return library.where(denominator == 0, math.inf, ratio)


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
        device: torch device to compute on (float64), e.g. "cuda"; the CPU when None or
            "cpu", with numpy and scipy (torch is not imported there). On the CPU numpy's
            FFTs and OpenBLAS may use several threads; when tracks are scored in parallel
            processes give each process one (OPENBLAS_NUM_THREADS=1 before numpy loads):
            on a busy machine extra threads only cost time.

    Returns:
        {"SDR", "ISR", "SIR", "SAR"}: float64 numpy arrays (sources, windows) in dB. There are
        floor((samples - window + hop) / hop) windows (one if window >= samples); the samples
        after the last window are scored nowhere but do shape the filters. A window in which
        any reference or any estimate is all zeros is NaN for every source; a ratio whose
        error energy is exactly zero is +inf, as in museval.

    Raises:
        ValueError: shapes that do not match, or a source silent over the whole signal
            (museval raises too: BSSEval is undefined there).

    Warns:
        UserWarning: when the filter systems are so ill-conditioned that float rounding may
            move ISR, SIR and SAR by more than 1e-3 dB (see the module's docstring).
    """
    device = _torch_device(device)
    references = _as_sources(references, "references", device)
    estimates = _as_sources(estimates, "estimates", device)
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

    # (2, S, C, N): channels as contiguous signals; estimates cut or zero-padded to the
    # references' length (museval.pad_or_truncate)
    signals = _zeros(references, (2, num_sources, num_channels, num_samples))
    signals[0] = references.swapaxes(1, 2)
    kept = min(num_samples, estimates.shape[1])
    signals[1, :, :, :kept] = estimates[:, :kept].swapaxes(1, 2)
    del references, estimates

    silent = _silent_samples(signals)  # (2, S, N)
    for index, role in enumerate(("reference", "estimate")):
        silent_indices = np.flatnonzero(_to_numpy(silent[index].all(axis=-1))).tolist()
        if silent_indices:
            raise ValueError(
                f"{role} source(s) {silent_indices} are silent (all zeros) over the whole "
                "signal: BSSEval is undefined for them; leave them out of the call"
            )
    num_windows, window_len = _framing(num_samples, window, hop)
    # a window in which any reference or estimate is all zeros is NaN for every source
    sounding = ~silent.reshape(2 * num_sources, num_samples)
    window_sounding = _strided(
        sounding, (2 * num_sources, num_windows, window_len), (num_samples, hop, 1), 0
    ).any(axis=2)
    nan_windows = ~window_sounding.all(axis=0)

    signals = signals.reshape(2 * num_sources * num_channels, num_samples)
    all_filters, own_filters = _distortion_filters(signals, num_sources, filters_len)
    energies = _window_energies(
        signals, num_sources, all_filters, own_filters, num_windows, window_len, hop
    )
    scores = {
        "SDR": _ratio_db(energies["true"], energies["distortion"]),
        "ISR": _ratio_db(energies["true"], energies["spatial"]),
        "SIR": _ratio_db(energies["own"], energies["interference"]),
        "SAR": _ratio_db(energies["all"], energies["artifacts"]),
    }
    return {
        name: _to_numpy(_library(values).where(nan_windows, math.nan, values))
        for name, values in scores.items()
    }
