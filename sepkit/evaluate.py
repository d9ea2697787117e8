"""``sepkit eval``: score a model, or stems on disk, on a dataset's test split, and report.

For each test track: the estimates (the model's stems, separated here, or files from an
``estimates`` folder), the references and the mixture are read, scored, and the scores
written as ``<out>/test/<track>.json`` in museval's format. At the end ``results.csv``,
``summary.md``, ``boxplot.png`` and ``evaluation.json`` are written and the summary table
printed (``sepkit.reports``).

Music (``metrics=bsseval``) is scored as museval's ``eval_mus_track`` scores MUSDB18
(``sepkit.metrics.evaluate_track``): BSSEval v4 on 1 s windows, vocals again against the
accompaniment when an accompaniment is estimated, NaN windows where a reference or an
estimate is silent, a silent stem NaN with a warning instead of museval's ValueError.
References are read as museval's caller reads them: MUSDB18 and sets in its layout (the toy
set) through musdb's reader, 16-bit PCM from ffmpeg (``.stem.mp4`` streams decoded by
stempeg as musdb does, WAV files rounded to 16 bits exactly as ffmpeg rounds them); other
folders as soundfile reads them. Each target also gets SI-SDR and nSDR (the plain energy
ratio of Demucs and the Music Demixing Challenge) over the whole track, and their
improvement over the mixture.

Speech (``metrics=speech``, the default for speech datasets, whose speakers have no order)
gets SI-SDR and SDR per utterance and their improvements over the mixture, each estimate
matched to the reference it fits best (the permutation with the highest total SI-SDR).

With ``baseline`` the mixture is also scored as the estimate of every target, so the
tables show how much separation adds. ``workers=N`` scores N tracks at once in processes of
one thread each, while this process separates the next track; the model's stems
travel to them as float WAVs under ``<out>/estimates/``, deleted once scored unless
``save_estimates``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

import sepkit
from sepkit.audio import convert_channels
from sepkit.errors import SepkitError
from sepkit.files import write_text_atomic
from sepkit.reports import (
    MIXTURE,
    MUSIC_TRACK_METRICS,
    OVER_TRACKS,
    Evaluation,
    Row,
    box_plot,
    distinct_method_names,
    frame_medians,
    improvement_line,
    load_evaluation,
    summary_markdown,
    summary_table,
    write_results_csv,
)
from sepkit.scoring_server import (
    no_gpu_here,
    one_thread_per_library,
    scoring_context,
    start_scoring_server,
)

__all__ = [
    "AudioSource",
    "TrackJob",
    "TrackResult",
    "find_estimate_files",
    "read_signal",
    "run_evaluation",
    "score_track",
]

# the rows of a job's own estimates, renamed to the method's name in the main process
ESTIMATES = "estimates"
# targets an estimates folder may hold beyond the dataset's: musdb's sums of stems
DERIVED_TARGETS = ("accompaniment", "linear_mixture")
# below this many tracks per scoring process, a track's BSSEval calls are scored apart
SPLIT_BELOW_TRACKS_PER_WORKER = 4
# glibc's mallopt parameters (malloc.h) and what a scoring process keeps of freed memory
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEPT_FREE_BYTES = 2**30


# -- reading audio ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioSource:
    """Where one signal is and how its dataset's reference reader reads it.

    ``stream``: a stream of a ``.stem.mp4`` file, decoded by stempeg to 16-bit PCM as musdb
    decodes it. ``pcm16``: a WAV/FLAC file rounded to 16 bits, as musdb reads WAV files
    (through ffmpeg's s16le: round half to even, clipped), bit for bit. Neither: the file as
    soundfile reads it, in float64.
    """

    path: Path
    stream: int | None = None
    pcm16: bool = False


def read_signal(source: AudioSource, nb_channels: int) -> np.ndarray:
    """The whole signal as float64 (samples, nb_channels)."""
    try:
        if source.stream is not None:
            import stempeg

            audio, _ = stempeg.read_stems(
                str(source.path), stem_id=source.stream, ffmpeg_format="s16le"
            )
        else:
            audio, _ = soundfile.read(str(source.path), dtype="float64", always_2d=True)
    except (RuntimeError, OSError, Warning) as error:  # libsndfile, ffmpeg
        raise SepkitError(f"{source.path}: cannot read it as audio ({error})") from None
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 1:
        audio = audio[:, None]
    if source.pcm16:
        audio = np.clip(np.rint(audio * 32768.0), -32768.0, 32767.0) / 32768.0
    return convert_channels(
        audio,
        nb_channels,
        source.path,
        "the references' channels; set dataset.nb_channels to match",
    )


# -- scoring one track (in this process or a worker) ----------------------------------------


@dataclass
class TrackJob:
    """Everything needed to score one track, picklable for a worker process.

    ``references`` holds every stem of the mixture by name (derived targets such as the
    accompaniment are built from them); ``estimates`` maps target names to files or to
    float arrays (samples, channels); ``targets`` are the dataset's targets (for speech,
    the speakers, in reference order).
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
    calls: tuple[int, ...] | None = None  # of evaluate_track; None: all


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


def _reference_of(name: str, references: dict[str, np.ndarray]) -> np.ndarray | None:
    """A target's reference: its stem, or musdb's sum of stems (in musdb's order)."""
    from sepkit.metrics import MUSDB_TARGET_SOURCES

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
    from sepkit.metrics import sdr, si_sdr

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


def _music_scores(
    job: TrackJob,
    references: dict[str, np.ndarray],
    mixture: np.ndarray,
    estimates: dict[str, np.ndarray],
) -> tuple[dict[str, Any], list[Row]]:
    from sepkit.metrics import evaluate_track
    from sepkit.metrics.track import _round_like_museval

    def bsseval(estimated: dict[str, np.ndarray]) -> dict[str, Any]:
        return evaluate_track(
            references,
            estimated,
            backend=job.backend,
            window=job.window,
            hop=job.hop,
            sample_rate=job.sample_rate,
            device=job.device,
            calls=job.calls,
        )

    scores = bsseval(estimates)
    rows = frame_medians(ESTIMATES, job.track, scores)
    for target in scores["targets"]:
        name = target["name"]
        values = _whole_track_metrics(_reference_of(name, references), estimates[name], mixture)
        target["track_metrics"] = {k: _round_like_museval(v) for k, v in values[ESTIMATES].items()}
        for method, metrics in values.items():
            if method == MIXTURE and not job.baseline:
                continue
            rows += [Row(method, job.track, name, k, v) for k, v in metrics.items()]
    if job.baseline:
        with warnings.catch_warnings():
            # silent stems were reported once, for the estimates
            warnings.filterwarnings("ignore", message=".*silent")
            baseline = bsseval({name: mixture for name in estimates})
        rows += frame_medians(MIXTURE, job.track, baseline)
    return scores, rows


def _speech_scores(
    job: TrackJob,
    references: dict[str, np.ndarray],
    mixture: np.ndarray,
    estimates: dict[str, np.ndarray],
) -> tuple[dict[str, Any], list[Row]]:
    """SI-SDR(i) and SDR(i) per speaker under the permutation with the highest total
    SI-SDR (utterance-level PIT), with numpy (no torch: see _scoring_device)."""
    from scipy.optimize import linear_sum_assignment

    from sepkit.metrics import sdr, si_sdr
    from sepkit.metrics.track import _round_like_museval

    estimate_names = list(estimates)

    def flat(signals: list[np.ndarray]) -> np.ndarray:
        # (sources, samples, channels) -> (sources, channels * samples)
        return np.stack(signals).transpose(0, 2, 1).reshape(len(signals), -1)

    reference = flat([references[name] for name in job.targets])
    estimate = flat([estimates[name] for name in estimate_names])
    mix = np.broadcast_to(flat([mixture]), reference.shape)
    pairwise = si_sdr(estimate[:, None], reference[None, :])  # [estimate, reference]
    # the estimate of each reference: the assignment with the highest total SI-SDR
    matched_estimates, matched_references = linear_sum_assignment(pairwise, maximize=True)
    permutation = matched_estimates[np.argsort(matched_references)].tolist()
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
        silent = not references[name].any()
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
                f"{name}: the reference is silent (all zeros); its scores are NaN", stacklevel=2
            )
            ours = {key: math.nan for key in ours}
            baseline = {key: math.nan for key in baseline}
        targets.append(
            {
                "name": name,
                "estimate": estimate_names[permutation[index]],
                "frames": [
                    {
                        "time": 0.0,
                        "duration": duration,
                        "metrics": {k: _round_like_museval(v) for k, v in ours.items()},
                    }
                ],
            }
        )
        rows += [Row(ESTIMATES, job.track, name, k, v) for k, v in ours.items()]
        if job.baseline:
            rows += [Row(MIXTURE, job.track, name, k, v) for k, v in baseline.items()]
    return {"targets": targets}, rows


def score_track(job: TrackJob) -> TrackResult:
    """Read one track's references, mixture and estimates and score them (any process)."""
    from sepkit.metrics.track import _fit_length

    started = time.perf_counter()
    if job.device == "auto":
        job = dataclasses.replace(job, device=_scoring_device(job.device, here=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        references = {
            name: read_signal(source, job.nb_channels) for name, source in job.references.items()
        }
        num_samples = len(next(iter(references.values())))
        if job.mixture is not None:
            mixture = _fit_length(read_signal(job.mixture, job.nb_channels), num_samples)
        else:
            mixture = np.sum(list(references.values()), axis=0)
        estimates = {}
        for name, estimate in job.estimates.items():
            if isinstance(estimate, AudioSource):
                estimate = read_signal(estimate, job.nb_channels)
            estimates[name] = _fit_length(np.asarray(estimate, dtype=np.float64), num_samples)
        try:
            if job.metrics == "speech":
                scores, rows = _speech_scores(job, references, mixture, estimates)
            else:
                scores, rows = _music_scores(job, references, mixture, estimates)
        except ValueError as error:
            raise SepkitError(f"{job.track}: {error}") from None
    messages = list(dict.fromkeys(str(warning.message) for warning in caught))
    return TrackResult(job.track, scores, rows, messages, time.perf_counter() - started)


def _reuse_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for the next allocation instead of returning
    it to the system (no-op elsewhere).

    BSSEval allocates and frees buffers of tens to hundreds of megabytes for every track.
    By default glibc maps each one afresh from the kernel (above its 32 MB mmap threshold)
    and unmaps it when freed, and every new page then costs a page fault. From the heap,
    with the top KEPT_FREE_BYTES not trimmed, each page is faulted once per process:
    benchmarks/eval_memory.py measures 0.71x the time at the same peak memory. A scoring
    process lives only for one ``sepkit eval``.
    """
    import ctypes

    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not glibc: macOS, musl, Windows
        return
    if not version.startswith("glibc"):
        return
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt(M_MMAP_MAX, 0)  # no allocation mapped on its own
    mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)


def _start_worker() -> None:
    """A scoring process: one thread for OpenBLAS, MKL and torch (several processes share
    the cores; see sepkit.scoring_server), the metrics imported before the first track, and
    freed memory reused (_reuse_freed_memory). torch is imported only if a track needs it
    (speech, or a GPU), and then reads its one thread from OMP_NUM_THREADS."""
    import sepkit.metrics.track  # noqa: F401

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    _reuse_freed_memory()


def _ready() -> None:
    """A task that only makes the pool start a process (see ScoringPool)."""


class ScoringPool:
    """Scores TrackJobs here (``workers=1``) or in ``workers`` processes of one thread each.

    The processes are started when the pool is entered, from the fork server (see
    sepkit.scoring_server): start it early with start_scoring_server so that its imports
    overlap this process's work. ``on_idle`` is called once, in this process, when every
    job has been handed out and a process has finished its last: from then on a core is
    free (for work this process still has to do, such as the reports' imports).
    """

    def __init__(self, workers: int, on_idle: Callable[[], None] | None = None) -> None:
        self.workers = workers
        self.on_idle = on_idle
        self._stack = contextlib.ExitStack()
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ScoringPool:
        if self.workers > 1:
            self._pool = self._stack.enter_context(
                ProcessPoolExecutor(
                    self.workers, mp_context=scoring_context(), initializer=_start_worker
                )
            )
            # every process starts now (one per task while none is idle), with one thread
            start_scoring_server()
            with one_thread_per_library():
                for _ in range(self.workers):
                    self._pool.submit(_ready)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(
        self, jobs: Iterator[TrackJob], on_result: Callable[[TrackJob, TrackResult], None]
    ) -> None:
        """Score every job, calling ``on_result(job, result)`` in this process as each
        finishes. At most ``workers`` jobs wait at a time, so the jobs' producer
        (separation) stays at most that far ahead and memory stays bounded."""
        if self._pool is None:
            for job in jobs:
                on_result(job, score_track(job))
            return
        pending: dict[Future, TrackJob] = {}
        handed_out = False

        def collect(block_until: int) -> None:
            while len(pending) > block_until:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_result(pending.pop(future), future.result())
                if handed_out and self.on_idle is not None:
                    on_idle, self.on_idle = self.on_idle, None
                    on_idle()

        try:
            for job in jobs:
                collect(self.workers - 1)
                pending[self._pool.submit(score_track, job)] = job
            handed_out = True
            collect(0)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


# -- what is scored ----------------------------------------------------------------------------


def _metric_set(choice: str, data: Any) -> str:
    from sepkit.data.speech import SpeechMixtures

    if choice != "auto":
        return choice
    return "speech" if isinstance(data, SpeechMixtures) else "bsseval"


def _chosen_tracks(tracks: list[Any], names: Sequence[str] | None) -> list[Any]:
    if not tracks:
        raise SepkitError("the dataset's test split has no tracks")
    if names is None:
        return tracks
    by_name = {track.name: track for track in tracks}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        listed = ", ".join(list(by_name)[:10]) + (", ..." if len(by_name) > 10 else "")
        raise SepkitError(f"tracks={list(names)}: {unknown} not in the test split ({listed})")
    return [by_name[name] for name in dict.fromkeys(names)]


def reference_sources(data: Any, tracks: Sequence[Any]) -> dict[str, tuple[dict, Any]]:
    """track name -> (stem name -> AudioSource, mixture AudioSource or None), read as the
    dataset's reference reader reads them (musdb's 16-bit PCM for MUSDB18-layout sets at
    their own rate, the files themselves otherwise)."""
    from sepkit.data.musdb import MUSDBData, import_musdb

    if isinstance(data, MUSDBData) and not data.is_wav and data.sample_rate == 44100:
        database = import_musdb().DB(root=str(data.root), subsets="test", is_wav=False)
        stream_of = database.setup["stem_ids"]
        files = {track.name: Path(track.path) for track in database}
        found = {}
        for track in tracks:
            stems = {name: AudioSource(files[track.name], stream_of[name]) for name in track.stems}
            found[track.name] = (stems, AudioSource(files[track.name], stream_of["mixture"]))
        return found
    pcm16 = isinstance(data, MUSDBData) and data.sample_rate == 44100
    return {
        track.name: (
            {name: AudioSource(path, pcm16=pcm16) for name, path in track.stems.items()},
            AudioSource(track.mixture, pcm16=pcm16) if track.mixture is not None else None,
        )
        for track in tracks
    }


def _estimate_base(root: Path, track_names: Sequence[str]) -> Path:
    """The folder of an estimates tree that holds one folder per track: ``root`` itself,
    ``root/test`` (museval), ``root/<model>`` or ``root/<model>/test``."""
    if not root.is_dir():
        raise SepkitError(f"estimates={root}: no such folder")
    level = [root]
    for _ in range(3):
        matches = [base for base in level if any((base / n).is_dir() for n in track_names)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            listed = ", ".join(str(m.relative_to(root)) for m in matches)
            raise SepkitError(
                f"estimates={root} holds estimates of the test tracks in several folders "
                f"({listed}): name one, e.g. estimates={matches[0]}"
            )
        level = sorted(
            child for base in level for child in base.iterdir()
            if child.is_dir() and not child.name.startswith(".")
        )  # fmt: skip
    example = track_names[0]
    raise SepkitError(
        f"estimates={root}: no folder named after a test track (expected {root}/{example}/ or "
        f"{root}/test/{example}/ holding <target>.wav)"
    )


def find_estimate_files(
    root: Path,
    track_names: Sequence[str],
    targets: Sequence[str],
    optional: Sequence[str] = (),
    sample_rate: int | None = None,
) -> dict[str, dict[str, Path]]:
    """track name -> target -> file (WAV or FLAC), for every test track and target.

    Every target needs its file (a missing one is an error naming it); ``optional`` targets
    (the accompaniment) are taken when present. Files at another sample rate are refused.
    """
    from sepkit.data.tracks import audio_info, find_stem_file

    base = _estimate_base(Path(root).expanduser(), track_names)
    found = {}
    for name in track_names:
        folder = base / name
        if not folder.is_dir():
            raise SepkitError(
                f"{folder}: missing: no estimates of test track {name!r} (score a subset "
                "with tracks=[...])"
            )
        files = {}
        for target in [*targets, *optional]:
            path = find_stem_file(folder, target)
            if path is None:
                if target in optional:
                    continue
                raise SepkitError(
                    f"{folder / (target + '.wav')}: missing: each track needs an estimate of "
                    f"every target ({', '.join(targets)}; set dataset.targets to score fewer)"
                )
            info = audio_info(path)
            if sample_rate is not None and info.samplerate != sample_rate:
                raise SepkitError(
                    f"{path}: {info.samplerate} Hz, the references are {sample_rate} Hz: "
                    "write the estimates at the references' rate"
                )
            files[target] = path
        found[name] = files
    return found


def _derivable_targets(data: Any) -> list[str]:
    """musdb's sums of stems (accompaniment, ...) whose stems every test track has."""
    from sepkit.metrics import MUSDB_TARGET_SOURCES

    stems = set(data.test_tracks()[0].stems)
    return [name for name in DERIVED_TARGETS if set(MUSDB_TARGET_SOURCES[name]) <= stems]


def _scored_stems(stems: Sequence[str], data: Any, metrics: str) -> list[str]:
    """The model's stems that have references; an error when none (or, for speech, when the
    counts differ)."""
    targets = list(data.targets)
    if metrics == "speech":
        if len(stems) != len(targets):
            raise SepkitError(
                f"the model separates {len(stems)} sources {list(stems)}, the dataset's "
                f"mixtures hold {len(targets)} {targets}: evaluate on mixtures of as many "
                "speakers (dataset.n_src)"
            )
        return list(stems)
    scored = [stem for stem in stems if stem in targets or stem in _derivable_targets(data)]
    if not scored:
        raise SepkitError(
            f"the model's stems {list(stems)} are none of the dataset's targets {targets}: "
            "evaluate it on a dataset with these stems"
        )
    return scored


def _method_name(cfg: Any) -> str:
    if cfg.name:
        name = str(cfg.name)
    elif cfg.estimates:
        folder = Path(cfg.estimates).expanduser().resolve()
        name = folder.parent.name if folder.name == "test" else folder.name
    else:
        from sepkit.separate import model_name

        name = model_name(cfg)
    return name if name != MIXTURE else f"{name} (estimates)"


def _check_out_dir(run_dir: Path, overwrite: bool) -> None:
    if (run_dir / "results.csv").exists() and not overwrite:
        raise SepkitError(
            f"{run_dir} already holds an evaluation (results.csv): choose another out_dir or "
            "set overwrite=true"
        )


# -- the command ------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What an evaluation scores, found and checked before anything is scored."""

    data: Any
    tracks: list[Any]
    metrics: str
    sources: dict[str, tuple[dict, Any]]
    scored: list[str]
    method: str
    estimate_files: dict[str, dict[str, Path]] | None = None
    separator: Any = None


def _plan(cfg: Any, choice: str, compared: Sequence[Evaluation]) -> _Plan:
    """Dataset, tracks, and the estimates (files, or the model) of an evaluation: a
    SepkitError naming what is wrong before anything is scored."""
    from hydra.utils import instantiate

    data = instantiate(cfg.dataset, _convert_="all")
    tracks = _chosen_tracks(data.test_tracks(), cfg.tracks)
    metrics = _metric_set(choice, data)
    names = [track.name for track in tracks]
    for evaluation in compared:
        if evaluation.metrics != metrics:
            raise SepkitError(
                f"compare={evaluation.folder}: scored with {evaluation.metrics} metrics, this "
                f"evaluation with {metrics}: compare evaluations of one kind"
            )
        their_tracks = {row.track for row in evaluation.rows}
        if their_tracks != set(names):
            warnings.warn(
                f"compare={evaluation.folder}: scored {len(their_tracks)} tracks, this "
                f"evaluation {len(names)}; {', '.join(sorted(their_tracks ^ set(names))[:3])} "
                "are in only one of them, so their aggregates are over different tracks",
                UserWarning,
                stacklevel=3,
            )
    plan = _Plan(data, tracks, metrics, reference_sources(data, tracks), [], _method_name(cfg))
    if cfg.estimates:
        optional = [] if metrics == "speech" else _derivable_targets(data)
        plan.estimate_files = find_estimate_files(
            Path(cfg.estimates), names, list(data.targets), optional, data.sample_rate
        )
        plan.scored = list(data.targets)
    else:
        from sepkit.separate import separator_from_config

        plan.separator = separator_from_config(cfg)
        plan.scored = _scored_stems(plan.separator.stems, data, metrics)
        unscored = [stem for stem in plan.separator.stems if stem not in plan.scored]
        if unscored:
            print(f"not scored (no reference in the dataset): {', '.join(unscored)}")
    return plan


def _scoring_device(setting: str, here: bool) -> str | None:
    """The fast backend's device for TrackJob: None for the CPU (also for MPS, which has no
    float64), else a torch device name, or "auto" for scoring processes to resolve each on
    its own. Checked here when this process scores or holds a model (it has imported
    torch); a scoring process checks it otherwise, so that this one need not import torch
    to list the tracks. On the CPU the scores are computed without torch (numpy), and
    "auto" on a machine without a GPU means the CPU without asking torch."""
    if setting == "cpu" or (setting == "auto" and no_gpu_here()):
        return None
    if setting == "auto" and not here:
        return setting
    from sepkit.devices import select_device

    device = select_device(setting, setting="device")
    # BSSEval solves its filters in float64, which MPS does not have: the CPU scores there
    return None if device.type in ("cpu", "mps") else str(device)


def _import_plotting() -> None:
    """Import what the box plot needs (about a second), while the scoring processes work."""
    with contextlib.suppress(ImportError):
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401


def run_evaluation(cfg: Any, run_dir: Path) -> Path:
    """``sepkit eval``: score the test split of ``cfg.dataset`` and write the reports into
    ``run_dir`` (Hydra's output folder, ``out_dir``). Returns ``run_dir``.

    Every input is checked before anything is scored: the dataset and its tracks, the
    estimates folder (a missing file is named) or the model, the folders to compare.
    """
    given = [key for key in ("checkpoint", "pretrained", "estimates") if cfg[key]]
    if len(given) > 1:
        raise SepkitError(
            f"{' and '.join(f'{k}={cfg[k]}' for k in given)}: choose one thing to evaluate"
        )
    if cfg.workers < 1:
        raise SepkitError(f"workers={cfg.workers}: use 1 (score here) or more processes")
    if cfg.window <= 0 or cfg.hop <= 0:
        raise SepkitError(f"window={cfg.window}, hop={cfg.hop}: use positive seconds")
    backend = cfg.backend.value if hasattr(cfg.backend, "value") else str(cfg.backend)
    choice = cfg.metrics.value if hasattr(cfg.metrics, "value") else str(cfg.metrics)
    if cfg.estimates and not Path(cfg.estimates).expanduser().is_dir():
        raise SepkitError(f"estimates={cfg.estimates}: no such folder")
    compared = [load_evaluation(Path(folder)) for folder in cfg.compare]
    run_dir = Path(run_dir)
    _check_out_dir(run_dir, cfg.overwrite)

    if cfg.workers > 1:  # its imports overlap the loading of the dataset and model
        start_scoring_server()
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    plan = _plan(cfg, choice, compared)
    here = cfg.workers == 1 or plan.separator is not None
    device = _scoring_device(str(cfg.device), here)

    def import_plotting() -> None:  # while the last tracks are scored, on a core left free
        threading.Thread(target=_import_plotting, daemon=True).start()

    with ScoringPool(int(cfg.workers), on_idle=import_plotting) as pool:
        results, seconds = _score(cfg, run_dir, plan, pool, backend, device)

    method, metrics = plan.method, plan.metrics
    rows = [
        dataclasses.replace(row, method=method) if row.method == ESTIMATES else row
        for track in plan.tracks
        for row in results[track.name].rows
    ]
    this = Evaluation(method, [row for row in rows if row.method != MIXTURE], metrics, run_dir)
    distinct_method_names([this, *compared])
    rows = (
        this.rows
        + [row for e in compared for row in e.rows]
        + [row for row in rows if row.method == MIXTURE]
    )
    methods = [this.method, *(e.method for e in compared), *([MIXTURE] if cfg.baseline else [])]
    scoring_seconds = {name: round(result.seconds, 3) for name, result in results.items()}
    _write_reports(cfg, run_dir, plan, rows, methods, backend, seconds, compared, scoring_seconds)
    return run_dir


def _row_section(row: Row) -> int:
    """Where _music_scores puts a row: the estimates' window medians, the whole-track
    metrics, the mixture's window medians (a split track's rows are sorted back so)."""
    if row.metric in MUSIC_TRACK_METRICS:
        return 1
    return 0 if row.method == ESTIMATES else 2


def _score(
    cfg: Any,
    run_dir: Path,
    plan: _Plan,
    pool: ScoringPool,
    backend: str,
    device: str | None,
) -> tuple[dict[str, TrackResult], float]:
    """Score every track of the plan, writing each one's JSON as it finishes; the results
    by track and the seconds it took."""
    from tqdm import tqdm

    data = plan.data
    scratch = run_dir / "estimates" / "test"
    (run_dir / "test").mkdir(parents=True, exist_ok=True)
    for path in (run_dir / "test").glob("*.json"):  # an earlier evaluation's (overwrite)
        path.unlink()
    write_stems = pool.workers > 1 or cfg.save_estimates

    # With few tracks per process the last ones would leave processes idle: each track's
    # two BSSEval calls (the stems; vocals with accompaniment) are then scored apart, all
    # tracks' first (longer) calls before their second. A part reads the track again.
    def estimated(track: Any) -> set[str]:
        if plan.estimate_files is not None:
            return set(plan.estimate_files[track.name])
        return set(plan.scored)

    split = (
        plan.metrics == "bsseval"
        and pool.workers > 1
        and len(plan.tracks) < SPLIT_BELOW_TRACKS_PER_WORKER * pool.workers
        and all({"vocals", "accompaniment"} <= estimated(track) for track in plan.tracks)
    )
    parts: list[tuple[int, ...] | None] = [(0,), (1,)] if split else [None]

    def track_jobs() -> Iterator[TrackJob]:
        for track in plan.tracks:
            references, mixture = plan.sources[track.name]
            estimates: dict[str, AudioSource | np.ndarray]
            if plan.estimate_files is not None:
                estimates = {k: AudioSource(v) for k, v in plan.estimate_files[track.name].items()}
            else:
                estimates = _separated(plan, track.name, references, mixture)
                if write_stems:
                    estimates = _written(estimates, scratch / track.name, data.sample_rate)
            yield TrackJob(
                track=track.name,
                references=references,
                mixture=mixture,
                estimates=estimates,
                targets=list(data.targets),
                nb_channels=data.nb_channels,
                sample_rate=data.sample_rate,
                metrics=plan.metrics,
                backend=backend,
                window=float(cfg.window),
                hop=float(cfg.hop),
                baseline=bool(cfg.baseline),
                device=device,
                calls=parts[0],
            )

    def jobs() -> Iterator[TrackJob]:
        made = []
        for job in track_jobs():
            made.append(job)
            yield job
        for calls in parts[1:]:
            for job in made:
                yield dataclasses.replace(job, calls=calls)

    results: dict[str, TrackResult] = {}
    received: dict[str, dict[tuple[int, ...] | None, TrackResult]] = {}
    bar = tqdm(
        total=len(plan.tracks), unit="track", desc=f"eval {plan.method}", disable=not cfg.progress
    )

    def on_part(job: TrackJob, part: TrackResult) -> None:
        received.setdefault(part.track, {})[job.calls] = part
        if len(received[part.track]) == len(parts):
            by_calls = received.pop(part.track)
            pieces = [by_calls[calls] for calls in parts]
            on_result(
                TrackResult(
                    part.track,
                    {"targets": [t for piece in pieces for t in piece.scores["targets"]]},
                    sorted((row for piece in pieces for row in piece.rows), key=_row_section),
                    list(dict.fromkeys(m for piece in pieces for m in piece.warnings)),
                    sum(piece.seconds for piece in pieces),
                )
            )

    def on_result(result: TrackResult) -> None:
        for message in result.warnings:
            warnings.warn(f"{result.track}: {message}", UserWarning, stacklevel=2)
        scores = {
            **result.scores,
            "museval_version": _museval_version(),
            "sepkit": {"version": sepkit.__version__, "metrics": plan.metrics, "backend": backend},
        }
        text = json.dumps(scores, indent=2, allow_nan=True)
        write_text_atomic(run_dir / "test" / f"{result.track}.json", text + "\n")
        if not cfg.save_estimates:
            shutil.rmtree(scratch / result.track, ignore_errors=True)
        results[result.track] = result
        bar.set_postfix_str(result.track[:40])
        bar.update(1)

    started = time.perf_counter()
    try:
        pool.run(jobs(), on_part)
    finally:
        bar.close()
        if not cfg.save_estimates:
            for folder in (scratch, scratch.parent):
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return results, time.perf_counter() - started


def _museval_version() -> str:
    """The installed museval's version, from its metadata (importing museval takes
    seconds: it loads pandas and musdb)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("museval")
    except PackageNotFoundError:
        return "unknown"


def _separated(
    plan: _Plan, track: str, references: dict[str, AudioSource], mixture: AudioSource | None
) -> dict[str, np.ndarray]:
    """The model's stems of one track's mixture (read as its references are), float32
    (samples, channels), the scored ones only."""
    import torch

    nb_channels = plan.data.nb_channels
    if mixture is not None:
        audio = read_signal(mixture, nb_channels)
    else:
        audio = np.sum([read_signal(s, nb_channels) for s in references.values()], axis=0)
    tensor = torch.from_numpy(np.ascontiguousarray(audio.T, dtype=np.float32))
    try:
        stems = plan.separator.separate(tensor, plan.data.sample_rate)
    except SepkitError as error:
        raise SepkitError(f"{track}: {error}") from None
    return {name: stems[name].numpy().T for name in plan.scored}


def _written(stems: dict[str, np.ndarray], folder: Path, sample_rate: int) -> dict:
    """Write stems as float WAVs into ``folder`` (they reach the workers so); their sources."""
    from sepkit.data.cache import write_wav_atomically

    sources = {}
    for name, audio in stems.items():
        path = folder / f"{name}.wav"
        write_wav_atomically(path, audio, sample_rate)
        sources[name] = AudioSource(path)
    return sources


def _write_reports(
    cfg: Any,
    run_dir: Path,
    plan: _Plan,
    rows: list[Row],
    methods: list[str],
    backend: str,
    seconds: float,
    compared: Sequence[Evaluation],
    scoring_seconds: dict[str, float],
) -> None:
    method, metrics, data, tracks = methods[0], plan.metrics, plan.data, plan.tracks
    targets = list(data.targets) + (list(DERIVED_TARGETS) if metrics == "bsseval" else [])
    if cfg.estimates:
        what = f"estimates {Path(cfg.estimates).expanduser()}"
    elif cfg.checkpoint:
        what = f"checkpoint {Path(cfg.checkpoint).expanduser()}"
    else:
        from sepkit.separate import DEFAULT_PRETRAINED

        what = f"pretrained {cfg.pretrained or DEFAULT_PRETRAINED}"
    if metrics == "bsseval":
        how = (
            f"BSSEval v4 (museval's definitions, backend {backend}): {cfg.window:g} s windows, "
            f"{cfg.hop:g} s hops, median over windows then over tracks (SiSEC 2018); SI-SDR "
            "and nSDR (plain SDR) over whole tracks, i: improvement over the mixture"
        )
    else:
        how = (
            "SI-SDR and SDR (plain energy ratio) per utterance under the best speaker "
            "permutation, i: improvement over the mixture; mean over utterances"
        )
    title = f"sepkit eval: {method}"
    details = [
        ("estimates", f"{method} ({what})"),
        ("dataset", f"{type(data).__name__}, test split, {len(tracks)} tracks"),
        ("metrics", how),
        ("compared", ", ".join(f"{e.method} ({e.folder})" for e in compared) or "—"),
        ("baseline", "the mixture as the estimate of every target" if cfg.baseline else "—"),
        ("time", f"{seconds:.1f} s, {cfg.workers} worker(s), sepkit {sepkit.__version__}"),
    ]
    summary = summary_markdown(title, details, rows, methods, targets, metrics)
    write_results_csv(run_dir / "results.csv", rows)
    write_text_atomic(run_dir / "summary.md", summary)
    box_plot(run_dir / "boxplot.png", rows, methods, targets, metrics, title=f"{title}")
    description = {
        "method": method,
        "metrics": metrics,
        "over_tracks": OVER_TRACKS[metrics],
        "backend": backend,
        "window": cfg.window,
        "hop": cfg.hop,
        "dataset": type(data).__name__,
        "tracks": [track.name for track in tracks],
        "evaluated": what,
        "compared": [str(e.folder) for e in compared],
        "seconds": round(seconds, 3),
        "scoring_seconds": scoring_seconds,  # per track, in its process
        "workers": cfg.workers,
        "sepkit_version": sepkit.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    write_text_atomic(run_dir / "evaluation.json", json.dumps(description, indent=2) + "\n")
    print(f"reports: {run_dir}/ (summary.md, results.csv, boxplot.png, test/<track>.json)")
    print()
    print(summary_table(rows, methods, targets, metrics))
    improvement = improvement_line(rows, method, targets, metrics)
    if improvement:
        print(improvement)
