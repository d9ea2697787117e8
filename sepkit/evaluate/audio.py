"""Where a test track's signals are, and reading them as the dataset's reference reader does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from sepkit.audio import convert_channels
from sepkit.errors import SepkitError

__all__ = ["AudioSource", "read_signal", "reference_sources"]


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
            import stempeg  # only for .stem.mp4 releases

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
