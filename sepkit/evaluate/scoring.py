"""Scoring one track, in this process or a worker: BSSEval for music, SI-SDR/SDR for speech.

Music (``metrics=bsseval``) is scored as museval's ``eval_mus_track`` scores MUSDB18
(``sepkit.metrics.evaluate_track``), and each target also gets SI-SDR and nSDR over the
whole track and their improvement over the mixture. Speech (``metrics=speech``) gets SI-SDR
and SDR per utterance and their improvements, each estimate matched to the reference it
fits best (the permutation with the highest total SI-SDR).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepkit.errors import SepkitError
from sepkit.evaluate.audio import AudioSource, read_signal
from sepkit.evaluate.device import scoring_device
from sepkit.evaluate.reports import MIXTURE, MUSIC_TRACK_METRICS, Row, frame_medians
from sepkit.metrics.permutation import best_permutation
from sepkit.metrics.ratios import sdr, si_sdr
from sepkit.metrics.targets import MUSDB_TARGET_SOURCES
from sepkit.metrics.track import evaluate_track, fit_length, round_like_museval

__all__ = ["ESTIMATES", "TrackJob", "TrackResult", "score_track"]

# the rows of a job's own estimates, renamed to the method's name in the main process
ESTIMATES = "estimates"


@dataclass
class TrackJob:
    """Everything needed to score one track, picklable for a worker process.

    ``references`` holds every stem of the mixture by name (derived targets such as the
    accompaniment are built from them); ``estimates`` maps target names to files or to
    float arrays (samples, channels); ``targets`` are the dataset's targets (for speech,
    the speakers, in reference order). ``window`` and ``hop`` are in seconds.
    """

    track: str
    references: dict[str, AudioSource]
    mixture: AudioSource | None
    estimates: dict[str, AudioSource | np.ndarray]
    targets: list[str]
    nb_channels: int
    sample_rate: int
    metrics: str = "bsseval"
    backend: str = "fast"
    window: float = 1.0
    hop: float = 1.0
    baseline: bool = True
    device: str | None = None


@dataclass
class TrackResult:
    """The scores of one track: museval's JSON structure for the estimates (with whole-track
    metrics per target), score rows (method ``estimates`` or ``mixture``), the warnings
    raised while scoring, and the seconds it took."""

    track: str
    scores: dict[str, Any]
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _TrackAudio:
    """One track's signals as float64 (samples, channels): the references by stem, the
    mixture, and the estimates by target, these two cut or zero-padded to the references'
    length (as museval does)."""

    references: dict[str, np.ndarray]
    mixture: np.ndarray
    estimates: dict[str, np.ndarray]


def score_track(job: TrackJob) -> TrackResult:
    """Read one track's references, mixture and estimates and score them (any process)."""
    started = time.perf_counter()
    if job.device == "auto":
        job = dataclasses.replace(job, device=scoring_device(job.device, here=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        audio = _read_track(job)
        try:
            if job.metrics == "speech":
                scores, rows = _speech_scores(job, audio)
            else:
                scores, rows = _music_scores(job, audio)
        except ValueError as error:
            raise SepkitError(f"{job.track}: {error}") from None
    messages = list(dict.fromkeys(str(warning.message) for warning in caught))
    return TrackResult(job.track, scores, rows, messages, time.perf_counter() - started)


def _read_track(job: TrackJob) -> _TrackAudio:
    """Read the references, the mixture (or their sum) and the estimates of a job."""
    references = {
        name: read_signal(source, job.nb_channels) for name, source in job.references.items()
    }
    num_samples = len(next(iter(references.values())))
    if job.mixture is not None:
        mixture = fit_length(read_signal(job.mixture, job.nb_channels), num_samples)
    else:
        mixture = np.sum(list(references.values()), axis=0)
    estimates = {}
    for name, estimate in job.estimates.items():
        if isinstance(estimate, AudioSource):
            estimate = read_signal(estimate, job.nb_channels)
        estimates[name] = fit_length(np.asarray(estimate, dtype=np.float64), num_samples)
    return _TrackAudio(references, mixture, estimates)


# -- music -----------------------------------------------------------------------------------


def _reference_of(name: str, references: dict[str, np.ndarray]) -> np.ndarray | None:
    """A target's reference: its stem, or musdb's sum of stems (in musdb's order)."""
    if name in references:
        return references[name]
    sources = MUSDB_TARGET_SOURCES.get(name, ())
    if sources and all(source in references for source in sources):
        return np.sum([references[source] for source in sources], axis=0)
    return None


def _whole_track_metrics(
    reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray
) -> dict[str, dict[str, float]]:
    """SI-SDR and nSDR of the estimate and of the mixture over the whole track (channels
    and time as one signal), and the estimate's improvement; NaN for silent signals."""
    if not reference.any() or not estimate.any():
        nan = {name: math.nan for name in MUSIC_TRACK_METRICS}
        return {ESTIMATES: nan, MIXTURE: dict(nan)}
    # sums over all samples of all channels, in whatever order: flat views, no copies
    reference, estimate, mixture = (x.reshape(-1) for x in (reference, estimate, mixture))
    ours_si, mixture_si = (float(si_sdr(x, reference)) for x in (estimate, mixture))
    ours_n, mixture_n = (float(sdr(x, reference, dim=-1)) for x in (estimate, mixture))
    return {
        ESTIMATES: {
            "SI-SDR": ours_si,
            "SI-SDRi": ours_si - mixture_si,
            "nSDR": ours_n,
            "nSDRi": ours_n - mixture_n,
        },
        MIXTURE: {"SI-SDR": mixture_si, "SI-SDRi": 0.0, "nSDR": mixture_n, "nSDRi": 0.0},
    }


def _bsseval(
    job: TrackJob, references: dict[str, np.ndarray], estimates: dict[str, np.ndarray]
) -> dict[str, Any]:
    """museval's JSON structure of one track's BSSEval v4 scores (evaluate_track)."""
    return evaluate_track(
        references,
        estimates,
        backend=job.backend,
        window=job.window,
        hop=job.hop,
        sample_rate=job.sample_rate,
        device=job.device,
    )


def _music_scores(job: TrackJob, audio: _TrackAudio) -> tuple[dict[str, Any], list[Row]]:
    """BSSEval and whole-track scores of the estimates (and of the mixture as the estimate
    of every target, with ``job.baseline``): the JSON structure and the rows, in the order
    estimates' window medians, whole-track metrics, mixture's window medians."""
    references, mixture, estimates = audio.references, audio.mixture, audio.estimates
    scores = _bsseval(job, references, estimates)
    rows = frame_medians(ESTIMATES, job.track, scores)
    for target in scores["targets"]:
        name = target["name"]
        values = _whole_track_metrics(_reference_of(name, references), estimates[name], mixture)
        target["track_metrics"] = {k: round_like_museval(v) for k, v in values[ESTIMATES].items()}
        for method, metrics in values.items():
            if method == MIXTURE and not job.baseline:
                continue
            rows += [Row(method, job.track, name, k, v) for k, v in metrics.items()]
    if job.baseline:
        with warnings.catch_warnings():
            # silent stems were reported once, for the estimates
            warnings.filterwarnings("ignore", message=".*silent")
            baseline = _bsseval(job, references, {name: mixture for name in estimates})
        rows += frame_medians(MIXTURE, job.track, baseline)
    return scores, rows


# -- speech ----------------------------------------------------------------------------------


def _flat(signals: list[np.ndarray]) -> np.ndarray:
    """(sources, samples, channels) -> (sources, channels * samples)."""
    return np.stack(signals).transpose(0, 2, 1).reshape(len(signals), -1)


def _speaker_scores(
    values: dict[str, list[float]], index: int, name: str, silent: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """The scores of speaker ``index``'s matched estimate and of the mixture; NaN with a
    warning when its reference is silent."""
    ours = {
        "SI-SDR": values["SI-SDR"][index],
        "SI-SDRi": values["SI-SDR"][index] - values["mixture SI-SDR"][index],
        "SDR": values["SDR"][index],
        "SDRi": values["SDR"][index] - values["mixture SDR"][index],
    }
    baseline = {
        "SI-SDR": values["mixture SI-SDR"][index],
        "SI-SDRi": 0.0,
        "SDR": values["mixture SDR"][index],
        "SDRi": 0.0,
    }
    if silent:
        warnings.warn(
            f"{name}: the reference is silent (all zeros); its scores are NaN", stacklevel=3
        )
        ours = {key: math.nan for key in ours}
        baseline = {key: math.nan for key in baseline}
    return ours, baseline


def _speech_scores(job: TrackJob, audio: _TrackAudio) -> tuple[dict[str, Any], list[Row]]:
    """SI-SDR(i) and SDR(i) per speaker under the permutation with the highest total
    SI-SDR (utterance-level PIT), with numpy (no torch: see scoring_device)."""
    references, mixture, estimates = audio.references, audio.mixture, audio.estimates
    estimate_names = list(estimates)
    reference = _flat([references[name] for name in job.targets])
    estimate = _flat([estimates[name] for name in estimate_names])
    mix = np.broadcast_to(_flat([mixture]), reference.shape)
    pairwise = si_sdr(estimate[:, None], reference[None, :])  # [estimate, reference]
    # the estimate of each reference: the assignment with the highest total SI-SDR
    permutation = best_permutation(-pairwise).tolist()
    matched = estimate[permutation]
    values = {
        "SI-SDR": si_sdr(matched, reference),
        "SDR": sdr(matched, reference, dim=-1),
        "mixture SI-SDR": si_sdr(mix, reference),
        "mixture SDR": sdr(mix, reference, dim=-1),
    }
    values = {key: value.tolist() for key, value in values.items()}
    duration = reference.shape[-1] / job.nb_channels / job.sample_rate
    targets, rows = [], []
    for index, name in enumerate(job.targets):
        ours, baseline = _speaker_scores(values, index, name, not references[name].any())
        metrics = {k: round_like_museval(v) for k, v in ours.items()}
        frame = {"time": 0.0, "duration": duration, "metrics": metrics}
        estimated = estimate_names[permutation[index]]
        targets.append({"name": name, "estimate": estimated, "frames": [frame]})
        rows += [Row(ESTIMATES, job.track, name, k, v) for k, v in ours.items()]
        if job.baseline:
            rows += [Row(MIXTURE, job.track, name, k, v) for k, v in baseline.items()]
    return {"targets": targets}, rows
