"""Score one MUSDB18-style track the way museval.eval_mus_track does, fast or with museval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sepkit.metrics.bsseval import _to_numpy, bss_eval_v4, number_of_windows, silent_sources
from sepkit.metrics.targets import MUSDB_TARGET_SOURCES

if TYPE_CHECKING:
    import torch

__all__ = ["BACKENDS", "MUSDB_TARGET_SOURCES", "evaluate_track"]

BACKENDS = ("fast", "museval")

# museval's JSON lists each frame's metrics in this order
JSON_METRIC_ORDER = ("SDR", "SIR", "SAR", "ISR")


def _as_audio(audio: Any, name: str) -> np.ndarray:
    """Array or tensor (samples, channels), or (samples,) for mono -> float64 numpy."""
    array = np.asarray(_to_numpy(audio), dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} has shape {array.shape}: expected (samples, channels)")
    return array


def _fit_length(estimate: np.ndarray, num_samples: int) -> np.ndarray:
    """museval.pad_or_truncate for one estimate: cut to num_samples or pad zeros at the end."""
    if len(estimate) >= num_samples:
        return estimate[:num_samples]
    return np.pad(estimate, ((0, num_samples - len(estimate)), (0, 0)))


def _round_like_museval(value: float) -> float:
    """museval's TrackStore._q: +-inf and NaN become NaN, others are rounded to 1e-5.

    museval quantises Decimal(value) half-to-even; Python's round() also rounds the exact
    binary value half-to-even, so both give the same float.
    """
    if not math.isfinite(value):
        return math.nan
    return round(value, 5)


def _metrics_core(backend: str, window: int, hop: int, device: torch.device | str | None) -> Any:
    """(references, estimates) (sources, samples, channels) -> {"SDR", ...} (sources, windows)."""
    if backend == "fast":
        return lambda references, estimates: bss_eval_v4(
            references, estimates, window=window, hop=hop, device=device
        )

    import museval  # only needed for the reference backend

    def museval_core(references: np.ndarray, estimates: np.ndarray) -> dict[str, np.ndarray]:
        sdr, isr, sir, sar = museval.evaluate(references, estimates, win=window, hop=hop)
        return {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}

    return museval_core


def evaluate_track(
    references: Mapping[str, Any],
    estimates: Mapping[str, Any],
    backend: str = "fast",
    window: float = 1.0,
    hop: float = 1.0,
    sample_rate: int = 44100,
    device: torch.device | str | None = None,
    calls: Sequence[int] | None = None,
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
        calls: which of the (up to) two BSSEval calls to make: 0, the call over the stems;
            1, vocals with accompaniment. None: both. The targets of separate calls,
            concatenated in call order, are those of one call with both (processes can
            share a track's work so).

    Returns:
        museval's JSON structure: {"targets": [{"name": str, "frames": [{"time": i * hop,
        "duration": window, "metrics": {"SDR", "SIR", "SAR", "ISR"}}]}]}, metrics in dB
        rounded to 1e-5 as museval rounds them, NaN where museval writes NaN (windows with
        a silent reference or estimate, and infinite ratios).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    window_samples, hop_samples = int(window * sample_rate), int(hop * sample_rate)

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

    order = list(MUSDB_TARGET_SOURCES) + [n for n in references if n not in MUSDB_TARGET_SOURCES]
    eval_targets = [name for name in order if name in estimates and name in reference_audio]
    unscored = [name for name in estimates if name not in reference_audio]
    if unscored:
        warnings.warn(f"estimates {unscored} have no reference and are not scored", stacklevel=2)
    if not eval_targets:
        return {"targets": []}

    num_samples, num_channels = next(iter(shapes.values()))
    estimate_audio = {}
    for name in eval_targets:
        audio = _as_audio(estimates[name], f"estimate {name!r}")
        if audio.shape[1] != num_channels:
            raise ValueError(
                f"estimate {name!r} has {audio.shape[1]} channel(s), its reference "
                f"{num_channels}: give estimates with the references' channels"
            )
        estimate_audio[name] = _fit_length(audio, num_samples)

    core = _metrics_core(backend, window_samples, hop_samples, device)
    num_windows = number_of_windows(num_samples, window_samples, hop_samples)

    def score(names: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """One BSSEval call over `names`; whole-track silent targets are NaN, left out."""
        silent = set()
        for role, audio in (("reference", reference_audio), ("estimate", estimate_audio)):
            for index in silent_sources([audio[name] for name in names]):
                if names[index] not in silent:
                    warnings.warn(
                        f"{names[index]}: the {role} is silent (all zeros) over the whole "
                        "track; its scores are NaN and the other targets are scored without "
                        "it",
                        stacklevel=3,
                    )
                silent.add(names[index])
        scored = [name for name in names if name not in silent]
        results = {
            name: {m: np.full(num_windows, np.nan) for m in JSON_METRIC_ORDER} for name in silent
        }
        if scored:
            values = core(
                np.stack([reference_audio[name] for name in scored]),
                np.stack([estimate_audio[name] for name in scored]),
            )
            for index, name in enumerate(scored):
                results[name] = {metric: values[metric][index] for metric in JSON_METRIC_ORDER}
        return results

    def frames(values: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        return [
            {
                "time": index * hop,
                "duration": window,
                "metrics": {
                    m: _round_like_museval(float(values[m][index])) for m in JSON_METRIC_ORDER
                },
            }
            for index in range(len(values["SDR"]))
        ]

    targets = []
    has_accompaniment = "vocals" in eval_targets and "accompaniment" in eval_targets
    if has_accompaniment:
        eval_targets.remove("accompaniment")
    stems_call = calls is None or 0 in calls
    pair_call = has_accompaniment and (calls is None or 1 in calls)
    if stems_call and len(eval_targets) >= 2:
        results = score(eval_targets)
        for name in eval_targets:
            if not (name == "vocals" and has_accompaniment):
                targets.append({"name": name, "frames": frames(results[name])})
    elif stems_call and not has_accompaniment:
        warnings.warn(
            f"only {eval_targets} can be scored: BSSEval needs at least two targets, as in "
            "museval.eval_mus_track; no scores for this track",
            stacklevel=2,
        )
    if pair_call:
        results = score(["vocals", "accompaniment"])
        for name in ("vocals", "accompaniment"):
            targets.append({"name": name, "frames": frames(results[name])})
    return {"targets": targets}
