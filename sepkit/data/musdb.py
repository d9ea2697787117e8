"""MUSDB18 (and MUSDB18-HQ, and private sets in its layout) through the ``musdb`` package.

Layouts, as ``musdb.DB`` reads them:

- ``.stem.mp4`` release (``is_wav=False``): ``<root>/{train,test}/<track>.stem.mp4``, five
  AAC streams (mixture, drums, bass, other, vocals). Each file is decoded ONCE with ffmpeg
  into the cache as one 32-bit float WAV per stem; every later read is a partial soundfile
  read of those WAVs (decoding with ffmpeg per segment costs seconds per batch).
- HQ / WAV layout (``is_wav=True``): ``<root>/{train,test}/<track>/{mixture,drums,bass,other,
  vocals}.wav``, read in place.

Splits: training tracks are musdb's ``subsets="train", split="train"``, validation musdb's
``split="valid"`` (14 tracks of MUSDB18's training set). When the root holds none of those 14
(a private set in the same layout, or the toy set), a seeded ``valid_fraction`` of the
training tracks is held out instead. Test tracks are ``subsets="test"``.
"""

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sepkit.data.base import SeparationData
from sepkit.data.cache import file_signature, folder_key, write_wav_atomically
from sepkit.data.tracks import Track
from sepkit.errors import SepkitError
from sepkit.files import write_text_atomic

logger = logging.getLogger(__name__)

#: The stems of a MUSDB18 track, in the order sepkit returns them by default.
MUSDB_STEMS = ["vocals", "drums", "bass", "other"]

#: AAC streams of one track may differ by a few codec frames; longer differences are refused.
_MAX_DECODED_LENGTH_DIFFERENCE = 8192


def import_musdb():
    """The ``musdb`` module; a SepkitError if it cannot load (stempeg needs ffmpeg)."""
    try:
        import musdb
    except RuntimeError as error:
        raise SepkitError(f"the musdb package cannot load ({error}); install ffmpeg") from None
    return musdb


class MUSDBData(SeparationData):
    """MUSDB18 for training, validation and test.

    Args:
        root: the folder holding ``train/`` and ``test/``; None reads ``$MUSDB_PATH``.
        targets: stems the model separates, any of vocals, drums, bass, other. Training
            mixtures always contain all four stems.
        is_wav: True for the WAV (HQ) layout, False for ``.stem.mp4`` files.
        download: fetch musdb's 7-second preview (``.stem.mp4``) into ``root`` (default
            ``~/MUSDB18/MUSDB18-7``) when it is missing; needs internet.
        options: ``SeparationData``'s (segment, sample_rate, augmentation, ...), with its
            defaults: Open-Unmix's.
    """

    def __init__(
        self,
        root: str | None = None,
        targets: list[str] = MUSDB_STEMS,  # noqa: B006 (copied, never mutated)
        is_wav: bool = False,
        download: bool = False,
        **options: Any,
    ):
        super().__init__(targets=targets, **options)
        unknown = [target for target in self.targets if target not in MUSDB_STEMS]
        if unknown:
            raise SepkitError(
                f"dataset.targets: {unknown} not MUSDB18 stems; choose from {MUSDB_STEMS}"
            )
        self.is_wav = bool(is_wav)
        self.root = self._resolve_root(root, download)

    def _resolve_root(self, root: str | None, download: bool) -> Path:
        if root is None:
            root = os.environ.get("MUSDB_PATH") or None
        if download:
            if self.is_wav:
                raise SepkitError(
                    "dataset.download=true fetches the .stem.mp4 preview: set dataset.is_wav=false"
                )
            root = root or os.path.expanduser("~/MUSDB18/MUSDB18-7")
            self._download_preview(root)
        if root is None:
            raise SepkitError(
                "no MUSDB18 folder given: set dataset.root=<folder> or the MUSDB_PATH "
                "environment variable (or use dataset=toy)"
            )
        path = Path(root).expanduser()
        if not path.is_dir():
            raise SepkitError(
                f"MUSDB18 folder {path} not found: set dataset.root=<folder> or MUSDB_PATH "
                "to the folder holding train/ and test/"
            )
        return path

    @staticmethod
    def _download_preview(root: str) -> None:
        musdb = import_musdb()
        try:
            musdb.DB(root=root, download=True, subsets=[])
        except Exception as error:  # network, HTTP and archive errors alike
            raise SepkitError(
                f"could not download the MUSDB18 7-second preview into {root} "
                f"({type(error).__name__}: {error}); download MUSDB18 by hand and set "
                "dataset.root=<folder>"
            ) from None

    def _split_location(self, split: str) -> str:
        return str(self.root / ("test" if split == "test" else "train"))

    def _split_tracks(self, split: str) -> list[Track] | None:
        if split == "test":
            tracks = self._tracks_of_subset("test", None)
            if not tracks:
                raise SepkitError(self._no_tracks_message("test"))
            return tracks
        tracks = self._tracks_of_subset("train", split)
        if split == "valid":
            return tracks or None  # none of musdb's validation tracks: hold some out
        if not tracks:
            raise SepkitError(self._no_tracks_message("train"))
        return tracks

    def _no_tracks_message(self, subset: str) -> str:
        folder = self.root / subset
        if not self.is_wav and any(folder.glob("*/mixture.wav")):
            return f"{folder}: no .stem.mp4 files, but WAV track folders: set dataset.is_wav=true"
        if self.is_wav and any(folder.glob("*.stem.mp4")):
            return f"{folder}: no WAV track folders, but .stem.mp4 files: set dataset.is_wav=false"
        layout = "<track>/mixture.wav, ..." if self.is_wav else "<track>.stem.mp4"
        return f"{folder}: no MUSDB18 tracks found (expected {layout})"

    def _tracks_of_subset(self, subset: str, split: str | None) -> list[Track]:
        folder = self.root / subset
        if self.is_wav and split is None and folder.is_dir():
            # the track folders musdb.DB lists (sorted), without the ffprobe of each mixture
            # it runs for durations not used here (~0.1 s a track, 5 s for the test set)
            names = sorted(path.name for path in folder.iterdir() if path.is_dir())
            return [self._checked(name, folder / name) for name in names]
        musdb = import_musdb()
        try:
            database = musdb.DB(
                root=str(self.root), subsets=subset, split=split, is_wav=self.is_wav
            )
        except Exception as error:  # ffprobe failures on a damaged file
            raise SepkitError(
                f"{self.root / subset}: musdb could not read the tracks "
                f"({type(error).__name__}: {error}); check the files there"
            ) from None
        if self.is_wav:
            folders = {track.name: self.root / subset / track.name for track in database}
        else:
            folders = self._decode_stems(database, subset)
        return [self._checked(name, folder) for name, folder in folders.items()]

    def _checked(self, name: str, folder: Path) -> Track:
        files = {}
        for stem in MUSDB_STEMS:
            files[stem] = folder / f"{stem}.wav"
            if not files[stem].is_file():
                raise SepkitError(
                    f"{folder}: missing {stem}.wav (a MUSDB18 track folder needs "
                    "drums, bass, other and vocals .wav)"
                )
        mixture = folder / "mixture.wav"
        return self._track(name, folder, files, mixture if mixture.is_file() else None)

    def _decode_stems(self, database, subset: str) -> dict[str, Path]:
        """Decode every ``.stem.mp4`` of ``database`` once into the cache; track -> folder."""
        folders = {}
        pending = []
        for track in database:
            folder = self.cache / "musdb" / folder_key(self.root) / subset / track.name
            folders[track.name] = folder
            if not _decoded_up_to_date(folder, Path(track.path), database.setup["stem_ids"]):
                pending.append((track, folder))
        for track, folder in tqdm(
            pending, desc=f"decoding MUSDB18 {subset} stems once", disable=not pending
        ):
            decode_stem_file(Path(track.path), folder, database.setup["stem_ids"], track.info)
        return folders


_DECODED_MARKER = "decoded.json"


def _decoded_up_to_date(folder: Path, source: Path, stem_ids: dict[str, int]) -> bool:
    marker = folder / _DECODED_MARKER
    if not marker.is_file() or not all((folder / f"{stem}.wav").is_file() for stem in stem_ids):
        return False
    return json.loads(marker.read_text()) == file_signature(source)


def decode_stem_file(source: Path, folder: Path, stem_ids: dict[str, int], info=None) -> None:
    """Decode each stream of a ``.stem.mp4`` into ``<folder>/<stem>.wav`` (32-bit float).

    ``stem_ids`` maps stem names to stream indices (musdb's ``setup["stem_ids"]``). Streams
    differing by a few codec frames are trimmed to the shortest. A marker with the source's
    size and modification time is written last, so an interrupted or outdated decode is redone.
    """
    import stempeg

    decoded = {}
    for stem, stream in stem_ids.items():
        try:
            audio, rate = stempeg.read_stems(
                str(source),
                stem_id=stream,
                dtype=np.float32,
                always_3d=True,
                ffmpeg_format="f32le",
                info=info,
            )
        except Exception as error:  # stempeg raises Warning and RuntimeError on ffmpeg failures
            raise SepkitError(
                f"{source}: ffmpeg could not decode stream {stream} ({stem}): {error}"
            ) from None
        if audio.shape[1] == 0:
            raise SepkitError(f"{source}: stream {stream} ({stem}) decoded to no audio")
        decoded[stem] = audio[0]
    lengths = {stem: audio.shape[0] for stem, audio in decoded.items()}
    shortest = min(lengths.values())
    if max(lengths.values()) - shortest > _MAX_DECODED_LENGTH_DIFFERENCE:
        listed = ", ".join(f"{stem} {frames}" for stem, frames in lengths.items())
        raise SepkitError(
            f"{source}: streams of unequal lengths ({listed} frames); re-encode the file"
        )
    # AAC decodes to whole codec frames (1024 samples); the container states the true length
    try:
        shortest = min([shortest] + info.nb_samples_streams)
    except (AttributeError, KeyError, TypeError, ValueError):  # no info, or no duration_ts
        pass
    logger.debug("decoded %s into %s", source, folder)
    for stem, audio in decoded.items():
        write_wav_atomically(folder / f"{stem}.wav", audio[:shortest], int(rate))
    write_text_atomic(folder / _DECODED_MARKER, json.dumps(file_signature(source)))
