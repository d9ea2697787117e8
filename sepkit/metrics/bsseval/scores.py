"""bss_eval_v4: the four energy ratios of BSSEval v4 per window, from the filters and the
window energies; the framing and silence rules of museval."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array
from sepkit.metrics.bsseval.energies import window_energies
from sepkit.metrics.bsseval.filters import distortion_filters

if TYPE_CHECKING:
    import torch

__all__ = ["bss_eval_v4", "number_of_windows", "silent_sources"]

# samples looked at a time when checking for sources silent over the whole signal
SILENCE_SCAN_SAMPLES = 2**16


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
        array = np.asarray(arrays.to_numpy(audio), dtype=np.float64)
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
    if arrays.is_tensor(sources) or isinstance(sources, np.ndarray):
        sources = _as_sources(sources, "sources", None)
    silent = []
    for index, source in enumerate(sources):
        source = arrays.to_numpy(source)
        source = source.reshape(len(source), -1)  # (samples, channels), also from mono
        # a sounding source is told apart by its first samples: look at a stretch at a time
        for start in range(0, source.shape[0], SILENCE_SCAN_SAMPLES):
            if not _silent_samples(source[start : start + SILENCE_SCAN_SAMPLES].T).all():
                break
        else:
            silent.append(index)
    return silent


def _ratio_db(numerator: Array, denominator: Array) -> Array:
    """museval's _safe_db: +inf where the denominator is exactly zero."""
    library = arrays.library(numerator)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 10 * library.log10(numerator / denominator)
    return library.where(denominator == 0, math.inf, ratio)


def _signals(references: Array, estimates: Array) -> Array:
    """(2, S, C, N): the references' and the estimates' channels as contiguous signals, the
    estimates cut or zero-padded to the references' length (museval.pad_or_truncate)."""
    num_sources, num_samples, num_channels = references.shape
    if estimates.shape[0] != num_sources or estimates.shape[2] != num_channels:
        raise ValueError(
            f"estimates have shape {tuple(estimates.shape)} but references "
            f"{tuple(references.shape)}: sources and channels must match "
            "(both are (sources, samples, channels))"
        )
    if num_samples == 0 or num_sources == 0:
        raise ValueError(f"references have shape {tuple(references.shape)}: nothing to score")
    signals = arrays.zeros(references, (2, num_sources, num_channels, num_samples))
    signals[0] = references.swapaxes(1, 2)
    kept = min(num_samples, estimates.shape[1])
    signals[1, :, :, :kept] = estimates[:, :kept].swapaxes(1, 2)
    return signals


def _nan_windows(signals: Array, num_windows: int, window_len: int, hop: int) -> Array:
    """(windows,) bool: the windows in which any reference or estimate is all zeros (NaN for
    every source); a source silent over the whole signal is a ValueError."""
    _, num_sources, _, num_samples = signals.shape
    silent = _silent_samples(signals)  # (2, S, N)
    for index, role in enumerate(("reference", "estimate")):
        silent_indices = np.flatnonzero(arrays.to_numpy(silent[index].all(axis=-1))).tolist()
        if silent_indices:
            raise ValueError(
                f"{role} source(s) {silent_indices} are silent (all zeros) over the whole "
                "signal: BSSEval is undefined for them; leave them out of the call"
            )
    sounding = ~silent.reshape(2 * num_sources, num_samples)
    window_sounding = arrays.strided(
        sounding, (2 * num_sources, num_windows, window_len), (num_samples, hop, 1), 0
    ).any(axis=2)
    return ~window_sounding.all(axis=0)


def _sample_counts(window: float, hop: float, filters_len: float) -> tuple[int, int, int]:
    """The framing and the filters' taps as ints; a ValueError unless positive integers."""
    if int(window) != window or int(hop) != hop or window <= 0 or hop <= 0:
        raise ValueError(f"window={window}, hop={hop}: both must be positive sample counts")
    if int(filters_len) != filters_len or filters_len <= 0:
        raise ValueError(f"filters_len={filters_len}: must be a positive number of taps")
    return int(window), int(hop), int(filters_len)


def _ratios(energies: dict[str, Array], nan_windows: Array) -> dict[str, np.ndarray]:
    """The four ratios in dB from window_energies, (sources, windows) numpy arrays, NaN in
    ``nan_windows``."""
    scores = {
        "SDR": _ratio_db(energies["true"], energies["distortion"]),
        "ISR": _ratio_db(energies["true"], energies["spatial"]),
        "SIR": _ratio_db(energies["own"], energies["interference"]),
        "SAR": _ratio_db(energies["all"], energies["artifacts"]),
    }
    return {
        name: arrays.to_numpy(arrays.library(values).where(nan_windows, math.nan, values))
        for name, values in scores.items()
    }


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
    signals = _signals(
        _as_sources(references, "references", device), _as_sources(estimates, "estimates", device)
    )
    window, hop, filters_len = _sample_counts(window, hop, filters_len)
    _, num_sources, num_channels, num_samples = signals.shape
    num_windows, window_len = _framing(num_samples, window, hop)
    nan_windows = _nan_windows(signals, num_windows, window_len, hop)

    signals = signals.reshape(2 * num_sources * num_channels, num_samples)
    all_filters, own_filters = distortion_filters(signals, num_sources, filters_len)
    energies = window_energies(
        signals, num_sources, all_filters, own_filters, num_windows, window_len, hop
    )
    return _ratios(energies, nan_windows)
