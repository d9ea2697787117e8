"""What ``sepkit eval`` writes and reads back: per-track scores, tables and a box plot.

An evaluation's scores are rows ``(method, track, target, metric, value)``: for BSSEval the
median over a track's windows (NaN windows skipped, as museval aggregates), for the whole-
track metrics (SI-SDR, SDR) the value itself. ``results.csv`` holds them; ``summary.md``
aggregates them over tracks (the median for BSSEval, the SiSEC 2018 convention; the mean for
speech, the convention of wsj0-2mix papers) into one table with a row per target and method;
``boxplot.png`` shows their spread over tracks. Earlier evaluations (``results.csv`` folders,
or folders of museval JSON files such as SiSEC submissions) are read back to be compared.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.errors import SepkitError
from sepkit.files import atomic_path, write_text_atomic

# the method name of the mixture-as-estimate baseline
MIXTURE = "mixture"
BSSEVAL_METRICS = ("SDR", "SIR", "ISR", "SAR")
# whole-track metrics reported beside BSSEval: SI-SDR and Demucs's "new SDR" (nSDR, the plain
# energy ratio over the whole track), each with its improvement over the mixture (i)
MUSIC_TRACK_METRICS = ("SI-SDR", "SI-SDRi", "nSDR", "nSDRi")
# per utterance, under the best permutation of the estimates; SDR is the plain energy ratio
SPEECH_METRICS = ("SI-SDR", "SI-SDRi", "SDR", "SDRi")
METRICS = {"bsseval": BSSEVAL_METRICS + MUSIC_TRACK_METRICS, "speech": SPEECH_METRICS}
# aggregation over tracks, and the metric whose spread the box plot shows
OVER_TRACKS = {"bsseval": "median", "speech": "mean"}
PLOTTED_METRIC = {"bsseval": "SDR", "speech": "SI-SDR"}
# the row of a speech table that pools every speaker of every mixture
ALL_TARGETS = "all"

CSV_COLUMNS = ("method", "track", "target", "metric", "value")


@dataclass(frozen=True)
class Row:
    """One score: ``value`` of ``metric`` for ``target`` of ``track`` by ``method`` (dB)."""

    method: str
    track: str
    target: str
    metric: str
    value: float


@dataclass
class Evaluation:
    """The scores of one evaluation, and how they are aggregated."""

    method: str
    rows: list[Row]
    metrics: str  # "bsseval" or "speech"
    folder: Path | None = None


def nan_median(values: Iterable[float]) -> float:
    """Median without NaNs (museval's np.nanmedian); NaN when nothing is left."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.median(finite)) if finite else math.nan


def nan_mean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def frame_medians(method: str, track: str, scores: dict[str, Any]) -> list[Row]:
    """Rows of a museval-format score dict: the median over windows per target and metric."""
    rows = []
    for target in scores["targets"]:
        for metric in BSSEVAL_METRICS:
            values = [float(frame["metrics"][metric]) for frame in target["frames"]]
            rows.append(Row(method, track, target["name"], metric, nan_median(values)))
    return rows


# -- results.csv -----------------------------------------------------------------------


def write_results_csv(path: Path, rows: Sequence[Row]) -> None:
    """``method,track,target,metric,value`` (dB, NaN where undefined), one row per score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row.method, row.track, row.target, row.metric, f"{row.value:.5f}"])
    write_text_atomic(path, buffer.getvalue())


def read_results_csv(path: Path) -> list[Row]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise SepkitError(
                f"{path}: not a sepkit results.csv (columns {reader.fieldnames}, expected "
                f"{', '.join(CSV_COLUMNS)})"
            )
        return [
            Row(r["method"], r["track"], r["target"], r["metric"], float(r["value"]))
            for r in reader
        ]


# -- earlier evaluations ---------------------------------------------------------------------


def load_evaluation(folder: Path) -> Evaluation:
    """An earlier evaluation for ``compare=``: a ``sepkit eval`` output folder (its
    ``results.csv``, without the mixture baseline) or a folder of museval JSON files
    (``<folder>/test/<track>.json``, as museval and SiSEC submissions store them)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SepkitError(f"compare={folder}: no such folder (give sepkit eval output folders)")
    results = folder / "results.csv"
    if results.is_file():
        description = {}
        if (folder / "evaluation.json").is_file():
            description = json.loads((folder / "evaluation.json").read_text())
        rows = [row for row in read_results_csv(results) if row.method != MIXTURE]
        methods = sorted({row.method for row in rows})
        method = description.get("method") or (methods[0] if methods else folder.name)
        metrics = description.get("metrics") or (
            "bsseval" if any(row.metric == "SIR" for row in rows) else "speech"
        )
        return Evaluation(method, rows, metrics, folder)
    json_files = sorted((folder / "test").glob("**/*.json"))
    if not json_files:
        raise SepkitError(
            f"compare={folder}: neither a results.csv nor museval JSON files in test/ "
            "(is it a sepkit eval output folder?)"
        )
    rows = []
    for path in json_files:
        try:
            scores = json.loads(path.read_text())
            rows += frame_medians(folder.name, path.stem, scores)
        except (ValueError, KeyError, TypeError) as error:
            raise SepkitError(f"{path}: not a museval JSON file ({error})") from None
    return Evaluation(folder.name, rows, "bsseval", folder)


def distinct_method_names(evaluations: Sequence[Evaluation]) -> None:
    """Rename methods whose names repeat (two runs of one model): ``name (folder)``."""
    seen: set[str] = {MIXTURE}
    for evaluation in evaluations:
        name = evaluation.method
        if name in seen and evaluation.folder is not None:
            name = f"{name} ({evaluation.folder.name})"
        counter = 2
        base = name
        while name in seen:
            name, counter = f"{base} #{counter}", counter + 1
        if name != evaluation.method:
            evaluation.rows = [
                Row(name, r.track, r.target, r.metric, r.value) for r in evaluation.rows
            ]
            evaluation.method = name
        seen.add(name)


# -- aggregation and tables ----------------------------------------------------------------


def aggregate(rows: Iterable[Row], over_tracks: str) -> dict[tuple[str, str, str], float]:
    """(method, target, metric) -> the median or mean over tracks (NaN tracks skipped).

    Speech tables also get target ``all``: every speaker of every mixture pooled.
    """
    combine = nan_median if over_tracks == "median" else nan_mean
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for row in rows:
        grouped.setdefault((row.method, row.target, row.metric), []).append(row.value)
        if over_tracks == "mean":
            grouped.setdefault((row.method, ALL_TARGETS, row.metric), []).append(row.value)
    return {key: combine(values) for key, values in grouped.items()}


def _ordered(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + [v for v in values if v not in preferred]


def summary_table(
    rows: Sequence[Row], methods: Sequence[str], targets: Sequence[str], metrics: str
) -> str:
    """A Markdown table: a row per target and method, a column per metric."""
    columns = METRICS[metrics]
    table = aggregate(rows, OVER_TRACKS[metrics])
    present_targets = _ordered((key[1] for key in table), [*targets, ALL_TARGETS])
    lines = [
        "| target | estimates | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for target in present_targets:
        for method in methods:
            if not any((method, target, metric) in table for metric in columns):
                continue
            cells = []
            for metric in columns:
                value = table.get((method, target, metric), math.nan)
                cells.append("—" if math.isnan(value) else f"{value:.2f}")
            lines.append(f"| {target} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def improvement_line(rows: Sequence[Row], method: str, targets: Sequence[str], metrics: str) -> str:
    """'SDR above the mixture's: vocals +5.20 dB, ...' (aggregate of the method minus that of
    the mixture as estimate), or '' without a baseline."""
    metric = PLOTTED_METRIC[metrics]
    table = aggregate(rows, OVER_TRACKS[metrics])
    parts = []
    for target in _ordered((key[1] for key in table), [*targets, ALL_TARGETS]):
        ours, mixture = table.get((method, target, metric)), table.get((MIXTURE, target, metric))
        if ours is None or mixture is None or math.isnan(ours) or math.isnan(mixture):
            continue
        parts.append(f"{target} {ours - mixture:+.2f} dB")
    if not parts:
        return ""
    return f"{metric} of {method} above the mixture's ({OVER_TRACKS[metrics]}s): " + ", ".join(
        parts
    )


def summary_markdown(
    title: str,
    details: Sequence[tuple[str, str]],
    rows: Sequence[Row],
    methods: Sequence[str],
    targets: Sequence[str],
    metrics: str,
) -> str:
    """summary.md: a title, a two-column list of what was evaluated how, the table, and the
    improvement over the mixture."""
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in details]
    lines += ["", summary_table(rows, methods, targets, metrics), ""]
    improvement = improvement_line(rows, methods[0], targets, metrics)
    if improvement:
        lines += [improvement, ""]
    return "\n".join(lines)


# -- box plot ----------------------------------------------------------------------------


def box_plot(
    path: Path,
    rows: Sequence[Row],
    methods: Sequence[str],
    targets: Sequence[str],
    metrics: str,
    title: str,
) -> None:
    """One box per target and method: the spread over tracks of the plotted metric (SDR for
    music, SI-SDR for speech), methods side by side within each target."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = PLOTTED_METRIC[metrics]
    values: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row.metric == metric and not math.isnan(row.value):
            values.setdefault((row.method, row.target), []).append(row.value)
    targets = _ordered((target for _, target in values), targets)
    methods = [m for m in methods if any((m, t) in values for t in targets)]
    figure = Figure(figsize=(max(5.0, 1.2 * len(targets) * max(1, len(methods)) + 1.5), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(methods))
    colours = [f"C{index}" for index in range(len(methods))]
    for index, method in enumerate(methods):
        positions, data = [], []
        for number, target in enumerate(targets):
            if (method, target) in values:
                positions.append(number + (index - (len(methods) - 1) / 2) * width)
                data.append(values[(method, target)])
        if not data:
            continue
        boxes = axes.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            medianprops={"color": "black"},
        )
        for box in boxes["boxes"]:
            box.set_facecolor(colours[index])
            box.set_alpha(0.6)
        axes.plot([], [], color=colours[index], linewidth=8, alpha=0.6, label=method)
    axes.set_xticks(range(len(targets)), targets)
    axes.set_ylabel(f"{metric} (dB)")
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    if methods:
        axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib's notes on tight layouts
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
