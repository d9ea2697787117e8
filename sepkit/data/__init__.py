"""Datasets: MUSDB18, folders of stems, speech mixtures, generated toy sets, augmentation.

Every dataset class subclasses ``SeparationData`` and serves (mixture (channels, time),
sources (targets, channels, time)) float32 items; see ``sepkit.data.base``.
"""

from sepkit.data.base import SeparationData, Track, read_track
from sepkit.data.folder import FolderData
from sepkit.data.musdb import MUSDBData
from sepkit.data.toy import ToyMUSDB, generate_toy_musdb

__all__ = [
    "FolderData",
    "MUSDBData",
    "SeparationData",
    "ToyMUSDB",
    "Track",
    "generate_toy_musdb",
    "read_track",
]
