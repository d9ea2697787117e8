"""``sepkit eval``: check the inputs, score every track (here or in worker processes), write
each track's JSON as it is scored, then the reports."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import sepkit
from sepkit.data.cache import write_wav_atomically
from sepkit.errors import SepkitError
from sepkit.evaluate.audio import AudioSource, read_signal
from sepkit.evaluate.device import scoring_device
from sepkit.evaluate.estimates import DERIVED_TARGETS
from sepkit.evaluate.oracle import ORACLES, oracle_track_estimates
from sepkit.evaluate.plan import Plan, make_plan
from sepkit.evaluate.pool import ScoringPool
from sepkit.evaluate.reports import (
    MIXTURE,
    OVER_TRACKS,
    Evaluation,
    Row,
    box_plot,
    distinct_method_names,
    improvement_line,
    load_evaluation,
    summary_markdown,
    summary_table,
    write_results_csv,
)
from sepkit.evaluate.scoring import ESTIMATES, TrackJob, TrackResult
from sepkit.files import write_text_atomic

__all__ = ["run_evaluation"]


@dataclass(frozen=True)
class _Settings:
    """The command's settings that every track is scored with."""

    backend: str
    device: str | None
    window: float
    hop: float
    baseline: bool
    workers: int
    save_estimates: bool
    progress: bool


def _check_config(cfg: Any) -> None:
    """One-line errors for settings that cannot work, before anything is read."""
    given = [key for key in ("checkpoint", "pretrained", "estimates", "oracle") if cfg[key]]
    if len(given) > 1:
        raise SepkitError(
            f"{' and '.join(f'{k}={cfg[k]}' for k in given)}: choose one thing to evaluate"
        )
    if cfg.workers < 1:
        raise SepkitError(f"workers={cfg.workers}: use 1 (score here) or more processes")
    if cfg.window <= 0 or cfg.hop <= 0:
        raise SepkitError(f"window={cfg.window}, hop={cfg.hop}: use positive seconds")
    if cfg.oracle and cfg.oracle not in ORACLES:
        raise SepkitError(f"oracle={cfg.oracle}: choose one of {', '.join(ORACLES)}")
    if cfg.estimates and not Path(cfg.estimates).expanduser().is_dir():
        raise SepkitError(f"estimates={cfg.estimates}: no such folder")


def _choice(value: Any) -> str:
    """A config value that may be an enum of the schema, as its string."""
    return value.value if hasattr(value, "value") else str(value)


def run_evaluation(cfg: Any, run_dir: Path) -> Path:
    """``sepkit eval``: score the test split of ``cfg.dataset`` and write the reports into
    ``run_dir`` (Hydra's output folder, ``out_dir``). Returns ``run_dir``.

    Every input is checked before anything is scored: the dataset and its tracks, the
    estimates folder (a missing file is named) or the model, the folders to compare.
    """
    _check_config(cfg)
    compared = [load_evaluation(Path(folder)) for folder in cfg.compare]
    run_dir = Path(run_dir)
    if (run_dir / "results.csv").exists() and not cfg.overwrite:
        raise SepkitError(
            f"{run_dir} already holds an evaluation (results.csv): choose another out_dir or "
            "set overwrite=true"
        )
    if cfg.threads:
        import torch  # only this process's separation reads it

        torch.set_num_threads(cfg.threads)
    plan = make_plan(cfg, _choice(cfg.metrics), compared)
    here = cfg.workers == 1 or plan.separator is not None
    settings = _Settings(
        backend=_choice(cfg.backend),
        device=scoring_device(str(cfg.device), here),
        window=float(cfg.window),
        hop=float(cfg.hop),
        baseline=bool(cfg.baseline),
        workers=int(cfg.workers),
        save_estimates=bool(cfg.save_estimates),
        progress=bool(cfg.progress),
    )
    started = time.perf_counter()
    results = _score(run_dir, plan, settings)
    seconds = time.perf_counter() - started

    rows = [
        dataclasses.replace(row, method=plan.method) if row.method == ESTIMATES else row
        for track in plan.tracks
        for row in results[track.name].rows
    ]
    this = Evaluation(plan.method, [r for r in rows if r.method != MIXTURE], plan.metrics, run_dir)
    distinct_method_names([this, *compared])
    rows = (
        this.rows
        + [row for e in compared for row in e.rows]
        + [row for row in rows if row.method == MIXTURE]
    )
    methods = [this.method, *(e.method for e in compared), *([MIXTURE] if cfg.baseline else [])]
    scoring_seconds = {name: round(result.seconds, 3) for name, result in results.items()}
    _write_reports(cfg, run_dir, plan, rows, methods, seconds, compared, scoring_seconds)
    return run_dir


# -- scoring every track ---------------------------------------------------------------------


def _track_jobs(plan: Plan, settings: _Settings, scratch: Path) -> Iterator[TrackJob]:
    """One job per track, in the plan's order; a model separates each track as its job is
    asked for (its stems go to the workers as float WAVs under ``scratch``)."""
    data = plan.data
    write_stems = settings.workers > 1 or settings.save_estimates
    for track in plan.tracks:
        references, mixture = plan.sources[track.name]
        estimates: dict[str, AudioSource | np.ndarray]
        if plan.estimate_files is not None:
            estimates = {k: AudioSource(v) for k, v in plan.estimate_files[track.name].items()}
        elif plan.oracle is not None:
            estimates = oracle_track_estimates(
                plan.oracle, references, mixture, data.nb_channels, plan.scored
            )
            if write_stems:
                estimates = _written(estimates, scratch / track.name, data.sample_rate)
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
            backend=settings.backend,
            window=settings.window,
            hop=settings.hop,
            baseline=settings.baseline,
            device=settings.device,
        )


def _write_track_scores(run_dir: Path, result: TrackResult, plan: Plan, backend: str) -> None:
    """``<run_dir>/test/<track>.json`` in museval's format, with what scored it."""
    scores = {
        **result.scores,
        "museval_version": _museval_version(),
        "sepkit": {"version": sepkit.__version__, "metrics": plan.metrics, "backend": backend},
    }
    text = json.dumps(scores, indent=2, allow_nan=True)
    write_text_atomic(run_dir / "test" / f"{result.track}.json", text + "\n")


def _score(run_dir: Path, plan: Plan, settings: _Settings) -> dict[str, TrackResult]:
    """Score every track of the plan, writing each one's JSON as it finishes; the results
    by track."""
    scratch = run_dir / "estimates" / "test"
    (run_dir / "test").mkdir(parents=True, exist_ok=True)
    for path in (run_dir / "test").glob("*.json"):  # an earlier evaluation's (overwrite)
        path.unlink()
    results: dict[str, TrackResult] = {}
    description = f"eval {plan.method}"
    bar = tqdm(
        total=len(plan.tracks), unit="track", desc=description, disable=not settings.progress
    )
    try:
        with ScoringPool(settings.workers) as pool:
            for result in pool.score(_track_jobs(plan, settings, scratch)):
                for message in result.warnings:
                    warnings.warn(f"{result.track}: {message}", UserWarning, stacklevel=2)
                _write_track_scores(run_dir, result, plan, settings.backend)
                if not settings.save_estimates:
                    shutil.rmtree(scratch / result.track, ignore_errors=True)
                results[result.track] = result
                bar.set_postfix_str(result.track[:40])
                bar.update(1)
    finally:
        bar.close()
        if not settings.save_estimates:
            for folder in (scratch, scratch.parent):
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return results


def _museval_version() -> str:
    """The installed museval's version, from its metadata (importing museval would load
    pandas and musdb)."""
    try:
        return version("museval")
    except PackageNotFoundError:
        return "unknown"


def _separated(
    plan: Plan, track: str, references: dict[str, AudioSource], mixture: AudioSource | None
) -> dict[str, np.ndarray]:
    """The model's stems of one track's mixture (read as its references are), float32
    (samples, channels), the scored ones only."""
    import torch  # a model is evaluated: this process has imported torch already

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
    stems.setdefault("accompaniment", stems.get("residual"))  # see plan.make_plan
    return {name: stems[name].numpy().T for name in plan.scored}


def _written(stems: dict[str, np.ndarray], folder: Path, sample_rate: int) -> dict:
    """Write stems as float WAVs into ``folder`` (they reach the workers so); their sources."""
    sources = {}
    for name, audio in stems.items():
        path = folder / f"{name}.wav"
        write_wav_atomically(path, audio, sample_rate)
        sources[name] = AudioSource(path)
    return sources


# -- reports ---------------------------------------------------------------------------------


def _what_was_evaluated(cfg: Any) -> str:
    if cfg.estimates:
        return f"estimates {Path(cfg.estimates).expanduser()}"
    if cfg.oracle:
        return f"oracle {cfg.oracle}: sigsep's oracle from the true stems (STFT 4096/1024, Hann)"
    if cfg.checkpoint:
        return f"checkpoint {Path(cfg.checkpoint).expanduser()}"
    from sepkit.separate import DEFAULT_PRETRAINED  # loaded already: the model was built

    return f"pretrained {cfg.pretrained or DEFAULT_PRETRAINED}"


def _how_it_was_scored(cfg: Any, metrics: str) -> str:
    if metrics == "bsseval":
        return (
            f"BSSEval v4 (museval's definitions, backend {_choice(cfg.backend)}): "
            f"{cfg.window:g} s windows, {cfg.hop:g} s hops, median over windows then over "
            "tracks (SiSEC 2018); SI-SDR and nSDR (plain SDR) over whole tracks, i: "
            "improvement over the mixture"
        )
    return (
        "SI-SDR and SDR (plain energy ratio) per utterance under the best speaker "
        "permutation, i: improvement over the mixture; mean over utterances"
    )


def _description(
    cfg: Any,
    plan: Plan,
    what: str,
    seconds: float,
    compared: Sequence[Evaluation],
    scoring_seconds: dict[str, float],
) -> dict[str, Any]:
    """evaluation.json: what was scored, how, and how long it took."""
    return {
        "method": plan.method,
        "metrics": plan.metrics,
        "over_tracks": OVER_TRACKS[plan.metrics],
        "backend": _choice(cfg.backend),
        "window": cfg.window,
        "hop": cfg.hop,
        "dataset": type(plan.data).__name__,
        "tracks": [track.name for track in plan.tracks],
        "evaluated": what,
        "compared": [str(e.folder) for e in compared],
        "seconds": round(seconds, 3),
        "scoring_seconds": scoring_seconds,  # per track, in its process
        "workers": cfg.workers,
        "sepkit_version": sepkit.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def _write_reports(
    cfg: Any,
    run_dir: Path,
    plan: Plan,
    rows: list[Row],
    methods: list[str],
    seconds: float,
    compared: Sequence[Evaluation],
    scoring_seconds: dict[str, float],
) -> None:
    """results.csv, summary.md, boxplot.png and evaluation.json; the summary printed."""
    method, metrics = methods[0], plan.metrics
    targets = list(plan.data.targets) + (list(DERIVED_TARGETS) if metrics == "bsseval" else [])
    what = _what_was_evaluated(cfg)
    title = f"sepkit eval: {method}"
    details = [
        ("estimates", f"{method} ({what})"),
        ("dataset", f"{type(plan.data).__name__}, test split, {len(plan.tracks)} tracks"),
        ("metrics", _how_it_was_scored(cfg, metrics)),
        ("compared", ", ".join(f"{e.method} ({e.folder})" for e in compared) or "—"),
        ("baseline", "the mixture as the estimate of every target" if cfg.baseline else "—"),
        ("time", f"{seconds:.1f} s, {cfg.workers} worker(s), sepkit {sepkit.__version__}"),
    ]
    summary = summary_markdown(title, details, rows, methods, targets, metrics)
    write_results_csv(run_dir / "results.csv", rows)
    write_text_atomic(run_dir / "summary.md", summary)
    box_plot(run_dir / "boxplot.png", rows, methods, targets, metrics, title=title)
    description = _description(cfg, plan, what, seconds, compared, scoring_seconds)
    write_text_atomic(run_dir / "evaluation.json", json.dumps(description, indent=2) + "\n")
    print(f"reports: {run_dir}/ (summary.md, results.csv, boxplot.png, test/<track>.json)")
    print()
    print(summary_table(rows, methods, targets, metrics))
    improvement = improvement_line(rows, method, targets, metrics)
    if improvement:
        print(improvement)
