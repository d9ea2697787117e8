"""Score one MUSDB18-style track the way museval.eval_mus_track does, fast or with museval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sepkit.metrics.arrays import to_numpy
from sepkit.metrics.bsseval import bss_eval_v4, number_of_windows, silent_sources
from sepkit.metrics.targets import MUSDB_TARGET_SOURCES

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKENDS",
    "MUSDB_TARGET_SOURCES",
    "evaluate_track",
    "fit_length",
    "round_like_museval",
]

BACKENDS = ("fast", "museval")

# museval's JSON lists each frame's metrics in this order
JSON_METRIC_ORDER = ("SDR", "SIR", "SAR", "ISR")

# (references, estimates) (sources, samples, channels) -> {"SDR", ...} (sources, windows)
MetricsCore = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]


def _as_audio(audio: Any, name: str) -> np.ndarray:
    """Array or tensor (samples, channels), or (samples,) for mono -> float64 numpy."""
    array = np.asarray(to_numpy(audio), dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} has shape {array.shape}: expected (samples, channels)")
    return array


def fit_length(estimate: np.ndarray, num_samples: int) -> np.ndarray:
    """museval.pad_or_truncate for one estimate: cut to num_samples or pad zeros at the end."""
    if len(estimate) >= num_samples:
        return estimate[:num_samples]
    return np.pad(estimate, ((0, num_samples - len(estimate)), (0, 0)))


def round_like_museval(value: float) -> float:
    """museval's TrackStore._q: +-inf and NaN become NaN, others are rounded to 1e-5.

    museval quantises Decimal(value) half-to-even; Python's round() also rounds the exact
    binary value half-to-even, so both give the same float.
    """
    if not math.isfinite(value):
        return math.nan
    return round(value, 5)


def _metrics_core(
    backend: str, window: int, hop: int, device: torch.device | str | None
) -> MetricsCore:
    """BSSEval of one call: bss_eval_v4, or museval.evaluate itself."""
    if backend == "fast":
        return lambda references, estimates: bss_eval_v4(
            references, estimates, window=window, hop=hop, device=device
        )

    import museval  # only needed for the reference backend

    def museval_core(references: np.ndarray, estimates: np.ndarray) -> dict[str, np.ndarray]:
        sdr, isr, sir, sar = museval.evaluate(references, estimates, win=window, hop=hop)
        return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}

    return museval_core


def _reference_audio(
    references: Mapping[str, Any], estimates: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The references as float64 (samples, channels), with musdb's sums of stems (the
    accompaniment, ...) built where they are estimated but not given; all of one shape."""
    reference_audio = {
        name: _as_audio(audio, f"reference {name!r}") for name, audio in references.items()
    }
    for name, sources in MUSDB_TARGET_SOURCES.items():
        derivable = len(sources) > 1 and all(source in reference_audio for source in sources)
        if derivable and name not in reference_audio and name in estimates:
            reference_audio[name] = np.sum([reference_audio[s] for s in sources], axis=0)
    shapes = {name: audio.shape for name, audio in reference_audio.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"references differ in shape (samples, channels): {shapes}")
    return reference_audio


def _estimate_audio(
    estimates: Mapping[str, Any], names: list[str], shape: tuple[int, int]
) -> dict[str, np.ndarray]:
    """The estimates of ``names`` as float64 (samples, channels), cut or zero-padded to the
    references' ``shape``; an estimate with other channels is a ValueError."""
    num_samples, num_channels = shape
    estimate_audio = {}
    for name in names:
        audio = _as_audio(estimates[name], f"estimate {name!r}")
        if audio.shape[1] != num_channels:
            raise ValueError(
                f"estimate {name!r} has {audio.shape[1]} channel(s), its reference "
                f"{num_channels}: give estimates with the references' channels"
            )
        estimate_audio[name] = fit_length(audio, num_samples)
    return estimate_audio


def _silent_targets(
    names: list[str], references: dict[str, np.ndarray], estimates: dict[str, np.ndarray]
) -> set[str]:
    """The targets whose reference or estimate is silent over the whole track, each named
    in a warning."""
    silent = set()
    for role, audio in (("reference", references), ("estimate", estimates)):
        for index in silent_sources([audio[name] for name in names]):
            if names[index] not in silent:
                warnings.warn(
                    f"{names[index]}: the {role} is silent (all zeros) over the whole "
                    "track; its scores are NaN and the other targets are scored without "
                    "it",
                    stacklevel=5,
                )
            silent.add(names[index])
    return silent


def _bsseval_call(
    names: list[str],
    references: dict[str, np.ndarray],
    estimates: dict[str, np.ndarray],
    core: MetricsCore,
    num_windows: int,
) -> dict[str, dict[str, np.ndarray]]:
    """One BSSEval call over ``names``: target -> metric -> (windows,) values; whole-track
    silent targets are NaN and left out of the call."""
    silent = _silent_targets(names, references, estimates)
    scored = [name for name in names if name not in silent]
    results = {
        name: {m: np.full(num_windows, np.nan) for m in JSON_METRIC_ORDER} for name in silent
    }
    if scored:
        values = core(
            np.stack([references[name] for name in scored]),
            np.stack([estimates[name] for name in scored]),
        )
        for index, name in enumerate(scored):
            results[name] = {metric: values[metric][index] for metric in JSON_METRIC_ORDER}
    return results


def _frames(values: dict[str, np.ndarray], window: float, hop: float) -> list[dict[str, Any]]:
    """museval's JSON frames of one target, values rounded as museval rounds them."""
    return [
        {
            "time": index * hop,
            "duration": window,
            "metrics": {m: round_like_museval(float(values[m][index])) for m in JSON_METRIC_ORDER},
        }
        for index in range(len(values["SDR"]))
    ]


def _targets_in_musdb_order(
    references: Mapping[str, Any],
    reference_audio: dict[str, np.ndarray],
    estimates: Mapping[str, Any],
) -> list[str]:
    """The targets with a reference and an estimate, in musdb's order then the references';
    a warning names the estimates without a reference."""
    order = list(MUSDB_TARGET_SOURCES) + [n for n in references if n not in MUSDB_TARGET_SOURCES]
    unscored = [name for name in estimates if name not in reference_audio]
    if unscored:
        warnings.warn(f"estimates {unscored} have no reference and are not scored", stacklevel=3)
    return [name for name in order if name in estimates and name in reference_audio]


def _calls(eval_targets: list[str]) -> list[tuple[list[str], list[str]]]:
    """The BSSEval calls eval_mus_track makes, as (targets scored together, targets whose
    scores are kept): the stems, then vocals with accompaniment (see evaluate_track)."""
    has_accompaniment = "vocals" in eval_targets and "accompaniment" in eval_targets
    stems = [name for name in eval_targets if not (has_accompaniment and name == "accompaniment")]
    calls = []
    if len(stems) >= 2:
        kept = [name for name in stems if not (name == "vocals" and has_accompaniment)]
        calls.append((stems, kept))
    elif not has_accompaniment:
        warnings.warn(
            f"only {stems} can be scored: BSSEval needs at least two targets, as in "
            "museval.eval_mus_track; no scores for this track",
            stacklevel=3,
        )
    if has_accompaniment:
        calls.append((["vocals", "accompaniment"], ["vocals", "accompaniment"]))
    return calls


def evaluate_track(
    references: Mapping[str, Any],
    estimates: Mapping[str, Any],
    backend: str = "fast",
    window: float = 1.0,
    hop: float = 1.0,
    sample_rate: int = 44100,
    device: torch.device | str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """BSSEval v4 scores of one track, as museval.eval_mus_track computes and stores them.

    Targets present in both dicts are scored in musdb's order (vocals, drums, bass, other,
    accompaniment, linear_mixture, then any other name in the order of `references`):
    all of them together in one BSSEval call, except that when both "vocals" and
    "accompaniment" are estimated, accompaniment is left out of that call, vocals' scores
    from it are dropped, and vocals and accompaniment are scored in a second call of their
    own. Like eval_mus_track, nothing is scored when fewer than two targets remain for the
    first call and there is no vocals/accompaniment pair (with a warning).

    The "accompaniment" and "linear_mixture" references may be left out: they are then
    built from the stems as musdb builds them (bass + drums + other, and all four).

    Unlike museval, which raises ValueError for the whole track, a target whose reference
    or estimate is silent (all zeros) over the whole track is scored NaN in every frame
    with a warning naming it, and the other targets are scored without it.

    Args:
        references: target name -> true stem (samples, channels), array or tensor; all the
            same shape.
        estimates: target name -> estimated stem (samples', channels). Each is cut to the
            references' length or padded with zeros at the end, as museval does.
        backend: "fast" (bss_eval_v4) or "museval" (museval.evaluate itself).
        window: window length in seconds (museval: 1.0).
        hop: hop between windows in seconds (museval: 1.0).
        sample_rate: of the stems, in Hz; windows are int(window * sample_rate) samples.
        device: torch device of the fast backend (the CPU, with numpy, when None).

    Returns:
        museval's JSON structure: {"targets": [{"name": str, "frames": [{"time": i * hop,
        "duration": window, "metrics": {"SDR", "SIR", "SAR", "ISR"}}]}]}, metrics in dB
        rounded to 1e-5 as museval rounds them, NaN where museval writes NaN (windows with
        a silent reference or estimate, and infinite ratios).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    window_samples, hop_samples = int(window * sample_rate), int(hop * sample_rate)
    reference_audio = _reference_audio(references, estimates)
    eval_targets = _targets_in_musdb_order(references, reference_audio, estimates)
    if not eval_targets:
        return {"targets": []}
    shape = next(iter(reference_audio.values())).shape
    estimate_audio = _estimate_audio(estimates, eval_targets, shape)
    core = _metrics_core(backend, window_samples, hop_samples, device)
    num_windows = number_of_windows(shape[0], window_samples, hop_samples)
    targets = []
    for names, kept in _calls(eval_targets):
        results = _bsseval_call(names, reference_audio, estimate_audio, core, num_windows)
        targets += [{"name": name, "frames": _frames(results[name], window, hop)} for name in kept]
    return {"targets": targets}
