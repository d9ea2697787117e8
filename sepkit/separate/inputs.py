"""The inputs of ``sepkit separate``: audio files named or found in folders, and their track
names (the ``<track>`` of ``<out_dir>/<model>/<track>/<stem>.<ext>``)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["AUDIO_SUFFIXES", "find_inputs", "track_name"]

# File name endings walked in folders (a file named on the command line may have any).
AUDIO_SUFFIXES = (
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".caf", ".w64", ".rf64",
)  # fmt: skip


def track_name(path: Path) -> str:
    """A file's track name: its name without suffix, or for ``<track>/mixture.<ext>`` (the
    MUSDB18 layout) its folder's name."""
    if path.stem == "mixture":
        return path.resolve().parent.name or path.stem
    return path.stem


def find_inputs(
    arguments: Sequence[str], skip: Path | None = None
) -> list[tuple[Path, str | None, str | None]]:
    """(file, track name, error) for every input: files as given, folders walked.

    A folder contributes its audio files (by suffix, in sorted order, hidden files and
    ``skip`` (the output folder) left out); a folder holding a ``mixture`` file (MUSDB18
    layout) contributes that file only, named after the folder. Tracks found in a folder
    keep their path below it (``test/Song/mixture.wav`` -> ``test/Song``). A missing path
    or a folder without audio is an entry with an error; so is a second input with an
    earlier one's track name.
    """
    found: list[tuple[Path, str | None, str | None]] = []
    skip = skip.resolve() if skip is not None else None
    for argument in arguments:
        path = Path(argument).expanduser()
        if not path.exists():
            found.append((path, None, f"{path}: no such file or folder"))
        elif path.is_dir():
            files = list(_walk_audio(path, skip))
            if not files:
                found.append((path, None, f"{path}: no audio files in this folder"))
            found += [(file, _track_in_folder(file, path), None) for file in files]
        else:
            found.append((path, track_name(path), None))
    seen: dict[str, Path] = {}
    checked = []
    for file, name, error in found:
        if error is None and name in seen:
            error = (
                f"{file}: its track name {name!r} is the same as {seen[name]}'s; rename one or "
                "separate them into different out_dir"
            )
        elif error is None:
            seen[name] = file
        checked.append((file, name, error))
    return checked


def _track_in_folder(file: Path, folder: Path) -> str:
    """The track name of a file found in ``folder``: its path below it, without suffix."""
    relative = file.relative_to(folder)
    if file.stem == "mixture":
        return relative.parent.as_posix() if relative.parent.parts else track_name(file)
    return relative.with_suffix("").as_posix()


def _walk_audio(folder: Path, skip: Path | None) -> Iterator[Path]:
    for root, folders, files in os.walk(folder):
        here = Path(root)
        folders[:] = sorted(
            f for f in folders
            if not f.startswith(".") and (skip is None or (here / f).resolve() != skip)
        )  # fmt: skip
        audio = sorted(
            f for f in files if not f.startswith(".") and f.lower().endswith(AUDIO_SUFFIXES)
        )
        mixtures = [f for f in audio if Path(f).stem == "mixture"]
        for name in mixtures[:1] or audio:
            yield here / name
