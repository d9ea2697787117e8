"""Finding estimates on disk, and which targets an evaluation scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepkit.data.tracks import audio_info, find_stem_file
from sepkit.errors import SepkitError
from sepkit.metrics.targets import MUSDB_TARGET_SOURCES

__all__ = ["DERIVED_TARGETS", "derivable_targets", "find_estimate_files", "scored_stems"]

# targets an estimates folder may hold beyond the dataset's: musdb's sums of stems
DERIVED_TARGETS = ("accompaniment", "linear_mixture")


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


def _track_estimate_files(
    folder: Path, targets: Sequence[str], optional: Sequence[str], sample_rate: int | None
) -> dict[str, Path]:
    """target -> file of one track's folder (see find_estimate_files)."""
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
    return files


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
    base = _estimate_base(Path(root).expanduser(), track_names)
    found = {}
    for name in track_names:
        folder = base / name
        if not folder.is_dir():
            raise SepkitError(
                f"{folder}: missing: no estimates of test track {name!r} (score a subset "
                "with tracks=[...])"
            )
        found[name] = _track_estimate_files(folder, targets, optional, sample_rate)
    return found


def derivable_targets(data: Any) -> list[str]:
    """musdb's sums of stems (accompaniment, ...) whose stems every test track has."""
    stems = set(data.test_tracks()[0].stems)
    return [name for name in DERIVED_TARGETS if set(MUSDB_TARGET_SOURCES[name]) <= stems]


def scored_stems(stems: Sequence[str], data: Any, metrics: str) -> list[str]:
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
    scored = [stem for stem in stems if stem in targets or stem in derivable_targets(data)]
    if not scored:
        raise SepkitError(
            f"the model's stems {list(stems)} are none of the dataset's targets {targets}: "
            "evaluate it on a dataset with these stems"
        )
    return scored
