"""Where sepkit keeps files it derives from datasets, and how it writes them safely.

Decoded MP4 stems, resampled copies and the generated toy sets live under one cache folder:
``cache_dir`` when given, else ``$SEPKIT_CACHE``, else ``~/.cache/sepkit``. Every file is
written under a temporary name and renamed into place, so a crash or two processes (DDP ranks,
two runs) writing at once never leave a half-written file behind.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile

from sepkit.errors import SepkitError
from sepkit.files import atomic_path


def cache_root(cache_dir: str | None = None) -> Path:
    """The sepkit cache folder: ``cache_dir``, else ``$SEPKIT_CACHE``, else ``~/.cache/sepkit``."""
    if cache_dir is None:
        cache_dir = os.environ.get("SEPKIT_CACHE") or "~/.cache/sepkit"
    return Path(cache_dir).expanduser()


def folder_key(path: Path) -> str:
    """A readable, collision-free folder name for ``path``: its name and a hash of its location.

    Two dataset roots with the same name (``/data/musdb`` and ``/scratch/musdb``) get different
    keys, so their cached files never mix.
    """
    absolute = str(Path(path).expanduser().resolve())
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:12]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(absolute).name) or "root"
    return f"{readable}-{digest}"


def file_signature(path: Path) -> dict[str, int]:
    """Size and modification time of ``path``: cached files derived from it are redone when
    either changes."""
    status = Path(path).stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def write_float_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write ``audio`` (frames, channels) as a 32-bit float WAV; equal audio, equal bytes.

    Float samples keep audio exactly as computed (no requantisation). libsndfile stamps the
    time of writing into the PEAK chunk of float WAVs; it is zeroed so that files are
    reproducible byte for byte.
    """
    soundfile.write(str(path), audio, sample_rate, subtype="FLOAT", format="WAV")
    with open(path, "r+b") as file:
        if file.read(12)[8:] != b"WAVE":
            return
        while len(chunk := file.read(8)) == 8:
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"PEAK":  # version (4 bytes), then the timestamp (4 bytes)
                file.seek(4, os.SEEK_CUR)
                file.write(bytes(4))
                return
            if chunk[:4] == b"data":
                return
            file.seek(size + size % 2, os.SEEK_CUR)


def write_wav_atomically(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write ``audio`` (frames, channels) as a 32-bit float WAV at ``path``, atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        write_float_wav(temporary, audio, sample_rate)


def publish_folder(built: Path, destination: Path) -> bool:
    """Rename the finished folder ``built`` to ``destination``; False if another process won.

    ``built`` must sit in the same parent as ``destination`` (rename is atomic only within a
    file system). When ``destination`` already exists, ``built`` is deleted and False returned.
    """
    try:
        os.rename(built, destination)
        return True
    except OSError:
        if not Path(destination).is_dir():
            shutil.rmtree(built, ignore_errors=True)
            raise SepkitError(
                f"could not create {destination}: check that its parent folder is writable"
            ) from None
        shutil.rmtree(built, ignore_errors=True)
        return False
