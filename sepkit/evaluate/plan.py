"""What an evaluation scores (dataset, tracks, the estimates or the model), found and checked
before anything is scored."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from sepkit.data.speech import SpeechMixtures
from sepkit.errors import SepkitError
from sepkit.evaluate.audio import reference_sources
from sepkit.evaluate.estimates import derivable_targets, find_estimate_files, scored_stems
from sepkit.evaluate.oracle import ORACLES
from sepkit.evaluate.reports import MIXTURE, Evaluation

__all__ = ["Plan", "make_plan"]


@dataclass
class Plan:
    """What an evaluation scores: ``sources`` are the tracks' references and mixtures
    (reference_sources), ``scored`` the targets scored, ``method`` the estimates' name in
    the reports; ``estimate_files`` (track -> target -> file), a ``separator`` or an
    ``oracle`` method (sepkit.evaluate.oracle)."""

    data: Any
    tracks: list[Any]
    metrics: str
    sources: dict[str, tuple[dict, Any]]
    scored: list[str]
    method: str
    estimate_files: dict[str, dict[str, Path]] | None = None
    separator: Any = None
    oracle: str | None = None


def _metric_set(choice: str, data: Any) -> str:
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


def _method_name(cfg: Any) -> str:
    if cfg.name:
        name = str(cfg.name)
    elif cfg.oracle:
        name = ORACLES[cfg.oracle].name
    elif cfg.estimates:
        folder = Path(cfg.estimates).expanduser().resolve()
        name = folder.parent.name if folder.name == "test" else folder.name
    else:
        from sepkit.separate import model_name  # imports torch: only to name a model

        name = model_name(cfg)
    return name if name != MIXTURE else f"{name} (estimates)"


def _check_compared(compared: Sequence[Evaluation], metrics: str, names: list[str]) -> None:
    """Evaluations to compare must be of one kind; a warning when their tracks differ."""
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
                stacklevel=4,
            )


def make_plan(cfg: Any, choice: str, compared: Sequence[Evaluation]) -> Plan:
    """Dataset, tracks, and the estimates (files, or the model) of an evaluation: a
    SepkitError naming what is wrong before anything is scored."""
    data = instantiate(cfg.dataset, _convert_="all")
    tracks = _chosen_tracks(data.test_tracks(), cfg.tracks)
    metrics = _metric_set(choice, data)
    names = [track.name for track in tracks]
    _check_compared(compared, metrics, names)
    plan = Plan(data, tracks, metrics, reference_sources(data, tracks), [], _method_name(cfg))
    derived = [] if metrics == "speech" else derivable_targets(data)
    if cfg.estimates:
        plan.estimate_files = find_estimate_files(
            Path(cfg.estimates), names, list(data.targets), derived, data.sample_rate
        )
        plan.scored = list(data.targets)
    elif cfg.oracle:
        plan.oracle = cfg.oracle
        # museval's eval_mus_track scores the accompaniment beside the stems
        accompaniment = cfg.oracle_accompaniment and "accompaniment" in derived
        plan.scored = [*data.targets, *(["accompaniment"] if accompaniment else [])]
    else:
        from sepkit.separate import separator_from_config  # imports torch: only for a model

        plan.separator = separator_from_config(cfg)
        plan.scored = scored_stems(plan.separator.stems, data, metrics)
        if plan.scored == ["vocals"] and "accompaniment" in derived:
            # a vocals model (most shared RoFormers): museval scores vocals beside the
            # accompaniment, whose estimate is the mixture minus the vocals (the residual)
            plan.separator = plan.separator.with_residual()
            plan.scored = ["vocals", "accompaniment"]
        unscored = [stem for stem in plan.separator.stems if stem not in plan.scored]
        if unscored:
            print(f"not scored (no reference in the dataset): {', '.join(unscored)}")
    return plan
