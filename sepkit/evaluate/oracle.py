"""Oracle estimates: what a separation could reach (ideal masks computed from the true stems)
and what it must beat (the mixture itself), scored like any model's estimates.

The methods are those of sigsep's oracle baselines (sigsep-mus-oracle): each stem's
magnitude spectrogram raised to ``alpha`` over the sum of all stems' gives a ratio mask,
applied to the mixture's STFT channel by channel (``irm1``: magnitudes, ``irm2``: power);
``ibm`` sends each bin wholly to the stems whose magnitude ratio exceeds one half. The STFT
is Open-Unmix's: 4096-sample Hann windows, hop 1024.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

from sepkit.evaluate.audio import AudioSource, read_signal
from sepkit.metrics.targets import MUSDB_TARGET_SOURCES

__all__ = ["ORACLES", "oracle_estimates", "oracle_track_estimates"]

N_FFT = 4096
HOP = 1024
# keeps a bin where every stem is silent from dividing by zero (as sigsep's float64 eps)
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Oracle:
    """A mask from the stems' spectrograms: ratio of magnitudes to the power ``alpha``,
    binarised at ``threshold`` when one is given; ``name`` is the method in the reports
    (sigsep's)."""

    name: str
    alpha: float | None  # None: no mask, the mixture itself
    threshold: float | None = None


ORACLES = {
    "irm1": Oracle("IRM1", alpha=1.0),
    "irm2": Oracle("IRM2", alpha=2.0),
    "ibm": Oracle("IBM", alpha=1.0, threshold=0.5),
    "mixture": Oracle("MIX", alpha=None),
}


def _stft(audio: np.ndarray) -> np.ndarray:
    """(samples, channels) -> complex (channels, freq, frames)."""
    _, _, spectrogram = signal.stft(
        audio.T, window="hann", nperseg=N_FFT, noverlap=N_FFT - HOP, boundary="zeros"
    )
    return spectrogram.astype(np.complex64)


def _istft(spectrogram: np.ndarray, length: int) -> np.ndarray:
    """complex (channels, freq, frames) -> (length, channels) float64."""
    _, audio = signal.istft(spectrogram, window="hann", nperseg=N_FFT, noverlap=N_FFT - HOP)
    audio = audio[:, :length]
    if audio.shape[1] < length:
        audio = np.pad(audio, ((0, 0), (0, length - audio.shape[1])))
    return audio.T.astype(np.float64)


def oracle_estimates(
    method: str, mixture: np.ndarray, stems: dict[str, np.ndarray], targets: list[str]
) -> dict[str, np.ndarray]:
    """The oracle ``method``'s estimate of each of ``targets``, each (samples, channels).

    ``stems`` holds every stem of the mixture (samples, channels) by name, the targets and
    the others, so that the masks share the mixture among all of them; ``targets`` are
    names among ``stems``.
    """
    if method not in ORACLES:
        raise ValueError(f"oracle={method!r}: choose one of {', '.join(ORACLES)}")
    oracle = ORACLES[method]
    if oracle.alpha is None:
        return {target: mixture.copy() for target in targets}
    powers = {name: np.abs(_stft(audio)) ** oracle.alpha for name, audio in stems.items()}
    total = sum(powers.values()) + EPS
    mixture_spectrogram = _stft(mixture)
    estimates = {}
    for target in targets:
        mask = powers[target] / total
        if oracle.threshold is not None:
            mask = (mask > oracle.threshold).astype(np.float32)
        estimates[target] = _istft(mask * mixture_spectrogram, len(mixture))
    return estimates


def oracle_track_estimates(
    method: str,
    references: dict[str, AudioSource],
    mixture: AudioSource | None,
    nb_channels: int,
    scored: list[str],
) -> dict[str, np.ndarray]:
    """One track's oracle estimates of the ``scored`` targets, (samples, channels) each,
    from its stems (``references``, read as the scores read them) and its mixture (their
    sum where the dataset has no mixture file). musdb's derived targets (the accompaniment)
    are the sums of their stems' estimates, as sigsep's oracles and museval's callers sum
    them."""
    stems = {name: read_signal(source, nb_channels) for name, source in references.items()}
    audio = read_signal(mixture, nb_channels) if mixture is not None else sum(stems.values())
    direct = [name for name in scored if name in stems]
    needed = {stem for name in scored if name not in stems for stem in MUSDB_TARGET_SOURCES[name]}
    estimates = oracle_estimates(method, audio, stems, sorted(set(direct) | needed))
    return {
        name: estimates[name]
        if name in stems
        else sum(estimates[stem] for stem in MUSDB_TARGET_SOURCES[name])
        for name in scored
    }
