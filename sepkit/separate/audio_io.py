"""Files on disk: input audio read block by block and checked, stems written atomically.

- Reading (``AudioReader``): any file libsndfile reads (WAV, FLAC, OGG, MP3, AIFF, ...);
  a file that is missing, empty, not audio or truncated is a one-line ``SepkitError``.
- Writing (``StemWriter``): stems go to float32 scratch files beside their final place
  while separating, then to the requested format and subtype (integer subtypes: stems
  rescaled or clamped to full scale, with a warning saying how much), under temporary
  names renamed into place when every stem is complete. A failure leaves nothing behind;
  existing stems are kept unless overwriting was asked for (``StemsExist``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
from torch import Tensor
from tqdm import tqdm

from sepkit.errors import SepkitError
from sepkit.files import atomic_path

__all__ = [
    "CLIP_MODES",
    "FORMATS",
    "SUBTYPES",
    "AudioReader",
    "StemWriter",
    "StemsExist",
    "check_output_settings",
    "progress_bar",
]

# Frames read from a file at once: small against a segment, large against per-call costs.
READ_BLOCK_FRAMES = 1 << 17
SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
FORMATS = {"wav": "WAV", "flac": "FLAC"}
CLIP_MODES = ("rescale", "clamp")


# -- reading files ---------------------------------------------------------------------------


class AudioReader:
    """One input file, checked when opened, read as (channels, time) float32 blocks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise SepkitError(f"{path}: no such file or folder")
        if path.is_dir():
            raise SepkitError(f"{path}: is a folder; folders are walked only as inputs")
        if path.stat().st_size == 0:
            raise SepkitError(f"{path}: empty file (0 bytes)")
        try:
            self.file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
            reason = str(error).split(": ", 1)[-1].strip() or type(error).__name__
            raise SepkitError(
                f"{path}: not audio that libsndfile can read ({reason}); sepkit reads WAV, "
                "FLAC, OGG, MP3, AIFF and more: convert others with ffmpeg -i <in> <out>.wav"
            ) from None
        self.sample_rate = self.file.samplerate
        self.channels = self.file.channels
        self.frames = self.file.frames
        self.frames_read = 0
        try:
            self._check_header()
        except SepkitError:
            self.file.close()
            raise

    def _check_header(self) -> None:
        if self.frames == 0:
            raise SepkitError(f"{self.path}: no audio in the file (0 samples)")
        declared = _declared_data_bytes(self.file.extra_info)
        if declared is not None:
            declared_frames = declared / (self.channels * _bytes_per_sample(self.file))
            raise SepkitError(
                f"{self.path}: truncated: its header announces "
                f"{declared_frames / self.sample_rate:.2f} s but the file holds "
                f"{self.frames / self.sample_rate:.2f} s (an incomplete download or copy?)"
            )

    def blocks(self) -> Iterator[Tensor]:
        while True:
            try:
                block = self.file.read(READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise SepkitError(
                    f"{self.path}: unreadable after {self.frames_read / self.sample_rate:.2f} s "
                    f"({error}); the file is damaged"
                ) from None
            if len(block) == 0:
                return
            self.frames_read += len(block)
            yield torch.from_numpy(block.T)

    def check_complete(self) -> None:
        if self.frames_read < self.frames:
            raise SepkitError(
                f"{self.path}: ends after {self.frames_read} of the {self.frames} samples its "
                "header announces (truncated?)"
            )

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _declared_data_bytes(header_log: str) -> int | None:
    """The audio data size a WAV/AIFF header announces when the file is shorter (libsndfile
    logs ``data : <declared> (should be <actual>)``); None when the file is complete or its
    header leaves the size open (streamed WAVs announce 0 or 0xFFFFFFFF)."""
    for line in header_log.splitlines():
        name, _, value = line.partition(":")
        if name.strip() not in ("data", "SSND") or "should be" not in value:
            continue
        declared_text, _, actual_text = value.partition("(should be")
        try:
            declared, actual = int(declared_text.strip()), int(actual_text.strip(" )"))
        except ValueError:
            continue
        if declared in (0, 0xFFFFFFFF) or declared <= actual:
            return None
        return declared
    return None


def _bytes_per_sample(file: soundfile.SoundFile) -> int:
    sizes = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4,
             "DOUBLE": 8, "ULAW": 1, "ALAW": 1}  # fmt: skip
    return sizes.get(file.subtype, 2)


@contextlib.contextmanager
def progress_bar(reader: AudioReader, track: str, enabled: bool) -> Iterator[Any]:
    """A tqdm bar on stderr counting the seconds of ``reader`` separated; an error leaves
    its message, not a half-full bar, on the terminal."""
    bar = tqdm(
        total=round(reader.frames / reader.sample_rate, 1),
        desc=track,
        unit="s",
        disable=not enabled,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
        "[{elapsed}<{remaining}]",
    )
    try:
        yield bar
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()


# -- writing stems ---------------------------------------------------------------------------


def check_output_settings(format: str, subtype: str, clip: str) -> None:
    """A ``SepkitError`` naming the setting unless ``format``, ``subtype`` and ``clip`` are
    values sepkit writes and libsndfile can pair."""
    if format not in FORMATS:
        raise SepkitError(f"format={format}: use one of {', '.join(FORMATS)}")
    if subtype not in SUBTYPES:
        raise SepkitError(f"subtype={subtype}: use one of {', '.join(SUBTYPES)}")
    if clip not in CLIP_MODES:
        raise SepkitError(f"clip={clip}: use one of {', '.join(CLIP_MODES)}")
    if not soundfile.check_format(FORMATS[format], subtype):
        raise SepkitError(f"format={format} cannot hold subtype={subtype}: use PCM_16 or PCM_24")


class StemsExist(SepkitError):
    """The stems of a track are already on disk and overwriting was not asked for."""


class StemWriter:
    """The stems of one track: float32 scratch files while separating, then the final
    files, renamed into place together once all are complete.

    Integer subtypes hold [-1, 1]: where the stems exceed it, ``commit`` scales all of the
    track's stems by one factor (``rescale``, so they still add up to the scaled mixture)
    or clamps the excess (``clamp``), and records a warning saying how much. FLOAT keeps
    every value as it is.
    """

    def __init__(
        self,
        folder: Path,
        stems: list[str],
        sample_rate: int,
        channels: int,
        format: str,
        subtype: str,
    ) -> None:
        self.folder = folder
        self.stems = stems
        self.sample_rate = sample_rate
        self.channels = channels
        self.format = format
        self.subtype = subtype
        self.paths = {stem: folder / f"{stem}.{format}" for stem in stems}
        self.warnings: list[str] = []
        self._scratch: dict[str, soundfile.SoundFile] = {}
        self._peak = 0.0
        self._over_full_scale = 0
        self._samples = 0

    def check_free(self, overwrite: bool) -> None:
        existing = [p.name for p in self.paths.values() if p.exists()]
        if existing and not overwrite:
            raise StemsExist(
                f"{self.folder} already holds {', '.join(existing)}; skipped "
                "(overwrite=true replaces them)"
            )

    def _scratch_path(self, stem: str) -> Path:
        return self.folder / f".{stem}.separating-{os.getpid()}.raw"

    @contextlib.contextmanager
    def open(self) -> Iterator[StemWriter]:
        """Create the folder and the scratch files; on leaving, remove the scratch files,
        and on an error the folders made here if they are still empty."""
        created = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        succeeded = False
        try:
            for stem in self.stems:
                self._scratch[stem] = soundfile.SoundFile(
                    str(self._scratch_path(stem)), "w+", self.sample_rate, self.channels,
                    subtype="FLOAT", format="RAW",
                )  # fmt: skip
            yield self
            succeeded = True
        finally:
            for stem, file in self._scratch.items():
                file.close()
                self._scratch_path(stem).unlink(missing_ok=True)
            self._scratch.clear()
            if not succeeded:
                for folder in created:  # innermost first
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    def write(self, stems: Tensor) -> None:
        """(stems, channels, time) float32."""
        if stems.shape[-1] == 0:
            return
        lowest, highest = torch.aminmax(stems)
        self._peak = max(self._peak, float(highest), -float(lowest))
        self._over_full_scale += int((stems > 1).sum() + (stems < -1).sum())
        self._samples += stems.numel()
        for stem, audio in zip(self.stems, stems, strict=True):
            self._scratch[stem].write(np.ascontiguousarray(audio.numpy().T))

    def commit(self, clip: str) -> dict[str, Path]:
        """Write the final files from the scratch files and rename them into place."""
        gain = self._gain(clip)
        with contextlib.ExitStack() as renames:
            for stem, scratch in self._scratch.items():
                final = renames.enter_context(atomic_path(self.paths[stem]))
                scratch.seek(0)
                with soundfile.SoundFile(
                    str(final), "w", self.sample_rate, self.channels,
                    subtype=self.subtype, format=FORMATS[self.format],
                ) as output:  # fmt: skip
                    for block in scratch.blocks(READ_BLOCK_FRAMES, dtype="float32"):
                        if gain != 1.0:
                            block *= gain
                        if self.subtype != "FLOAT":
                            np.clip(block, -1.0, 1.0, out=block)
                        output.write(block)
        return dict(self.paths)

    def _gain(self, clip: str) -> float:
        if self.subtype == "FLOAT" or self._peak <= 1.0:
            return 1.0
        over_db = 20 * math.log10(self._peak)
        if clip == "rescale":
            gain = 1.0 / self._peak
            self.warnings.append(
                f"stems peak at {self._peak:.3f} ({over_db:.1f} dB over full scale): all "
                f"stems scaled by {gain:.3f} to fit {self.subtype} (clip=clamp cuts the "
                "peaks instead, subtype=FLOAT keeps them)"
            )
            return gain
        share = 100 * self._over_full_scale / max(self._samples, 1)
        self.warnings.append(
            f"{self._over_full_scale} samples ({share:.3f} %) over full scale clamped, peak "
            f"{self._peak:.3f} ({over_db:.1f} dB over) (clip=rescale scales the stems "
            "instead, subtype=FLOAT keeps them)"
        )
        return 1.0
