"""Turn a track's audio files into a checked ``Track``, converting what can be converted.

Every dataset class builds its tracks here, in the main process, so a bad file is reported as
one line naming it before training starts, never as a crash inside a DataLoader worker:

- a missing or unreadable file, stems of unequal lengths, stems at different sample rates,
  or a channel count other than 1 or the dataset's ``nb_channels``: refused (SepkitError);
- mono files: kept, and duplicated to ``nb_channels`` on reading;
- another sample rate: resampled once with soxr into the cache (32-bit float WAV), and the
  track points at the resampled copies.
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import soundfile
import soxr

from sepkit.data.cache import file_signature, folder_key, write_wav_atomically
from sepkit.errors import SepkitError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")


@dataclass(frozen=True)
class Track:
    """One song or utterance: where its audio files are and how long they are.

    ``sources`` maps each target name to its audio file (WAV or FLAC, readable by soundfile),
    in the dataset's target order. ``non_targets`` holds the remaining stems of the mixture
    (e.g. drums, bass and other when training a vocals model, or the noise of a noisy speech
    mixture): training mixes them in, but they are never a target. ``mixture`` is None when
    the mixture is the sum of all stems. Every file has ``num_frames`` frames at
    ``sample_rate`` Hz (checked when the track is built); the channel count may be 1 or the
    dataset's ``nb_channels`` and is converted on reading.
    """

    name: str
    sources: dict[str, Path]
    mixture: Path | None
    sample_rate: int
    num_frames: int
    non_targets: dict[str, Path] = field(default_factory=dict)

    def __hash__(self) -> int:  # the dict fields are not hashable; their items are
        return hash(
            (
                self.name,
                tuple(self.sources.items()),
                self.mixture,
                self.sample_rate,
                self.num_frames,
                tuple(self.non_targets.items()),
            )
        )

    @property
    def stems(self) -> dict[str, Path]:
        """All stems that add up to the mixture: the targets first, then the non-targets."""
        return {**self.sources, **self.non_targets}

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


def find_stem_file(folder: Path, stem: str) -> Path | None:
    """``<folder>/<stem>.wav`` or ``.flac``, whichever exists (WAV first), else None."""
    for extension in AUDIO_EXTENSIONS:
        candidate = folder / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    return None


class AudioInfo(NamedTuple):
    frames: int
    samplerate: int
    channels: int


def audio_info(path: Path) -> AudioInfo:
    """Frames, sample rate and channels from the header of ``path`` (nothing is decoded);
    a SepkitError naming the file if it is missing or unreadable."""
    if not Path(path).is_file():
        raise SepkitError(f"{path}: file not found")
    if Path(path).stat().st_size == 0:
        raise SepkitError(f"{path}: empty file (0 bytes); replace it or remove its track")
    try:
        with soundfile.SoundFile(str(path)) as file:
            return AudioInfo(file.frames, file.samplerate, file.channels)
    except RuntimeError as error:  # soundfile.LibsndfileError
        raise SepkitError(
            f"{path}: not readable as audio ({error}); convert it to WAV or FLAC"
        ) from None


def _label(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when inside it (short error messages), else whole."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


def _shared_value(
    folder: Path, files: dict[str, Path], values: dict[str, int], unit: str, problem: str, fix: str
) -> int:
    """The value every file of a track shares (its sample rate, its length); a SepkitError
    listing each file's value when they differ, and the ``fix`` that brings them to one."""
    if len(set(values.values())) > 1:
        listed = ", ".join(
            f"{_label(files[stem], folder)} {value} {unit}" for stem, value in values.items()
        )
        one = "rate" if unit == "Hz" else "length"
        raise SepkitError(f"{folder}: stems {problem} ({listed}); {fix} to one {one}")
    return next(iter(values.values()))


def _rate_and_length(folder: Path, files: dict[str, Path], nb_channels: int) -> tuple[int, int]:
    """The sample rate and length in frames all of a track's ``files`` share; a SepkitError
    naming the file when they differ, are empty, or hold a channel count the dataset cannot
    read."""
    infos = {stem: audio_info(path) for stem, path in files.items()}
    for stem, info in infos.items():
        if info.channels not in (1, nb_channels) and nb_channels != 1:
            raise SepkitError(
                f"{files[stem]}: {info.channels} channels, but the dataset reads "
                f"{nb_channels}-channel (or mono) audio: set dataset.nb_channels or convert it"
            )
    rates = {stem: info.samplerate for stem, info in infos.items()}
    lengths = {stem: info.frames for stem, info in infos.items()}
    rate = _shared_value(folder, files, rates, "Hz", "at different sample rates", "convert them")
    frames = _shared_value(folder, files, lengths, "frames", "of unequal lengths", "trim them")
    if frames == 0:
        raise SepkitError(f"{folder}: its stems hold no audio (0 samples); remove the track")
    return rate, frames


def checked_track(
    name: str,
    folder: Path,
    sources: dict[str, Path],
    mixture: Path | None,
    sample_rate: int,
    nb_channels: int,
    cache: Path,
    non_targets: dict[str, Path] | None = None,
) -> Track:
    """Check a track's files and return its ``Track`` at ``sample_rate``.

    ``folder`` names the track in error messages and keys its resampled copies in ``cache``.
    ``sources`` maps target names to files, ``non_targets`` the remaining stems, ``mixture``
    the mixture file (None: the sum of all stems).
    """
    non_targets = dict(non_targets or {})
    files = {**sources, **non_targets}
    if mixture is not None:
        files["mixture"] = mixture
    file_rate, num_frames = _rate_and_length(folder, files, nb_channels)
    if file_rate != sample_rate:
        files = {
            stem: resampled_copy(path, sample_rate, cache / "resampled" / folder_key(folder))
            for stem, path in files.items()
        }
        num_frames = audio_info(next(iter(files.values()))).frames
    return Track(
        name=name,
        sources={stem: files[stem] for stem in sources},
        mixture=files.get("mixture") if mixture is not None else None,
        sample_rate=sample_rate,
        num_frames=num_frames,
        non_targets={stem: files[stem] for stem in non_targets},
    )


def resampled_copy(path: Path, sample_rate: int, folder: Path) -> Path:
    """``path`` resampled to ``sample_rate`` with soxr (high quality), cached in ``folder``.

    The cached name carries a hash of the original's location, size and modification time,
    so an edited original is resampled again.
    """
    signature = json.dumps(
        {"path": str(Path(path).resolve()), **file_signature(path), "rate": sample_rate},
        sort_keys=True,
    )
    digest = hashlib.sha1(signature.encode()).hexdigest()[:12]
    destination = folder / f"{Path(path).stem}-{sample_rate}-{digest}.wav"
    if destination.is_file():
        return destination
    audio, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    logger.info("resampling %s from %d Hz to %d Hz into %s", path, file_rate, sample_rate, folder)
    converted = soxr.resample(audio, file_rate, sample_rate, quality="HQ")
    write_wav_atomically(destination, converted, sample_rate)
    return destination
